//! The file store's constructor and its options (one file per session).

use std::sync::Arc;

use napi_derive::napi;

use super::async_store::{Dispatched, Runs, DEFAULT_SPIN};
use super::Core;
use crate::backend::file::{FileBackend, FileOptions};
use crate::backend::Report;
use crate::error::Code;
use crate::options::{ms_or, SessionOptions, SWEEP_STORED_MS};

/// Options of the file store (one file per session).
#[napi(object)]
pub struct FileStoreConfig {
  /// The directory (created with mode 0700 when missing).
  pub dir: String,
  /// fsync the file and the directory on every write (default false).
  pub durable: Option<bool>,
  /// Answer reads on the JS thread when the file is in the kernel's caches,
  /// never waiting on the disk (default true; Linux 5.12+).
  pub fast_reads: Option<bool>,
  /// How often expired files are deleted (default 60000 ms).
  pub sweep_interval_ms: Option<u32>,
  /// Bytes of recently read sessions kept in memory, served while no
  /// process has changed their files (default 32 MiB; 0: off).
  pub read_cache_bytes: Option<u32>,
  /// Session size limit and codec.
  pub session: Option<SessionOptions>,
}

/// Default of `FileStoreConfig::read_cache_bytes`.
pub const READ_CACHE_BYTES: usize = 32 << 20;

/// A file store; problems found in the directory (corrupt or foreign
/// files) are reported.
pub(crate) fn dispatched(config: FileStoreConfig, report: Option<Report>) -> napi::Result<Dispatched, Code> {
  let (core, rules) = Core::with_users(config.session, report.clone())?;
  let backend = FileBackend::new(FileOptions {
    dir: config.dir.into(),
    fast_reads: config.fast_reads.unwrap_or(true),
    durable: config.durable.unwrap_or(false),
    sweep_interval: Some(ms_or(config.sweep_interval_ms, SWEEP_STORED_MS)),
    report,
    read_cache_bytes: config.read_cache_bytes.map_or(READ_CACHE_BYTES, |b| b as usize),
    inline_small_batches: true,
    rules,
  })?;
  // Its own thread, spinning as Redis's dispatcher does: a small batch runs
  // right on a dispatcher that is awake instead of hopping to the blocking
  // pool and back (about half the time of a set at one call in flight).
  Ok(Dispatched { core, backend: Arc::new(backend), spin: DEFAULT_SPIN, runs: Runs::OwnThread("rs-store-file") })
}
