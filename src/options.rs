//! Options every store's config shares: the session limit and the codec in
//! one struct, and the sweep and timeout defaults in one place. The JS facade checks
//! types and host units; what a value means is decided here.

use std::time::Duration;

use napi_derive::napi;

/// The session size limit and the codec (compress → encrypt) of a store.
#[napi(object)]
#[derive(Default)]
pub struct SessionOptions {
  /// Largest serialized session accepted, in bytes (default 1 MiB).
  pub max_session_bytes: Option<u32>,
  /// Encryption secrets, newest first (each at least 64 characters).
  pub secrets: Option<Vec<String>>,
  /// Compress sessions (zstd) when it pays.
  pub compress: Option<bool>,
}

/// The default sweep of stores that hold sessions in memory: cheap, so often.
pub const SWEEP_IN_MEMORY_MS: u32 = 1000;
/// The default sweep of stores on disk or in a bucket: each sweep reads
/// every entry's header, so once a minute.
pub const SWEEP_STORED_MS: u32 = 60_000;

/// Default `connectTimeoutMs` and `commandTimeoutMs` of Redis and the
/// daemon (also the JS-thread connection's timers, `lib/redis-wire.js`).
#[napi]
pub const REDIS_TIMEOUT_MS: u32 = 5000;
/// Default `connectTimeoutMs` and `commandTimeoutMs` of PostgreSQL (as
/// Redis's: every call settles within it).
#[napi]
pub const POSTGRES_TIMEOUT_MS: u32 = 5000;
/// Default `commandTimeoutMs` of sessions in object storage: every call
/// settles within it, retries included.
pub const OBJECT_SESSION_TIMEOUT_MS: u32 = 10_000;
/// Default timeout of a module store's calls (modules are larger).
pub const MODULE_TIMEOUT_MS: u32 = 30_000;

/// A duration option in ms (`sweepIntervalMs`, a timeout), or the store's
/// default; at least 1 ms.
pub fn ms_or(ms: Option<u32>, default_ms: u32) -> Duration {
  Duration::from_millis(ms.unwrap_or(default_ms).max(1) as u64)
}
