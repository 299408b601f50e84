//! How calls reach a backend: [`dispatch`], the per-store dispatcher on
//! rs-store's threads, and [`wire`], the Redis connection driven from the
//! JS thread. The engine uses the backends' contract ([`crate::backend`]:
//! `Backend`, `Op`, `Reply`); no backend uses the engine.

pub mod dispatch;
// The Redis connection on the JS thread lives with the rest of Redis
// (src/backend/redis/wire.rs); the binding reaches it by this path too.
pub use crate::backend::redis::wire;
