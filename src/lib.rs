//! rs-store: session and module stores for Node.js web servers.
//!
//! Data path: JS facade (`lib/`) → [`binding`] (`#[napi]`, thin) →
//! [`engine`] → [`backend`] (one contract, ops as data; one module per
//! backend, Synchro's module stores beside the object session store). Expiry is absolute
//! ([`expiry`]); errors carry stable codes ([`error`]); the I/O runtime
//! ([`runtime`]) serves the engine, the backends and the binding alike.

// Clippy's defaults are errors here, and every `unsafe` block says why it is
// sound in a `// SAFETY:` comment.
#![deny(clippy::all)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod backend;
pub mod binding;
pub mod codec;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod expiry;
pub mod options;
pub mod runtime;

/// mimalloc instead of glibc malloc for Rust's allocations: buffers are
/// allocated on the JS thread (queued calls) and freed on the I/O thread and
/// back, which glibc serves through locked cross-arena frees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
