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
//!   batches in call order. A store whose socket is on the JS thread (one
//!   Redis server, the daemon) is another type, [`super::WireStore`], with
//!   functions of its own: neither kind has the other's calls.
//! * Replies go back through one long-lived threadsafe function as one array
//!   in op order; the facade keeps its pending Promises in the same order.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Either3, External, Null, Undefined};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use tokio::sync::mpsc;

use super::reply::{decoded, JsReply};
use super::store_core::{charged, reporter_of, OnDone, OnReport, Queue};
use super::text::call_fn;
use super::Core;
use super::{FileStoreConfig, ObjectStoreConfig, PostgresStoreConfig, RedisStoreConfig};
use crate::backend::Backend;
use crate::engine::dispatch::{self, Msg};
pub(crate) use crate::engine::dispatch::{Runs, DEFAULT_SPIN};
use crate::error::{Code, StoreError};

type Done = ThreadsafeFunction<Vec<JsReply>, (), Vec<JsReply>, napi::Status, false, true>;

/// A store over an I/O backend and its dispatcher, handed to JS as an
/// External that the free functions below take first; see the module docs
/// for the call protocol.
pub struct AsyncStore {
  queue: Queue,
  core: Arc<Core>,
  backend: Arc<dyn Backend>,
  /// The store's dispatcher on rs-store's I/O thread (or its own thread).
  tx: mpsc::UnboundedSender<Msg>,
}

/// Which dispatcher store, and its config (`{ kind: 'file', config }`, …),
/// as the JS facades (`index.js`) give it.
#[napi(discriminant = "kind", discriminant_case = "lowercase")]
pub enum DispatchStoreConfig {
  File { config: FileStoreConfig },
  Redis { config: RedisStoreConfig },
  Postgres { config: PostgresStoreConfig },
  Object { config: ObjectStoreConfig },
}

/// What a dispatcher store is made of (each store's `dispatched`, beside
/// its config): the core, the backend, and how its dispatcher runs.
pub(crate) struct Dispatched {
  pub core: Core,
  pub backend: Arc<dyn Backend>,
  pub spin: Duration,
  pub runs: Runs,
}

/// A store over an I/O backend (files, Redis over the redis crate's
/// clients, PostgreSQL, object storage). Replies arrive through
/// `onDone(replies)` in call order; problems that answer no call (a
/// corrupt file met by a sweep, a session that does not decode) through
/// `onReport(error)`.
#[napi(
  catch_unwind,
  ts_args_type = "config: DispatchStoreConfig, onDone: (replies: Array<undefined | null | string | boolean | number | string[] | Error>) => void, onReport?: (err: Error) => void"
)]
pub fn dispatch_store(
  config: DispatchStoreConfig,
  on_done: OnDone<'_>,
  on_report: Option<OnReport<'_>>,
) -> napi::Result<External<AsyncStore>, Code> {
  let report = reporter_of(on_report)?;
  let made = match config {
    DispatchStoreConfig::File { config } => super::file::dispatched(config, report),
    DispatchStoreConfig::Redis { config } => super::redis::dispatched(config, report),
    DispatchStoreConfig::Postgres { config } => super::postgres::dispatched(config, report),
    DispatchStoreConfig::Object { config } => super::object_storage::dispatched(config, report),
  }?;
  start(made, on_done).map(charged)
}

fn start(Dispatched { core, backend, spin, runs }: Dispatched, on_done: OnDone<'_>) -> napi::Result<AsyncStore, Code> {
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
  Ok(AsyncStore { queue: Queue::new(), core, backend, tx })
}

impl AsyncStore {
  fn dispatch(&self, msg: Msg) -> crate::error::Result<()> {
    self.tx.send(msg).map_err(|_| StoreError::closed())
  }
}

call_fn! {
  #[doc = " Queues one op, given as data (see `Op::from_call`; arguments as for"]
  #[doc = " `sync_call`), checked now: a bad argument throws and queues"]
  #[doc = " nothing. Returns what the op changes: 0 nothing, 1 its id, 2 every"]
  #[doc = " session (the facade holds fast reads back behind pending changes)."]
  #[doc = " Sessions are encoded on the I/O thread."]
  #[napi(catch_unwind)]
  pub fn batch_q(store: AsyncStore, call) -> u32 {
    Ok(store.queue.push(&store.core, call, false)?)
  }
}

/// A get answered at once when the backend can do it without waiting on
/// I/O (the file store's fast reads): the session text, `null` when
/// missing, or `undefined` when the get must be queued. The facade calls
/// it only when no change to `id` is pending, so calls on one id still
/// apply in call order.
#[napi(catch_unwind, ts_return_type = "string | null | undefined")]
pub fn batch_get_now(store: &External<AsyncStore>, id: String) -> Either3<String, Null, Undefined> {
  match store.backend.get_now(&id) {
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
  let ops = store.queue.take();
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
