//! Stores over backends that do I/O (Redis, files, …): calls are gathered and
//! completed in batches so the per-call cost of crossing into native code and
//! back is paid once per batch, not once per call.
//!
//! * The JS facade queues each call with a sync `q*` method (arguments are
//!   checked and converted here, on the JS thread, at call time) and calls
//!   `flush()` once per tick; `flush` hands the tick's ops to the dispatcher.
//! * One dispatcher per store ([`crate::engine::dispatch`]) answers the
//!   batches in call order; or, for one Redis server and the daemon, the
//!   socket on the JS thread (`pack`/`feed`, [`crate::engine::wire`]).
//! * Replies go back through one long-lived threadsafe function as one array
//!   in op order; the facade keeps its pending Promises in the same order.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{BufferSlice, Either3, Function, Null, ToNapiValue, TypeName, Undefined, ValueType};
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue};
use napi_derive::napi;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{check_id, expiry_for, lock_ttl, set_if_op, Core, Utf8Text};
use crate::backend::{Backend, Op, Reply};
use crate::engine::dispatch::{self, Msg};
pub(crate) use crate::engine::dispatch::{Runs, DEFAULT_SPIN};
use crate::engine::wire::Wire;
use crate::error::{Code, StoreError};
use crate::expiry::now_ms;

/// One answer as JS sees it: null, a string, a boolean, a number, an array
/// of strings, or an Error carrying a `code`. A backend's [`Reply`] as it
/// is, or, where it holds sessions, with them decoded to text (`decoded`).
pub enum JsReply {
  Failed(StoreError),
  Reply(Reply),
  Text(Option<String>),
  /// `all()`: sessions that decode, with their ids.
  TextEntries(Vec<(String, String)>),
  /// A page of a walk: the next cursor, and per session its id, its text
  /// (`None`: it does not decode), its ttl and its stored size.
  TextPage(String, Vec<(String, Option<String>, crate::backend::Ttl, usize)>),
}

impl From<crate::error::Result<Reply>> for JsReply {
  fn from(r: crate::error::Result<Reply>) -> Self {
    match r {
      Ok(r) => JsReply::Reply(r),
      Err(e) => JsReply::Failed(e),
    }
  }
}

impl TypeName for JsReply {
  fn type_name() -> &'static str {
    "undefined | null | string | boolean | number | string[] | Error"
  }
  fn value_type() -> ValueType {
    ValueType::Unknown
  }
}

impl ToNapiValue for JsReply {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    let error = |e: StoreError| <napi::Error<Code> as ToNapiValue>::to_napi_value(env, e.into());
    let reply = match val {
      JsReply::Failed(e) => return error(e),
      JsReply::Text(None) => return Null::to_napi_value(env, Null),
      JsReply::Text(Some(s)) => return text_to_js(env, &s),
      JsReply::TextEntries(es) => {
        // Flat [id, text, id, text, …]
        let mut flat = Vec::with_capacity(es.len() * 2);
        for (id, t) in es {
          flat.push(id);
          flat.push(t);
        }
        return Vec::<String>::to_napi_value(env, flat);
      }
      JsReply::TextPage(next, es) => return page_to_js(env, next, es),
      JsReply::Reply(r) => r,
    };
    match reply {
      Reply::Value(None) => Null::to_napi_value(env, Null),
      // `set` resolves undefined, as on the memory store.
      Reply::Done => Undefined::to_napi_value(env, ()),
      Reply::Bool(b) => bool::to_napi_value(env, b),
      Reply::Ttl(t) => f64::to_napi_value(env, t.pttl() as f64),
      Reply::Count(n) => f64::to_napi_value(env, n as f64),
      Reply::Keys(k) => Vec::<String>::to_napi_value(env, k),
      // run_batch decodes sessions (Value → Text, Entries → TextEntries).
      r @ (Reply::Value(Some(_)) | Reply::Entries(_) | Reply::Page(..)) => {
        error(StoreError::new(Code::Internal, format!("undecoded reply {r:?}")))
      }
    }
  }
}

/// What `feed` answers: the replies, then the bytes to send next, if any.
pub struct Fed {
  replies: Vec<JsReply>,
  more: Option<Vec<u8>>,
}

