//! Stores over backends that do I/O (Redis, files, …): calls are gathered and
//! completed in batches so the per-call cost of crossing into native code and
//! back is paid once per batch, not once per call.
//!
//! * A store is a napi External; the free functions here take it first
//!   (`lib/native.js` gives it methods). The JS facade queues each call
//!   with the sync `batch_q` (an op as data; its arguments are checked and
//!   converted here, on the JS thread, at call time) and calls
//!   `batch_flush` once per tick, which hands the tick's ops to the
//!   dispatcher.
//! * One dispatcher per store ([`crate::engine::dispatch`]) answers the
//!   batches in call order; or, for one Redis server and the daemon, the
//!   socket on the JS thread (`wire_pack`/`wire_feed`, [`crate::engine::wire`]).
//! * Replies go back through one long-lived threadsafe function as one array
//!   in op order; the facade keeps its pending Promises in the same order.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{BufferSlice, Either3, External, Function, Null, ToNapiValue, TypeName, Undefined, ValueType};
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsString, JsValue};
use napi_derive::napi;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::reply::{decoded, JsReply};
use super::{Core, Utf8Text};
use crate::backend::{Backend, Op};
use crate::engine::dispatch::{self, Msg};
pub(crate) use crate::engine::dispatch::{Runs, DEFAULT_SPIN};
use crate::engine::wire::Wire;
use crate::error::{Code, StoreError};

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
    // SAFETY: `env` is the live environment napi-rs hands to to_napi_value on the JS thread; `arr` is
    // an out-pointer on our stack.
    napi::check_status!(unsafe { sys::napi_create_array_with_length(env, n, &mut arr) })?;
    for (i, r) in replies.drain(..).enumerate() {
      // SAFETY: same env, on the JS thread.
      let v = unsafe { JsReply::to_napi_value(env, r)? };
      // SAFETY: `arr` and `v` are live values of this env, i < n.
      napi::check_status!(unsafe { sys::napi_set_element(env, arr, i as u32, v) })?;
    }
    // A Buffer, not a Latin-1 string as `wire_pack` answers: a string here
    // would read as a reply. (Rare: the next steps of a whole-store op.)
    if let Some(bytes) = val.more {
      let b = BufferSlice::copy_from(&Env::from_raw(env), &bytes)?;
      // SAFETY: `arr` and the Buffer are live values of this env; n - 1 is the last slot.
      napi::check_status!(unsafe { sys::napi_set_element(env, arr, (n - 1) as u32, b.raw()) })?;
    }
    Ok(arr)
  }
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

/// A store over an I/O backend, handed to JS as an External that the free
/// functions below take first; see the module docs for the call protocol.
pub struct AsyncStore {
  queue: Mutex<Vec<Op>>,
  core: Arc<Core>,
  run: Driver,
}

/// Who sends the queued ops.
// One per store, made once: its size does not matter, and a Box would be
// one more pointer on every call of the JS-socket path.
#[allow(clippy::large_enum_variant)]
enum Driver {
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
  Ok(AsyncStore { queue: Mutex::new(Vec::with_capacity(64)), core, run: Driver::Dispatch { backend, tx } })
}

/// A store whose Redis connection is a socket on the JS thread (see
/// [`crate::engine::wire`]).
pub(crate) fn wire(wire: Wire, core: Core) -> AsyncStore {
  AsyncStore { queue: Mutex::new(Vec::with_capacity(64)), core: Arc::new(core), run: Driver::Wire(Mutex::new(wire)) }
}

impl AsyncStore {
  fn wire(&self) -> crate::error::Result<&Mutex<Wire>> {
    match &self.run {
      Driver::Wire(w) => Ok(w),
      Driver::Dispatch { .. } => Err(StoreError::new(Code::Internal, "this store has no JS-thread connection")),
    }
  }

  fn dispatch(&self, msg: Msg) -> crate::error::Result<()> {
    match &self.run {
      Driver::Dispatch { tx, .. } => tx.send(msg).map_err(|_| StoreError::closed()),
      Driver::Wire(_) => Err(StoreError::new(Code::Internal, "this store's connection is driven from JS")),
    }
  }
}

/// Queues one op, given as data (see `Op::from_call`; arguments as for
/// `sync_call`), checked now: a bad argument throws and queues
/// nothing. Returns what the op changes: 0 nothing, 1 its id, 2 every
/// session (the facade holds fast reads back behind pending changes).
/// Sessions are encoded now when the socket is on the JS thread (an
/// encoding error then rejects the call at once), else on the I/O thread.
#[napi(catch_unwind)]
pub fn batch_q(
  store: &External<AsyncStore>,
  #[napi(ts_arg_type = "string")] op: Utf8Text,
  #[napi(ts_arg_type = "string")] id: Option<Utf8Text>,
  #[napi(ts_arg_type = "string")] text: Option<Utf8Text>,
  ms: Option<f64>,
) -> napi::Result<u32, Code> {
  let op = store.core.op((op, id, text, ms), matches!(store.run, Driver::Wire(_)))?;
  let changes = op.changes() as u32;
  store.queue.lock().push(op);
  Ok(changes)
}

