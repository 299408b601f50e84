//! The sessions.json store's constructor and its options (Synchro's
//! FileSessionStore).

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::External;
use napi_derive::napi;

use super::memory::MemoryStoreOptions;
use super::store_core::{charged, reporter, OnReport};
use super::sync_store::SyncStore;
use crate::backend::snapshot::{SnapshotBackend, SnapshotOptions};
use crate::error::Code;

/// Options of Synchro's single-file session store.
#[napi(object)]
pub struct SnapshotStoreConfig {
  /// The JSON file, e.g. `sessions.json` (its directory must exist).
  pub session_state_file: String,
  /// Lifetime given to loaded sessions with no recorded expiry (ms).
  pub default_ttl_ms: Option<f64>,
  /// How long a burst of changes is gathered into one write (default 50 ms).
  pub coalesce_ms: Option<u32>,
  /// The sessions in memory: the memory store's options.
  pub memory: MemoryStoreOptions,
}

/// Synchro's FileSessionStore: sessions in memory, persisted to one JSON file.
#[napi(catch_unwind, ts_args_type = "config: SnapshotStoreConfig, onReport: (err: Error) => void")]
pub fn snapshot_store(config: SnapshotStoreConfig, on_report: OnReport<'_>) -> napi::Result<External<SyncStore>, Code> {
  let report = reporter(on_report)?;
  // Its per-user rules' state is kept on disk beside it (<file>.users, src/backend/snapshot.rs).
  let (core, memory) = config.memory.split(Some(report.clone()))?;
  let backend = SnapshotBackend::new(SnapshotOptions {
    binary: core.codec.is_active(),
    file: config.session_state_file.into(),
    memory,
    default_ttl: config.default_ttl_ms.filter(|t| t.is_finite() && *t >= 0.0).map(|t| Duration::from_millis(t as u64)),
    coalesce: Duration::from_millis(config.coalesce_ms.unwrap_or(50) as u64),
    report: Some(report),
  })?;
  Ok(charged(SyncStore::new(Arc::new(backend), core)))
}