impl TypeName for Fed {
  fn type_name() -> &'static str {
    "Array<undefined | null | string | boolean | number | string[] | Error | Buffer>"
  }
  fn value_type() -> ValueType {
    ValueType::Object
  }
}

impl ToNapiValue for Fed {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    let mut replies = val.replies;
    let mut arr = std::ptr::null_mut();
    let n = replies.len() + usize::from(val.more.is_some());
    napi::check_status!(unsafe { sys::napi_create_array_with_length(env, n, &mut arr) })?;
    for (i, r) in replies.drain(..).enumerate() {
      let v = unsafe { JsReply::to_napi_value(env, r)? };
      napi::check_status!(unsafe { sys::napi_set_element(env, arr, i as u32, v) })?;
    }
    if let Some(bytes) = val.more {
      let env_ = Env::from_raw(env);
      let b = copied(&env_, &bytes).map_err(|e| napi::Error::new(napi::Status::GenericFailure, e.reason.clone()))?;
      napi::check_status!(unsafe { sys::napi_set_element(env, arr, (n - 1) as u32, b.raw()) })?;
    }
    Ok(arr)
  }
}

/// A Buffer holding a copy of `bytes`: a plain V8 allocation, where an
/// external Buffer (no copy) costs a finalizer that the GC must run.
fn copied<'env>(env: &'env Env, bytes: &[u8]) -> napi::Result<BufferSlice<'env>, Code> {
  BufferSlice::copy_from(env, bytes).map_err(|e| napi::Error::new(Code::Internal, e.reason.clone()))
}

/// A page as one flat array: `[next, id, text | null, pttl, bytes, id, …]`.
pub(crate) unsafe fn page_to_js(
  env: sys::napi_env,
  next: String,
  es: Vec<(String, Option<String>, crate::backend::Ttl, usize)>,
) -> napi::Result<sys::napi_value> {
  let mut arr = std::ptr::null_mut();
  napi::check_status!(unsafe { sys::napi_create_array_with_length(env, 1 + es.len() * 4, &mut arr) })?;
  let mut i = 0u32;
  let mut put = |v: sys::napi_value| -> napi::Result<()> {
    napi::check_status!(unsafe { sys::napi_set_element(env, arr, i, v) })?;
    i += 1;
    Ok(())
  };
  put(unsafe { text_to_js(env, &next)? })?;
  for (id, text, ttl, bytes) in es {
    put(unsafe { String::to_napi_value(env, id)? })?;
    put(match text {
      Some(t) => unsafe { text_to_js(env, &t)? },
      None => unsafe { Null::to_napi_value(env, Null)? },
    })?;
    put(unsafe { f64::to_napi_value(env, ttl.pttl() as f64)? })?;
    put(unsafe { f64::to_napi_value(env, bytes as f64)? })?;
  }
  Ok(arr)
}

/// A JS string of `s`: ASCII (most JSON) is copied as Latin-1, which V8
/// takes without decoding UTF-8.
unsafe fn text_to_js(env: sys::napi_env, s: &str) -> napi::Result<sys::napi_value> {
  let mut v = std::ptr::null_mut();
  let status = if s.is_ascii() {
    unsafe { sys::napi_create_string_latin1(env, s.as_ptr().cast(), s.len() as isize, &mut v) }
  } else {
    unsafe { sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut v) }
  };
  napi::check_status!(status)?;
  Ok(v)
}

/// A thread-safe reporter that hands each error to `on_report` on the JS
/// thread (weak: it never keeps Node alive).
pub(crate) fn reporter(on_report: Function<'_, JsReply, ()>) -> napi::Result<crate::backend::Report, Code> {
  let tsfn: ThreadsafeFunction<JsReply, (), JsReply, napi::Status, false, true> = on_report
    .build_threadsafe_function::<JsReply>()
    .callee_handled::<false>()
    .weak::<true>()
    .build_callback(|ctx| Ok(ctx.value))
    .map_err(|e| StoreError::new(Code::Internal, format!("cannot create the report callback: {e}")))?;
  Ok(Arc::new(move |e: StoreError| {
    tsfn.call(JsReply::Failed(e), ThreadsafeFunctionCallMode::NonBlocking);
  }))
}

type Done = ThreadsafeFunction<Vec<JsReply>, (), Vec<JsReply>, napi::Status, false, true>;

