//! A Redis store (one server, or rs-store's session daemon) whose socket is
//! on the JS thread (`lib/redis-wire.js`): calls are queued (`wire_q`) and
//! packed into RESP (`wire_pack`), and the socket's reads are parsed
//! (`wire_feed`), by the redis crate ([`crate::backend::redis::wire`]). A type of
//! its own, not a mode of [`super::AsyncStore`]: it has no dispatcher to
//! flush to, and a dispatcher store has no socket to feed, so neither can
//! be handed the other's calls (napi checks an External's type).

use napi::bindgen_prelude::{BufferSlice, External, ToNapiValue};
use napi::sys;
use napi::{Env, JsString, JsValue};
use napi_derive::napi;
use parking_lot::Mutex;

use super::reply::{decoded, JsReply};
use super::store_core::Queue;
use super::text::call_fn;
use super::Core;
use crate::backend::redis::wire::Wire;
use crate::error::{Code, StoreError};

/// A store whose Redis connection is a socket on the JS thread, handed to
/// JS as an External that the free functions below take first.
pub struct WireStore {
  queue: Queue,
  core: Core,
  wire: Mutex<Wire>,
}

impl WireStore {
  pub(crate) fn new(wire: Wire, core: Core) -> Self {
    WireStore { queue: Queue::new(), core, wire: Mutex::new(wire) }
  }
}

/// What `feed` answers: the replies, then the bytes to send next, if any.
pub struct Fed {
  replies: Vec<JsReply>,
  more: Option<Vec<u8>>,
}

super::reply::ts_type!(Fed, "Array<undefined | null | string | boolean | number | string[] | Error | Buffer>", Object);

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

call_fn! {
  #[doc = " Queues one op, as `batch_q` does for a dispatcher store. Its session is"]
  #[doc = " encoded now, on the JS thread (an encoding error rejects the call at"]
  #[doc = " once): the packing that follows runs here too."]
  #[napi(catch_unwind)]
  pub fn wire_q(store: WireStore, call) -> u32 {
    Ok(store.queue.push(&store.core, call, true)?)
  }
}

/// JS-thread connection: a new connection is open; returns its opening
/// commands and the queued ops, packed (null: nothing to send).
#[napi(catch_unwind, ts_return_type = "string | null")]
pub fn wire_opened<'env>(env: &'env Env, store: &External<WireStore>) -> napi::Result<Option<JsString<'env>>, Code> {
  store.wire.lock().opened();
  wire_pack(env, store)
}

/// JS-thread connection: the queued ops (and any further steps of a
/// whole-store op), packed for the socket (null: nothing to send). The
/// bytes cross as a string of one Latin-1 char per byte, made straight
/// from the packing buffer, which `socket.write(s, 'latin1')` turns back
/// into the same bytes: V8 makes it with one copy on its heap, where a
/// Buffer costs a backing store to allocate and free.
#[napi(catch_unwind, ts_return_type = "string | null")]
pub fn wire_pack<'env>(env: &'env Env, store: &External<WireStore>) -> napi::Result<Option<JsString<'env>>, Code> {
  let ops = store.queue.take();
  let packed = store.wire.lock().pack_with(ops, |b| env.create_string_latin1(b)).transpose();
  packed.map_err(|e| napi::Error::new(Code::Internal, format!("cannot make the string of commands to send: {}", e.reason)))
}

/// JS-thread connection: the bytes of one socket read; returns the
/// answers of the calls they complete, in call order, and last, when
/// there is something more to send (the next steps of a whole-store op,
/// calls held behind it), a Buffer to write. Throws when the connection
/// is unusable (not RESP, refused credentials): close it and `abort` with
/// that error.
#[napi(catch_unwind, ts_return_type = "Array<undefined | null | string | boolean | number | string[] | Error | Buffer>")]
pub fn wire_feed(store: &External<WireStore>, chunk: BufferSlice<'_>) -> napi::Result<Fed, Code> {
  let mut wire = store.wire.lock();
  let replies = wire.feed(&chunk)?;
  let replies = replies.into_iter().map(|(get_id, r)| decoded(&store.core, get_id.as_deref(), r)).collect();
  let more = if wire.has_more() { wire.pack(store.queue.take()) } else { None };
  Ok(Fed { replies, more })
}

/// JS-thread connection: the connection is gone; every call sent or
/// queued fails with this error (`code` an `ERR_*` code), in call order.
#[napi(catch_unwind, ts_return_type = "Array<Error>")]
pub fn wire_abort(store: &External<WireStore>, code: String, message: String) -> napi::Result<Vec<JsReply>, Code> {
  let e = StoreError::new(Code::parse(&code).unwrap_or(Code::StoreUnavailable), message);
  let queued = store.queue.take();
  Ok(store.wire.lock().abort(queued, &e).into_iter().map(JsReply::from).collect())
}
