//! How calls reach a backend: [`dispatch`], the per-store dispatcher on
//! rs-store's threads (the Redis connection driven from the JS thread is
//! Redis's own: src/backend/redis/wire.rs). The engine uses the backends'
//! contract ([`crate::backend`]: `Backend`, `Op`, `Reply`); no backend uses
//! the engine.

pub mod dispatch;
