//! How calls reach a backend: [`dispatch`], the per-store dispatcher on
//! rs-store's threads, and [`wire`], the Redis connection driven from the
//! JS thread; and [`worker`], the one type of background thread.

pub mod dispatch;
pub mod wire;
pub mod worker;
