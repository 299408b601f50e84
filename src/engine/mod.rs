//! How calls reach a backend. Today: [`wire`], the Redis connection driven
//! from the JS thread. (The dispatcher of the stores that run on rs-store's
//! I/O thread is in `binding/async_store.rs`.)

pub mod wire;
