//! The store over a backend that never blocks (memory, dummy): every method
//! runs on the JS thread and returns at once; the facade wraps the result in
//! a resolved Promise. No thread hop on the hot path.

use std::sync::Arc;

use napi::bindgen_prelude::{External, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};

use super::reply::{decoded, JsReply, Settled};
use super::text::call_fn;
use super::Core;
use crate::backend::{Op, SyncBackend};
use crate::error::{Code, StoreError};

/// A store over one backend, handed to JS as an External that the free
/// functions below take first (`lib/native.js` gives it methods). They take
/// and return JSON text; the JS facade does `JSON.stringify`/`JSON.parse`.
pub struct SyncStore {
  /// `None` once closed: `close()` frees the sessions, the codec and the
  /// report callback at once, not when the GC collects the JS object
  /// (Node runs that finalizer only once its event loop turns).
  open: RwLock<Option<Open>>,
}

struct Open {
  backend: Arc<dyn SyncBackend>,
  core: Core,
}

impl SyncStore {
  pub(crate) fn new(backend: Arc<dyn SyncBackend>, core: Core) -> Self {
    SyncStore { open: RwLock::new(Some(Open { backend, core })) }
  }

  fn open(&self) -> Result<MappedRwLockReadGuard<'_, Open>, StoreError> {
    RwLockReadGuard::try_map(self.open.read(), Option::as_ref).map_err(|_| StoreError::closed())
  }
}

call_fn! {
  #[doc = " Runs one op, given as data (see `Op::from_call` and `call_fn!`)."]
  #[doc = " Answers as the async stores' replies are; failures throw coded errors."]
  #[napi(catch_unwind, ts_return_type = "undefined | null | string | boolean | number | Array<string | number | null>")]
  pub fn sync_call(store: SyncStore, call) -> JsReply {
    let o = store.open()?;
    let op = o.core.op(call, true)?;
    let get_id = match &op {
      Op::Get(id) => Some(id.clone()),
      _ => None,
    };
    let r = o.backend.run(op)?;
    Ok(decoded(&o.core, get_id.as_deref(), Ok(r)))
  }
}

/// Resolves when every change made so far is persisted (sessionStateFile
/// stores; at once for in-memory stores), with the failure if the last
/// write failed.
#[napi(ts_return_type = "Promise<void | Error>")]
pub fn sync_flush<'env>(env: &'env Env, store: &External<SyncStore>) -> napi::Result<PromiseRaw<'env, Settled<()>>> {
  let backend = store.open().map(|o| o.backend.clone());
  env.spawn_future(async move {
    let r = match backend {
      Ok(b) => tokio::task::spawn_blocking(move || b.flush())
        .await
        .unwrap_or_else(|e| Err(StoreError::new(Code::Internal, format!("flush task failed: {e}")))),
      Err(e) => Err(e),
    };
    Ok(Settled(r))
  })
}

/// Blocks until every change made so far is persisted, with the failure if
/// the last write failed: what the facade calls at process exit, where no
/// promise would settle any more (see `lib/at-exit.js`).
#[napi(catch_unwind)]
pub fn sync_flush_now(store: &External<SyncStore>) -> napi::Result<(), Code> {
  let backend = store.open()?.backend.clone();
  Ok(backend.flush()?)
}

/// What an in-memory store holds and has evicted (`stats().memory`).
#[napi(object)]
pub struct MemoryHeld {
  /// Entries held (expired ones too, until the sweep reclaims them).
  pub entries: f64,
  /// Bytes they are charged against `maxBytes`.
  pub bytes: f64,
  /// Live sessions evicted by `maxEntries` / `maxBytes` so far.
  pub evictions: f64,
}

/// [`MemoryHeld`] of an in-memory store; `null` for others and once closed.
#[napi(catch_unwind)]
pub fn sync_held(store: &External<SyncStore>) -> napi::Result<Option<MemoryHeld>, Code> {
  Ok(store.open().ok().and_then(|o| o.backend.held()).map(|h| MemoryHeld {
    entries: h.entries as f64,
    bytes: h.bytes as f64,
    evictions: h.evicted as f64,
  }))
}

/// Stops background work; later calls fail with `ERR_STORE_CLOSED`.
#[napi(catch_unwind)]
pub fn sync_close(store: &External<SyncStore>) -> napi::Result<(), Code> {
  let open = store.open.write().take();
  match open {
    Some(o) => Ok(o.backend.close()?),
    None => Ok(()),
  }
}

/// Test hook: proves that a Rust panic in a store method surfaces as a JS
/// error and leaves the store usable. Not in the published types.
///
/// In the release binary on purpose: the node tests run against the addon
/// `npm install` builds, which is a release build (`.ci/run` is `npm install
/// && npm test`), the very binary users get; what this hook proves is that
/// *that* binary's `catch_unwind` turns a panic into `ERR_INTERNAL` (panic
/// strategy, napi-rs's wrapper). Compiled only into debug or feature builds,
/// the test would either check another binary than the one shipped or have
/// to be skipped against the release addon, and no test is skipped here. It
/// costs one export of a few instructions that panics and touches nothing
/// (it takes a store only so its call goes through the same path).
#[napi(catch_unwind, skip_typescript)]
pub fn sync_panic_for_test(_store: &External<SyncStore>) -> napi::Result<(), Code> {
  panic!("deliberate panic (test hook)");
}
