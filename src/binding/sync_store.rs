//! The store over a backend that never blocks (memory, dummy): every method
//! runs on the JS thread and returns at once; the facade wraps the result in
//! a resolved Promise. No thread hop on the hot path.

use std::sync::Arc;

use napi_derive::napi;
use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};

use super::{check_id, expiry_for, lock_ttl, set_if_op, Core, Utf8Text};
use crate::backend::{Op, SyncBackend};
use crate::error::{Code, StoreError};
use crate::expiry::now_ms;
use crate::options::SessionOptions;

/// The outcome of an async call: `code` and `message` are set on failure.
#[napi(object)]
pub struct Outcome {
  pub code: Option<String>,
  pub message: Option<String>,
}

/// A live entry as handed to JS by `entries()`.
#[napi(object)]
pub struct StoredEntry {
  pub id: String,
  /// The stored JSON text.
  pub value: String,
}

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

/// A store over one backend. Methods take and return JSON text; the JS
/// facade does `JSON.stringify`/`JSON.parse`.
#[napi(custom_finalize)]
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

impl napi::bindgen_prelude::ObjectFinalize for SyncStore {
  fn finalize(self, env: napi::Env) -> napi::Result<()> {
    let _ = env.adjust_external_memory(-super::NATIVE_COST);
    Ok(())
  }
}

impl SyncStore {
  pub(crate) fn new(backend: Arc<dyn SyncBackend>, core: Core) -> Self {
    SyncStore { open: RwLock::new(Some(Open { backend, core })) }
  }

  fn open(&self) -> Result<MappedRwLockReadGuard<'_, Open>, StoreError> {
    RwLockReadGuard::try_map(self.open.read(), Option::as_ref).map_err(|_| StoreError::closed())
  }
}

#[napi]
impl SyncStore {
  /// The stored JSON text, or `null` when missing or expired.
  #[napi(catch_unwind)]
  pub fn get(&self, id: String) -> napi::Result<Option<String>, Code> {
    let o = self.open()?;
    if check_id(&id).is_err() {
      return Ok(None);
    }
    Ok(o.backend.run(Op::Get(id.clone()))?.into_value()?.and_then(|b| o.core.decode(&id, b)))
  }

  /// Stores JSON text; `ttlMs` undefined = never expires, 0 = remove now.
  #[napi(catch_unwind)]
  pub fn set(&self, id: String, #[napi(ts_arg_type = "string")] value: Utf8Text, ttl_ms: Option<f64>) -> napi::Result<(), Code> {
    let o = self.open()?;
    check_id(&id)?;
    o.core.limits.check(value.as_str())?;
    let op = match expiry_for(ttl_ms)? {
      Some(at) if at <= now_ms() => Op::Remove(id),
      at => {
        let v = o.core.encode(&id, value.into_bytes())?;
        Op::Set(id, v, at)
      }
    };
    o.backend.run(op)?;
    Ok(())
  }

  /// Stores JSON text only when no live session has `id` (`add`) or, with
  /// `present`, only when one has (`replace`); true when written. For
  /// `add`, `ttlMs` must be undefined (never expires) or in the future.
  #[napi(catch_unwind)]
  pub fn set_if(
    &self,
    id: String,
    #[napi(ts_arg_type = "string")] value: Utf8Text,
    ttl_ms: Option<f64>,
    present: bool,
  ) -> napi::Result<bool, Code> {
    let o = self.open()?;
    check_id(&id)?;
    o.core.limits.check(value.as_str())?;
    let op = match set_if_op(id, value.into_bytes(), ttl_ms, present)? {
      Op::SetIf(id, v, at, cond) => Op::SetIf(id.clone(), o.core.encode(&id, v)?, at, cond),
      op => op,
    };
    Ok(o.backend.run(op)?.into_bool()?)
  }

  /// Removes a session; true when a live one was removed.
  #[napi(catch_unwind)]
  pub fn remove(&self, id: String) -> napi::Result<bool, Code> {
    let o = self.open()?;
    check_id(&id)?;
    Ok(o.backend.run(Op::Remove(id))?.into_bool()?)
  }

  /// Moves the expiry of a live session (never creates one); true when found.
  #[napi(catch_unwind)]
  pub fn touch(&self, id: String, ttl_ms: Option<f64>) -> napi::Result<bool, Code> {
    let o = self.open()?;
    check_id(&id)?;
    let op = match expiry_for(ttl_ms)? {
      Some(at) if at <= now_ms() => Op::Remove(id),
      at => Op::Touch(id, at),
    };
    Ok(o.backend.run(op)?.into_bool()?)
  }

  /// Remaining lifetime in ms: -2 when missing, -1 when it never expires.
  #[napi(catch_unwind)]
  pub fn ttl_ms(&self, id: String) -> napi::Result<f64, Code> {
    let o = self.open()?;
    if check_id(&id).is_err() {
      return Ok(-2.0);
    }
    Ok(o.backend.run(Op::Ttl(id))?.into_ttl()?.pttl() as f64)
  }

