//! The in-process stores' constructors: `memoryStore` with its options,
//! and `dummyStore`.

use std::sync::Arc;

use napi::bindgen_prelude::{External, Function};
use napi_derive::napi;

use super::reply::JsReply;
use super::store_core::{charged, reporter_of, Core};
use super::sync_store::SyncStore;
use crate::backend::dummy::DummyBackend;
use crate::backend::memory::{MemoryBackend, MemoryOptions};
use crate::error::Code;
use crate::options::{ms_or, SessionOptions, SWEEP_IN_MEMORY_MS};

/// Options of the memory store (validated again by the JS facade).
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
pub fn memory_store(
  options: Option<MemoryStoreOptions>,
  on_report: Option<Function<'_, JsReply, ()>>,
) -> napi::Result<External<SyncStore>, Code> {
  let o = options.unwrap_or_default();
  let (core, rules) = Core::with_users(o.session, reporter_of(on_report)?)?;
  let backend = MemoryBackend::new(MemoryOptions {
    max_entries: o.max_entries.map(|n| n as usize),
    max_bytes: o.max_bytes.map(|n| n as usize),
    sweep_interval: Some(ms_or(o.sweep_interval_ms, SWEEP_IN_MEMORY_MS)),
    rules,
  })?;
  Ok(charged(SyncStore::new(Arc::new(backend), core)))
}

/// A store that keeps nothing (HTTP Sessions' DummyStorage).
#[napi(catch_unwind)]
pub fn dummy_store() -> napi::Result<External<SyncStore>, Code> {
  Ok(charged(SyncStore::new(Arc::new(DummyBackend), Core::with_users(None, None)?.0)))
}
