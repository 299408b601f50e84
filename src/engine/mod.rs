//! How calls reach a backend: [`dispatch`], the per-store dispatcher on
//! rs-store's threads, and [`wire`], the Redis connection driven from the
//! JS thread.

pub mod dispatch;
pub mod wire;