/// A store over an I/O backend; see the module docs for the call protocol.
#[napi(custom_finalize)]
pub struct AsyncStore {
  queue: Mutex<Vec<Op>>,
  core: Arc<Core>,
  run: Run,
}

impl napi::bindgen_prelude::ObjectFinalize for AsyncStore {
  fn finalize(self, env: Env) -> napi::Result<()> {
    let _ = env.adjust_external_memory(-super::NATIVE_COST);
    Ok(())
  }
}

/// Who sends the queued ops.
enum Run {
  /// The store's dispatcher on rs-store's I/O thread (`flush`).
  Dispatch { backend: Arc<dyn Backend>, tx: mpsc::UnboundedSender<Msg> },
  /// A socket on the JS thread (`lib/redis-wire.js`): `pack`, `feed`,
  /// `abort`. Values are encoded when queued.
  Wire(Mutex<Wire>),
}

pub(crate) fn start(
  backend: Arc<dyn Backend>,
  on_done: Function<'_, Vec<JsReply>, ()>,
  core: Core,
  spin: Duration,
  runs: Runs,
) -> napi::Result<AsyncStore, Code> {
  let done: Done = on_done
    .build_threadsafe_function::<Vec<JsReply>>()
    .callee_handled::<false>()
    .weak::<true>()
    .build_callback(|ctx| Ok(ctx.value))
    .map_err(|e| StoreError::new(Code::Internal, format!("cannot create the completion callback: {e}")))?;
  let core = Arc::new(core);
  let (encoder, decoder) = (core.clone(), core.clone());
  let tx = dispatch::start(
    backend.clone(),
    Arc::new(move |id: &str, v: Vec<u8>| encoder.encode(id, v)),
    // Sessions are decoded here, on the dispatcher's thread, not on the JS thread.
    move |answers: dispatch::Answers| {
      let replies = answers.into_iter().map(|(get_id, r)| decoded(&decoder, get_id.as_deref(), r)).collect();
      done.call(replies, ThreadsafeFunctionCallMode::NonBlocking);
    },
    spin,
    runs,
  )?;
  Ok(AsyncStore { queue: Mutex::new(Vec::with_capacity(64)), core, run: Run::Dispatch { backend, tx } })
}

/// A store whose Redis connection is a socket on the JS thread (see
/// [`crate::engine::wire`]).
pub(crate) fn wire(wire: Wire, core: Core) -> AsyncStore {
  AsyncStore { queue: Mutex::new(Vec::with_capacity(64)), core: Arc::new(core), run: Run::Wire(Mutex::new(wire)) }
}

/// A reply with its sessions decoded (run on the thread that answers).
fn decoded(core: &Core, get_id: Option<&str>, r: crate::error::Result<Reply>) -> JsReply {
  match r {
    Ok(Reply::Value(Some(b))) => JsReply::Text(get_id.and_then(|id| core.decode(id, b))),
    Ok(Reply::Entries(es)) => JsReply::TextEntries(es.into_iter().filter_map(|(id, v)| core.decode(&id, v).map(|t| (id, t))).collect()),
    Ok(Reply::Page(next, es)) => JsReply::TextPage(
      next,
      es.into_iter()
        .map(|(id, v, ttl)| {
          let bytes = v.len();
          let text = core.decode(&id, v);
          (id, text, ttl, bytes)
        })
        .collect(),
    ),
    other => other.into(),
  }
}

impl AsyncStore {
  fn push(&self, op: Op) {
    self.queue.lock().push(op);
  }

  /// A session's bytes as queued: encoded now when the store answers on
  /// the JS thread (an encoding error then rejects the call at once), on
  /// the I/O thread otherwise (`run_batch`).
  fn value(&self, id: &str, text: Utf8Text) -> crate::error::Result<Vec<u8>> {
    match self.run {
      Run::Wire(_) => self.core.encode(id, text.into_bytes()),
      Run::Dispatch { .. } => Ok(text.into_bytes()),
    }
  }

  fn wire(&self) -> crate::error::Result<&Mutex<Wire>> {
    match &self.run {
      Run::Wire(w) => Ok(w),
      Run::Dispatch { .. } => Err(StoreError::new(Code::Internal, "this store has no JS-thread connection")),
    }
  }

