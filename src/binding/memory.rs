//! The in-process stores' constructors: `memoryStore` with its options,
//! and `dummyStore`.

use std::sync::Arc;

use napi::bindgen_prelude::External;
use napi_derive::napi;

use super::store_core::{charged, reporter_of, Core, OnReport};
use super::sync_store::SyncStore;
use crate::backend::dummy::DummyBackend;
use crate::backend::memory::{MemoryBackend, MemoryOptions};
use crate::backend::Report;
use crate::error::{Code, Result};
use crate::options::{ms_or, SessionOptions, SWEEP_IN_MEMORY_MS};

/// Options of the memory store (validated again by the JS facade), and of
/// sessions.json's sessions in memory.
#[napi(object)]
#[derive(Default)]
pub struct MemoryStoreOptions {
  /// Most sessions kept; least recently used are evicted beyond it.
  pub max_entries: Option<u32>,
  /// Most bytes kept (ids + values + 96 bytes per entry).
  pub max_bytes: Option<f64>,
  /// Session size limit and codec.
  pub session: Option<SessionOptions>,
  /// How often expired sessions are reclaimed in the background (default 1000 ms).
  pub sweep_interval_ms: Option<u32>,
}

/// An in-process store bounded by `maxEntries`/`maxBytes` (LRU eviction),
/// with expired sessions reclaimed in the background.
#[napi(catch_unwind, ts_args_type = "options?: MemoryStoreOptions | undefined | null, onReport?: (err: Error) => void")]
pub fn memory_store(options: Option<MemoryStoreOptions>, on_report: Option<OnReport<'_>>) -> napi::Result<External<SyncStore>, Code> {
  let (core, memory) = options.unwrap_or_default().split(reporter_of(on_report)?)?;
  Ok(charged(SyncStore::new(Arc::new(MemoryBackend::new(memory)?), core)))
}

impl MemoryStoreOptions {
  /// The store's core and its sessions' bounds (memory, and sessions.json
  /// in memory).
  pub(crate) fn split(self, report: Option<Report>) -> Result<(Core, MemoryOptions)> {
    let (core, rules) = Core::with_users(self.session, report)?;
    let memory = MemoryOptions {
      max_entries: self.max_entries.map(|n| n as usize),
      max_bytes: self.max_bytes.map(|n| n as usize),
      sweep_interval: Some(ms_or(self.sweep_interval_ms, SWEEP_IN_MEMORY_MS)),
      rules,
    };
    Ok((core, memory))
  }
}

/// A store that keeps nothing (HTTP Sessions' DummyStorage).
#[napi(catch_unwind)]
pub fn dummy_store() -> napi::Result<External<SyncStore>, Code> {
  Ok(charged(SyncStore::new(Arc::new(DummyBackend), Core::with_users(None, None)?.0)))
}
