//! The dispatcher of stores whose backend does its I/O on rs-store's
//! threads (Redis Cluster and Sentinel, files, object storage): one task
//! per store answers batches in call order. It merges every batch that
//! queued up meanwhile into one [`Backend::exec`] call (one Redis
//! pipeline) and, where the backend allows, keeps several in flight,
//! started in call order, so calls on one id apply in call order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use crate::backend::{Backend, Op, Reply};
use crate::error::{Code, Result, StoreError};

/// What the binding sends a dispatcher.
pub enum Msg {
  Batch(Vec<Op>),
  Close,
}

/// Where a store's dispatcher runs.
pub enum Runs {
  /// On rs-store's runtime ([`crate::runtime`]; backends whose I/O is
  /// async: Redis, object storage).
  Shared,
  /// On a thread of the store's own, with a current-thread runtime: the
  /// backend may block it (the file store runs small batches right there,
  /// [`crate::backend::file::FileOptions::inline_small_batches`], instead of
  /// a hop to the blocking pool and back).
  OwnThread(&'static str),
}

/// Starts the dispatcher of one store; `deliver` gets each batch's answers
/// on the dispatcher's thread. It ends after a `Close` (whose answer is the
/// backend's close) or once the sender is dropped.
pub fn start(
  backend: Arc<dyn Backend>,
  encode: Encode,
  deliver: impl Fn(Answers) + Send + Sync + 'static,
  spin: Duration,
  runs: Runs,
) -> Result<mpsc::UnboundedSender<Msg>> {
  let (tx, rx) = mpsc::unbounded_channel();
  let dispatcher = dispatch(backend, encode, rx, deliver, spin);
  match runs {
    Runs::Shared => {
      crate::runtime::get()?.spawn(dispatcher);
    }
    Runs::OwnThread(name) => {
      let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::new(Code::Internal, format!("cannot start the store's runtime: {e}")))?;
      std::thread::Builder::new()
        .name(name.into())
        .spawn(move || rt.block_on(dispatcher))
        .map_err(|e| StoreError::new(Code::Internal, format!("cannot start the store's thread: {e}")))?;
    }
  }
  Ok(tx)
}

/// How long the dispatcher keeps its worker awake (yielding) while it waits
/// for a reply or for the next request, before it parks. Parking and waking a
/// thread can cost more than a Redis round trip, so at low concurrency the
/// spin roughly halves latency. It only runs while the
/// store is lightly loaded (recent batches of at most `SPIN_MAX_BATCH` calls):
/// under load the worker is busy anyway and a spinner would take CPU from
/// Node and Redis.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);
const SPIN_MAX_BATCH: usize = 2;

/// Polls `fut`, yielding to the scheduler between polls, for up to `spin`;
/// then waits for it normally.
async fn spin_race<F: Future>(fut: F, spin: Duration) -> F::Output {
  let mut fut = std::pin::pin!(fut);
  if spin.is_zero() {
    return fut.await;
  }
  let start = Instant::now();
  loop {
    if let Poll::Ready(v) = futures::poll!(fut.as_mut()) {
      return v;
    }
    if start.elapsed() > spin {
      return fut.await;
    }
    tokio::task::yield_now().await;
  }
}

/// The answers to one batch, in op order; a get's carries its id (its
/// session is decoded with it).
pub type Answers = Vec<(Option<String>, Result<Reply>)>;

/// Encodes a session for a backend (the store's codec).
pub type Encode = Arc<dyn Fn(&str, Vec<u8>) -> Result<Vec<u8>> + Send + Sync>;

enum Event {
  Done(Answers),
  Msg(Option<Msg>),
}