  fn dispatch(&self, msg: Msg) -> crate::error::Result<()> {
    match &self.run {
      Run::Dispatch { tx, .. } => tx.send(msg).map_err(|_| StoreError::closed()),
      Run::Wire(_) => Err(StoreError::new(Code::Internal, "this store's connection is driven from JS")),
    }
  }
}

#[napi]
impl AsyncStore {
  /// Queues a get. Returns false (nothing queued) for an id that cannot name
  /// a session: the facade answers "missing" itself.
  #[napi(catch_unwind)]
  pub fn q_get(&self, id: String) -> bool {
    if check_id(&id).is_err() {
      return false;
    }
    self.push(Op::Get(id));
    true
  }

  /// A get answered at once when the backend can do it without waiting on
  /// I/O (the file store's fast reads): the session text, `null` when
  /// missing, or `undefined` when the get must be queued. The facade calls
  /// it only when no change to `id` is pending, so calls on one id still
  /// apply in call order.
  #[napi(catch_unwind, ts_return_type = "string | null | undefined")]
  pub fn get_now(&self, id: String) -> Either3<String, Null, Undefined> {
    if check_id(&id).is_err() {
      return Either3::B(Null);
    }
    let Run::Dispatch { backend, .. } = &self.run else { return Either3::C(()) };
    match backend.get_now(&id) {
      None => Either3::C(()),
      Some(None) => Either3::B(Null),
      Some(Some(stored)) => match self.core.decode(&id, stored) {
        Some(text) => Either3::A(text),
        None => Either3::B(Null),
      },
    }
  }

  #[napi(catch_unwind)]
  pub fn q_exists(&self, id: String) -> bool {
    if check_id(&id).is_err() {
      return false;
    }
    self.push(Op::Exists(id));
    true
  }

  #[napi(catch_unwind)]
  pub fn q_ttl(&self, id: String) -> bool {
    if check_id(&id).is_err() {
      return false;
    }
    self.push(Op::Ttl(id));
    true
  }

  /// Queues a set; `ttlMs` undefined = never expires, 0 = remove.
  #[napi(catch_unwind)]
  pub fn q_set(&self, id: String, #[napi(ts_arg_type = "string")] value: Utf8Text, ttl_ms: Option<f64>) -> napi::Result<(), Code> {
    check_id(&id)?;
    self.core.limits.check(value.as_str())?;
    match expiry_for(ttl_ms)? {
      Some(at) if at <= now_ms() => self.push(Op::Remove(id)),
      at => {
        let value = self.value(&id, value)?;
        self.push(Op::Set(id, value, at))
      }
    }
    Ok(())
  }

  /// Queues a set that only writes when no live session has `id` (`add`,
  /// Redis `SET … NX`) or, with `present`, only when one has (`replace`,
  /// `SET … XX`); its reply is true when written.
  #[napi(catch_unwind)]
  pub fn q_set_if(
    &self,
    id: String,
    #[napi(ts_arg_type = "string")] value: Utf8Text,
    ttl_ms: Option<f64>,
    present: bool,
  ) -> napi::Result<(), Code> {
    check_id(&id)?;
    self.core.limits.check(value.as_str())?;
    let value = self.value(&id, value)?;
    self.push(set_if_op(id, value, ttl_ms, present)?);
    Ok(())
  }

  #[napi(catch_unwind)]
  pub fn q_remove(&self, id: String) -> napi::Result<(), Code> {
    check_id(&id)?;
    self.push(Op::Remove(id));
    Ok(())
  }

  #[napi(catch_unwind)]
  pub fn q_touch(&self, id: String, ttl_ms: Option<f64>) -> napi::Result<(), Code> {
    check_id(&id)?;
    match expiry_for(ttl_ms)? {
      Some(at) if at <= now_ms() => self.push(Op::Remove(id)),
      at => self.push(Op::Touch(id, at)),
    }
    Ok(())
  }

  /// Queues a try-lock of `id` for `token` (never waits; true when taken).
  #[napi(catch_unwind)]
  pub fn q_lock(&self, id: String, token: String, ttl_ms: f64) -> napi::Result<(), Code> {
    check_id(&id)?;
    self.push(Op::Lock(id, token, lock_ttl(ttl_ms)?));
    Ok(())
  }

