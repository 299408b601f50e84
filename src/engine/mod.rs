//! How calls reach a backend: [`dispatch`], the per-store dispatcher on
//! rs-store's threads, and [`wire`], the Redis connection driven from the
//! JS thread; [`runtime`], the tokio runtime of the stores' I/O; and
//! [`worker`], the one type of background thread.

pub mod dispatch;
pub mod runtime;
pub mod wire;
pub mod worker;
