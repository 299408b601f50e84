//! The sessions.json store's constructor and its options (Synchro's
//! FileSessionStore).

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{External, Function};
use napi_derive::napi;

use super::reply::JsReply;
use super::store_core::{charged, reporter, Core};
use super::sync_store::SyncStore;
use crate::backend::memory::MemoryOptions;
use crate::backend::snapshot::{SnapshotBackend, SnapshotOptions};
use crate::error::Code;
use crate::options::{ms_or, SessionOptions, SWEEP_IN_MEMORY_MS};

/// Options of Synchro's single-file session store.
#[napi(object)]
pub struct SnapshotStoreConfig {
  /// The JSON file, e.g. `sessions.json` (its directory must exist).
  pub session_state_file: String,
  /// Lifetime given to loaded sessions with no recorded expiry (ms).
  pub default_ttl_ms: Option<f64>,
  /// How long a burst of changes is gathered into one write (default 50 ms).
  pub coalesce_ms: Option<u32>,
  pub max_entries: Option<u32>,
  pub max_bytes: Option<f64>,
  /// Session size limit and codec.
  pub session: Option<SessionOptions>,
  pub sweep_interval_ms: Option<u32>,
}

/// Synchro's FileSessionStore: sessions in memory, persisted to one JSON file.
#[napi(catch_unwind, ts_args_type = "config: SnapshotStoreConfig, onReport: (err: Error) => void")]
pub fn snapshot_store(config: SnapshotStoreConfig, on_report: Function<'_, JsReply, ()>) -> napi::Result<External<SyncStore>, Code> {
  let report = reporter(on_report)?;
  let (core, rules) = Core::with_users(config.session, Some(report.clone()))?;
  let backend = SnapshotBackend::new(SnapshotOptions {
    binary: core.codec.is_active(),
    file: config.session_state_file.into(),
    memory: MemoryOptions {
      max_entries: config.max_entries.map(|n| n as usize),
      max_bytes: config.max_bytes.map(|n| n as usize),
      sweep_interval: Some(ms_or(config.sweep_interval_ms, SWEEP_IN_MEMORY_MS)),
      // Kept on disk beside it (<file>.users, src/backend/snapshot.rs).
      rules,
    },
    default_ttl: config.default_ttl_ms.filter(|t| t.is_finite() && *t >= 0.0).map(|t| Duration::from_millis(t as u64)),
    coalesce: Duration::from_millis(config.coalesce_ms.unwrap_or(50) as u64),
    report: Some(report),
  })?;
  Ok(charged(SyncStore::new(Arc::new(backend), core)))
}