  /// Takes the lock of `id` for `token` if free (never waits).
  #[napi(catch_unwind)]
  pub fn lock(&self, id: String, token: String, ttl_ms: f64) -> napi::Result<bool, Code> {
    let o = self.open()?;
    check_id(&id)?;
    Ok(o.backend.run(Op::Lock(id, token, lock_ttl(ttl_ms)?))?.into_bool()?)
  }

  #[napi(catch_unwind)]
  pub fn unlock(&self, id: String, token: String) -> napi::Result<bool, Code> {
    let o = self.open()?;
    check_id(&id)?;
    Ok(o.backend.run(Op::Unlock(id, token))?.into_bool()?)
  }

  #[napi(catch_unwind)]
  pub fn renew(&self, id: String, token: String, ttl_ms: f64) -> napi::Result<bool, Code> {
    let o = self.open()?;
    check_id(&id)?;
    Ok(o.backend.run(Op::Renew(id, token, lock_ttl(ttl_ms)?))?.into_bool()?)
  }

  #[napi(catch_unwind)]
  pub fn exists(&self, id: String) -> napi::Result<bool, Code> {
    let o = self.open()?;
    if check_id(&id).is_err() {
      return Ok(false);
    }
    Ok(o.backend.run(Op::Exists(id))?.into_bool()?)
  }

  /// Number of live sessions.
  #[napi(catch_unwind)]
  pub fn len(&self) -> napi::Result<f64, Code> {
    let o = self.open()?;
    Ok(o.backend.run(Op::Len)?.into_count()? as f64)
  }

  /// Removes every session; returns how many were live.
  #[napi(catch_unwind)]
  pub fn clear(&self) -> napi::Result<f64, Code> {
    let o = self.open()?;
    Ok(o.backend.run(Op::Clear)?.into_count()? as f64)
  }

  /// Ids of all live sessions.
  #[napi(catch_unwind)]
  pub fn keys(&self) -> napi::Result<Vec<String>, Code> {
    let o = self.open()?;
    Ok(o.backend.run(Op::Keys)?.into_keys()?)
  }

  /// A page of up to `count` sessions after `cursor` (`""`: the first):
  /// `[next, id, text | null, pttl, bytes, …]` (`next` `""` when done).
  #[napi(catch_unwind, ts_return_type = "Array<string | number | null>")]
  pub fn page(&self, cursor: String, count: u32) -> napi::Result<super::JsReply, Code> {
    let o = self.open()?;
    let (next, page) = o.backend.run(Op::Page(cursor, count.max(1)))?.into_page()?;
    let es = page
      .into_iter()
      .map(|(id, v, ttl)| {
        let bytes = v.len();
        let text = o.core.decode(&id, v);
        (id, text, ttl, bytes)
      })
      .collect();
    Ok(super::JsReply::TextPage(next, es))
  }

  /// All live sessions with their ids.
  #[napi(catch_unwind)]
  pub fn entries(&self) -> napi::Result<Vec<StoredEntry>, Code> {
    let o = self.open()?;
    let mut out = Vec::new();
    for (id, v) in o.backend.run(Op::Entries)?.into_entries()? {
      if let Some(value) = o.core.decode(&id, v) {
        out.push(StoredEntry { id, value });
      }
    }
    Ok(out)
  }

  /// Resolves when every change made so far is persisted (sessionStateFile
  /// stores; at once for in-memory stores), with the failure if the last
  /// write failed (napi's async path carries no error codes, so the facade
  /// turns the outcome into a coded error).
  #[napi]
  pub async fn flush(&self) -> napi::Result<Outcome> {
    let b = self.open()?.backend.clone();
    let r = tokio::task::spawn_blocking(move || b.flush())
      .await
      .unwrap_or_else(|e| Err(StoreError::new(Code::Internal, format!("flush task failed: {e}"))));
    Ok(match r {
      Ok(()) => Outcome { code: None, message: None },
      Err(e) => Outcome { code: Some(e.code.as_str().to_string()), message: Some(e.message) },
    })
  }

  /// Stops background work; later calls fail with `ERR_STORE_CLOSED`.
  #[napi(catch_unwind)]
  pub fn close(&self) -> napi::Result<(), Code> {
    let open = self.open.write().take();
    match open {
      Some(o) => Ok(o.backend.close()?),
      None => Ok(()),
    }
  }

  /// Test hook: proves that a Rust panic in a store method surfaces as a JS
  /// error and leaves the store usable. Not in the published types.
  #[napi(catch_unwind, skip_typescript)]
  pub fn panic_for_test(&self) -> napi::Result<(), Code> {
    panic!("deliberate panic (test hook)");
  }
}