  #[napi(catch_unwind)]
  pub fn q_unlock(&self, id: String, token: String) -> napi::Result<(), Code> {
    check_id(&id)?;
    self.push(Op::Unlock(id, token));
    Ok(())
  }

  #[napi(catch_unwind)]
  pub fn q_renew(&self, id: String, token: String, ttl_ms: f64) -> napi::Result<(), Code> {
    check_id(&id)?;
    self.push(Op::Renew(id, token, lock_ttl(ttl_ms)?));
    Ok(())
  }

  #[napi(catch_unwind)]
  pub fn q_len(&self) {
    self.push(Op::Len)
  }

  #[napi(catch_unwind)]
  pub fn q_clear(&self) {
    self.push(Op::Clear)
  }

  #[napi(catch_unwind)]
  pub fn q_keys(&self) {
    self.push(Op::Keys)
  }

  #[napi(catch_unwind)]
  pub fn q_entries(&self) {
    self.push(Op::Entries)
  }

  /// Queues a page of up to `count` sessions after `cursor` (`""`: the
  /// first); its reply is `[next, id, text | null, pttl, bytes, …]`.
  #[napi(catch_unwind)]
  pub fn q_page(&self, cursor: String, count: u32) {
    self.push(Op::Page(cursor, count.max(1)))
  }

  /// Hands the queued ops to the dispatcher; their replies arrive in order.
  #[napi(catch_unwind)]
  pub fn flush(&self) -> napi::Result<(), Code> {
    let ops = std::mem::take(&mut *self.queue.lock());
    if !ops.is_empty() {
      self.dispatch(Msg::Batch(ops))?;
    }
    Ok(())
  }

  /// Flushes, then closes the backend; one more reply (for the close) follows.
  #[napi(catch_unwind)]
  pub fn close(&self) -> napi::Result<(), Code> {
    self.flush()?;
    self.dispatch(Msg::Close)?;
    Ok(())
  }

  /// JS-thread connection: a new connection is open; returns its opening
  /// commands and the queued ops, packed (null: nothing to send).
  #[napi(catch_unwind)]
  pub fn opened<'env>(&self, env: &'env Env) -> napi::Result<Option<BufferSlice<'env>>, Code> {
    self.wire()?.lock().opened();
    self.pack(env)
  }

  /// JS-thread connection: the queued ops (and any further steps of a
  /// whole-store op), packed for the socket (null: nothing to send).
  #[napi(catch_unwind)]
  pub fn pack<'env>(&self, env: &'env Env) -> napi::Result<Option<BufferSlice<'env>>, Code> {
    let ops = std::mem::take(&mut *self.queue.lock());
    let bytes = self.wire()?.lock().pack(ops);
    bytes.map(|b| copied(env, &b)).transpose()
  }

  /// JS-thread connection: the bytes of one socket read; returns the
  /// answers of the calls they complete, in call order, and last, when
  /// there is something more to send (the next steps of a whole-store op,
  /// calls held behind it), a Buffer to write. Throws when the connection
  /// is unusable (not RESP, refused credentials): close it and `abort` with
  /// that error.
  #[napi(catch_unwind, ts_return_type = "Array<undefined | null | string | boolean | number | string[] | Error | Buffer>")]
  pub fn feed(&self, chunk: BufferSlice<'_>) -> napi::Result<Fed, Code> {
    let mut wire = self.wire()?.lock();
    let replies = wire.feed(&chunk)?;
    let replies = replies.into_iter().map(|(get_id, r)| decoded(&self.core, get_id.as_deref(), r)).collect();
    let more = if wire.has_more() { wire.pack(std::mem::take(&mut *self.queue.lock())) } else { None };
    Ok(Fed { replies, more })
  }

  /// JS-thread connection: the connection is gone; every call sent or
  /// queued fails with this error (`code` an `ERR_*` code), in call order.
  #[napi(catch_unwind, ts_return_type = "Array<Error>")]
  pub fn abort(&self, code: String, message: String) -> napi::Result<Vec<JsReply>, Code> {
    let e = StoreError::new(Code::parse(&code).unwrap_or(Code::StoreUnavailable), message);
    let queued = std::mem::take(&mut *self.queue.lock());
    Ok(self.wire()?.lock().abort(queued, &e).into_iter().map(JsReply::from).collect())
  }
}
