//! Options every store's config shares: the session limit and the codec in
//! one struct, and the sweep and timeout defaults in one place. The JS facade checks
//! types and host units; what a value means is decided here.

use std::time::Duration;

use napi_derive::napi;

use crate::backend::UserRules;

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
  /// Per-user sessions: writes carry their user (`userOf` given in JS).
  pub per_user: Option<bool>,
  /// Most live sessions of one user (`maxSessionsPerUser`).
  pub max_sessions_per_user: Option<u32>,
  /// Absolute lifetime from a session's first write, ms (`maxLifetime`).
  pub max_lifetime_ms: Option<f64>,
}

impl SessionOptions {
  /// The per-user rules these options ask for.
  pub fn rules(&self) -> crate::error::Result<UserRules> {
    use crate::error::{Code, StoreError};
    if self.max_sessions_per_user == Some(0) {
      return Err(StoreError::new(Code::InvalidOption, "maxSessionsPerUser must be at least 1"));
    }
    let max_lifetime_ms = match self.max_lifetime_ms {
      None => None,
      Some(t) if t.is_infinite() && t > 0.0 => None,
      Some(t) if t >= 1.0 => Some(t.ceil() as u64),
      Some(t) => return Err(StoreError::new(Code::InvalidOption, format!("maxLifetime must be at least 1 ms, got {t} ms"))),
    };
    Ok(UserRules { users: self.per_user.unwrap_or(false), max_per_user: self.max_sessions_per_user, max_lifetime_ms })
  }
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

/// A TLS client certificate and its key (PEM, for mutual TLS): both or
/// neither (Redis and PostgreSQL alike).
pub fn client_tls<T>(cert: Option<T>, key: Option<T>) -> crate::error::Result<Option<(T, T)>> {
  match (cert, key) {
    (Some(cert), Some(key)) => Ok(Some((cert, key))),
    (None, None) => Ok(None),
    _ => Err(crate::error::StoreError::new(
      crate::error::Code::InvalidOption,
      "a TLS client certificate needs its key, and the key its certificate",
    )),
  }
}

/// A duration option in ms (`sweepIntervalMs`, a timeout), or the store's
/// default; at least 1 ms.
pub fn ms_or(ms: Option<u32>, default_ms: u32) -> Duration {
  Duration::from_millis(ms.unwrap_or(default_ms).max(1) as u64)
}