/// One batch through the codec and the backend: session values are encoded
/// here, on the I/O thread, not on the JS thread.
async fn run_batch(backend: Arc<dyn Backend>, encode: Encode, ops: Vec<Op>) -> Answers {
  let n = ops.len();
  let mut failed: Vec<(usize, StoreError)> = Vec::new();
  let mut ids: Vec<Option<String>> = Vec::with_capacity(n);
  let mut run = Vec::with_capacity(n);
  for (i, mut op) in ops.into_iter().enumerate() {
    if let Some((id, v)) = op.value_mut() {
      match encode(id, std::mem::take(v)) {
        Ok(enc) => *v = enc,
        Err(e) => {
          failed.push((i, e));
          ids.push(None);
          continue;
        }
      }
    }
    ids.push(match &op {
      Op::Get(id) => Some(id.clone()),
      _ => None,
    });
    run.push(op);
  }
  let mut replies = backend.exec(run).await.into_iter();
  let mut failed = failed.into_iter().peekable();
  let mut out = Vec::with_capacity(n);
  for (i, get_id) in ids.into_iter().enumerate() {
    if failed.peek().is_some_and(|(j, _)| *j == i) {
      out.push((None, Err(failed.next().expect("peeked").1)));
      continue;
    }
    let r = replies.next().unwrap_or_else(|| Err(StoreError::new(Code::Internal, "missing reply")));
    out.push((get_id, r));
  }
  out
}

/// Runs batches and answers them in order. Per-id batches are pipelined when
/// the backend allows it ([`Backend::overlapping_batches_keep_order`]): a new
/// batch starts while earlier ones are still in flight (started in call
/// order, so Redis applies them in call order). A batch with a whole-store op
/// (length, clear, all) waits for everything before it and runs alone. No
/// timeout here: every backend bounds its own waits (Redis: connect and
/// command timeouts), so a batch always ends.
async fn dispatch(
  backend: Arc<dyn Backend>,
  encode: Encode,
  mut rx: mpsc::UnboundedReceiver<Msg>,
  deliver: impl Fn(Answers),
  spin: Duration,
) {
  let mut inflight: FuturesOrdered<Pin<Box<dyn Future<Output = Answers> + Send>>> = FuturesOrdered::new();
  let mut closing = false;
  // A Close is answered; a dropped sender (the store was garbage-collected)
  // has nobody to answer, and the JS side expects no reply it did not ask for.
  let mut answer_close = true;
  let mut last_batch = 0usize;
  let overlap = backend.overlapping_batches_keep_order();
  loop {
    if closing && inflight.is_empty() {
      let closed = backend.close().await;
      if answer_close {
        deliver(vec![(None, closed.map(|_| Reply::Done))]);
      }
      return;
    }
    let has_inflight = !inflight.is_empty();
    let spin_now = if last_batch <= SPIN_MAX_BATCH { spin } else { Duration::ZERO };
    let event = spin_race(
      async {
        tokio::select! {
          biased;
          Some(r) = inflight.next(), if has_inflight => Event::Done(r),
          m = rx.recv(), if !closing => Event::Msg(m),
        }
      },
      spin_now,
    )
    .await;
    let mut ops = match event {
      Event::Done(r) => {
        deliver(r);
        continue;
      }
      Event::Msg(None) => {
        (closing, answer_close) = (true, false);
        continue;
      }
      Event::Msg(Some(Msg::Close)) => {
        closing = true;
        continue;
      }
      Event::Msg(Some(Msg::Batch(ops))) => ops,
    };
    // Merge whatever queued up meanwhile, up to a Close.
    loop {
      match rx.try_recv() {
        Ok(Msg::Batch(more)) => ops.extend(more),
        Ok(Msg::Close) => {
          closing = true;
          break;
        }
        Err(_) => break,
      }
    }
    last_batch = ops.len();
    if !overlap || ops.iter().any(|op| op.id().is_none()) {
      while let Some(r) = inflight.next().await {
        deliver(r);
      }
      deliver(run_batch(backend.clone(), encode.clone(), ops).await);
    } else {
      inflight.push_back(Box::pin(run_batch(backend.clone(), encode.clone(), ops)));
    }
  }
}
