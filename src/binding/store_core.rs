//! What every store applies between JS text and backend bytes ([`Core`]:
//! the session limit, the codec, where unanswered problems go), and what
//! every constructor does with the handle it returns (its native cost) and
//! with its report callback.

use std::sync::Arc;

use napi::bindgen_prelude::{External, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use parking_lot::Mutex;

use super::reply::JsReply;
use super::text::{Call, SessionLimits, Utf8Text};
use crate::backend::{Op, Recode, Report, UserRules};
use crate::codec::Codec;
use crate::error::{Code, Result, StoreError};
use crate::options::SessionOptions;

/// What every store applies between JS text and backend bytes: the session
/// size limit (checked on the JS thread), the codec, and where problems that
/// answer no call go (e.g. a session that fails to decrypt: the call answers
/// "missing", the reporter gets the coded error).
pub(crate) struct Core {
  pub limits: SessionLimits,
  pub codec: Arc<Codec>,
  pub report: Option<Report>,
  /// Whether the backend has per-user sessions (their ops are refused
  /// before they are queued otherwise).
  pub(crate) users: bool,
}

impl Core {
  /// The core of a store without per-user sessions: their options refused.
  pub(crate) fn new(session: Option<SessionOptions>, report: Option<Report>) -> Result<Self> {
    let (core, rules) = Core::with_users(session, report)?;
    if rules.any() {
      return Err(StoreError::new(
        Code::InvalidOption,
        "this store has no per-user sessions yet (userOf, maxSessionsPerUser, maxLifetime): memory, file, sessions.json and PostgreSQL stores, Redis (a single server, Sentinel or Cluster) and the daemon have them (README, \"Per-user sessions\")",
      ));
    }
    Ok(Core { users: false, ..core })
  }

  /// The core of a store whose backend has per-user sessions, and their rules.
  pub(crate) fn with_users(session: Option<SessionOptions>, report: Option<Report>) -> Result<(Self, UserRules)> {
    let o = session.unwrap_or_default();
    let rules = o.rules()?;
    let core = Core {
      limits: SessionLimits::new(o.max_session_bytes)?,
      codec: Arc::new(Codec::new(&o.secrets.unwrap_or_default(), o.compress.unwrap_or(false))?),
      report,
      users: true,
    };
    Ok((core, rules))
  }

  pub fn encode(&self, id: &str, text: Vec<u8>) -> Result<Vec<u8>> {
    self.codec.encode(id, text)
  }

  /// The op of a JS call, its session held to the size limit and, with
  /// `encode`, encoded now (else on the thread that runs it).
  pub(crate) fn op(&self, call: Call, encode: bool) -> Result<Op> {
    let mut op = Op::from_call(call.0.as_str(), call.1.map(Utf8Text::into_string), call.2.map(Utf8Text::into_bytes), call.3)?;
    match &mut op {
      Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) if !self.users => {
        return Err(StoreError::new(
          Code::InvalidOption,
          "this store has no per-user sessions yet (sessionsOf, revokeUser, rotate): memory, file, sessions.json and PostgreSQL stores, Redis (a single server, Sentinel or Cluster) and the daemon have them",
        ))
      }
      // The codec binds a session to its id: a rotated one is re-encoded.
      Op::Rotate(_, _, recode) if self.codec.is_active() => {
        let codec = self.codec.clone();
        *recode = Some(Recode(Arc::new(move |old, new, v| codec.encode(new, codec.decode(old, v)?))));
      }
      _ => {}
    }
    if let Some((id, v)) = op.value_mut() {
      self.limits.check(v)?;
      if encode {
        *v = self.codec.encode(id, std::mem::take(v))?;
      }
    }
    Ok(op)
  }

  /// The stored session as text, or `None` (reported) when it cannot be
  /// decoded: tampered, wrong key, not UTF-8.
  pub fn decode(&self, id: &str, stored: Vec<u8>) -> Option<String> {
    let r = self
      .codec
      .decode(id, stored)
      .and_then(|b| String::from_utf8(b).map_err(|_| StoreError::new(Code::Corrupt, "stored session is not UTF-8 text")));
    match r {
      Ok(t) => Some(t),
      Err(e) => {
        if let Some(rep) = &self.report {
          rep(StoreError::new(e.code, format!("session {id:?}: {}", e.message)));
        }
        None
      }
    }
  }
}

/// The ops a store queues on the JS thread until it hands them on
/// (`batch_flush`, `wire_pack`).
pub(crate) struct Queue(Mutex<Vec<Op>>);

impl Queue {
  pub(crate) fn new() -> Self {
    Queue(Mutex::new(Vec::with_capacity(64)))
  }

  /// Queues a call's op, checked now (with `encode`, its session encoded
  /// too): a bad argument fails and queues nothing. Answers what the op
  /// changes: 0 nothing, 1 its id, 2 every session.
  pub(crate) fn push(&self, core: &Core, call: Call, encode: bool) -> Result<u32> {
    let op = core.op(call, encode)?;
    let changes = op.changes() as u32;
    self.0.lock().push(op);
    Ok(changes)
  }

  pub(crate) fn take(&self) -> Vec<Op> {
    std::mem::take(&mut *self.0.lock())
  }
}

/// Native memory V8 is told each store holds (its maps, threadsafe
/// functions, threads' buffers), freed when the JS object is collected.
/// Without it V8 does not know what a store costs, and a process that
/// creates and closes many stores (tests, per-tenant stores) grows until
/// a GC happens to run.
pub(crate) const NATIVE_COST: usize = 16 * 1024;

pub(crate) fn charged<T>(store: T) -> External<T> {
  External::new_with_size_hint(store, NATIVE_COST)
}

/// `onDone(replies)`: a dispatcher store's replies, in call order.
pub(crate) type OnDone<'a> = Function<'a, Vec<JsReply>, ()>;
/// `onReport(error)`: where problems that answer no call go.
pub(crate) type OnReport<'a> = Function<'a, JsReply, ()>;

pub(crate) fn reporter_of(on_report: Option<OnReport<'_>>) -> Result<Option<Report>> {
  on_report.map(reporter).transpose().map_err(|e| StoreError::new(Code::Internal, e.reason.clone()))
}

/// A thread-safe reporter that hands each error to `on_report` on the JS
/// thread (weak: it never keeps Node alive).
pub(crate) fn reporter(on_report: OnReport<'_>) -> napi::Result<Report, Code> {
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
