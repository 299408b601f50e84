//! How calls reach a backend: [`dispatch`], the per-store dispatcher on
//! rs-store's threads, and [`wire`], the Redis connection driven from the
//! JS thread. The engine uses the backends' contract ([`crate::backend`]:
//! `Backend`, `Op`, `Reply`); no backend uses the engine.

pub mod dispatch;
pub mod wire;
