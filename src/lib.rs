//! rs-store: session and module stores for Node.js web servers.
//!
//! Data path: JS facade (`lib/`) → [`binding`] (`#[napi]`, thin) →
//! [`backend`] (one trait, one module per backend). Expiry is absolute
//! ([`expiry`]); errors carry stable codes ([`error`]).

pub mod backend;
pub mod binding;
pub mod codec;
pub mod daemon;
pub mod error;
pub mod expiry;
pub mod module_store;