/// A get answered at once when the backend can do it without waiting on
/// I/O (the file store's fast reads): the session text, `null` when
/// missing, or `undefined` when the get must be queued. The facade calls
/// it only when no change to `id` is pending, so calls on one id still
/// apply in call order.
#[napi(catch_unwind, ts_return_type = "string | null | undefined")]
pub fn batch_get_now(store: &External<AsyncStore>, id: String) -> Either3<String, Null, Undefined> {
  let Driver::Dispatch { backend, .. } = &store.run else { return Either3::C(()) };
  match backend.get_now(&id) {
    None => Either3::C(()),
    Some(None) => Either3::B(Null),
    Some(Some(stored)) => match store.core.decode(&id, stored) {
      Some(text) => Either3::A(text),
      None => Either3::B(Null),
    },
  }
}

/// Hands the queued ops to the dispatcher; their replies arrive in order.
#[napi(catch_unwind)]
pub fn batch_flush(store: &External<AsyncStore>) -> napi::Result<(), Code> {
  let ops = std::mem::take(&mut *store.queue.lock());
  if !ops.is_empty() {
    store.dispatch(Msg::Batch(ops))?;
  }
  Ok(())
}

/// Flushes, then closes the backend; one more reply (for the close) follows.
#[napi(catch_unwind)]
pub fn batch_close(store: &External<AsyncStore>) -> napi::Result<(), Code> {
  batch_flush(store)?;
  store.dispatch(Msg::Close)?;
  Ok(())
}

/// JS-thread connection: a new connection is open; returns its opening
/// commands and the queued ops, packed (null: nothing to send).
#[napi(catch_unwind, ts_return_type = "string | null")]
pub fn wire_opened<'env>(env: &'env Env, store: &External<AsyncStore>) -> napi::Result<Option<JsString<'env>>, Code> {
  store.wire()?.lock().opened();
  wire_pack(env, store)
}

/// JS-thread connection: the queued ops (and any further steps of a
/// whole-store op), packed for the socket (null: nothing to send). The
/// bytes cross as a string of one Latin-1 char per byte, made straight
/// from the packing buffer, which `socket.write(s, 'latin1')` turns back
/// into the same bytes: V8 makes it with one copy on its heap, where a
/// Buffer costs a backing store to allocate and free.
#[napi(catch_unwind, ts_return_type = "string | null")]
pub fn wire_pack<'env>(env: &'env Env, store: &External<AsyncStore>) -> napi::Result<Option<JsString<'env>>, Code> {
  let ops = std::mem::take(&mut *store.queue.lock());
  let packed = store.wire()?.lock().pack_with(ops, |b| env.create_string_latin1(b)).transpose();
  packed.map_err(|e| napi::Error::new(Code::Internal, format!("cannot make the string of commands to send: {}", e.reason)))
}

/// JS-thread connection: the bytes of one socket read; returns the
/// answers of the calls they complete, in call order, and last, when
/// there is something more to send (the next steps of a whole-store op,
/// calls held behind it), a Buffer to write. Throws when the connection
/// is unusable (not RESP, refused credentials): close it and `abort` with
/// that error.
#[napi(catch_unwind, ts_return_type = "Array<undefined | null | string | boolean | number | string[] | Error | Buffer>")]
pub fn wire_feed(store: &External<AsyncStore>, chunk: BufferSlice<'_>) -> napi::Result<Fed, Code> {
  let mut wire = store.wire()?.lock();
  let replies = wire.feed(&chunk)?;
  let replies = replies.into_iter().map(|(get_id, r)| decoded(&store.core, get_id.as_deref(), r)).collect();
  let more = if wire.has_more() { wire.pack(std::mem::take(&mut *store.queue.lock())) } else { None };
  Ok(Fed { replies, more })
}

/// JS-thread connection: the connection is gone; every call sent or
/// queued fails with this error (`code` an `ERR_*` code), in call order.
#[napi(catch_unwind, ts_return_type = "Array<Error>")]
pub fn wire_abort(store: &External<AsyncStore>, code: String, message: String) -> napi::Result<Vec<JsReply>, Code> {
  let e = StoreError::new(Code::parse(&code).unwrap_or(Code::StoreUnavailable), message);
  let queued = std::mem::take(&mut *store.queue.lock());
  Ok(store.wire()?.lock().abort(queued, &e).into_iter().map(JsReply::from).collect())
}
