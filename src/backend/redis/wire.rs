//! A Redis connection driven from the JS thread. The socket is Node's
//! (`lib/redis-wire.js` owns a `net.Socket` or `tls` socket); this side
//! turns each tick's queued ops into one buffer of commands (packed by the
//! redis crate's `Cmd`) and the bytes JS read back into answers (parsed by
//! the redis crate's RESP parser). A call then costs no thread hop and no
//! thread of its own: one napi call to queue it, and per tick one to pack
//! and one per socket read to parse.
//!
//! Ops apply in call order because they go out in call order on one
//! connection. A whole-store op (length, clear, ids, entries) walks `SCAN`
//! in several round trips; the ops queued after it are held back until it
//! is answered, so it sees everything before it and nothing after it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use combine::parser::combinator::AnySendSyncPartialState;
use combine::stream::PointerOffset;
use redis::{Cmd, Value};

use super::whole::{Step, Walk};
use super::{map_err, Commands, Key, SCRIPTS};
use crate::backend::{Op, Reply};
use crate::error::{Code, Result, StoreError};
use crate::expiry::now_ms;

/// What the next reply (or replies) on the connection answer.
enum Expect {
  /// The connection's opening (`AUTH`, `SELECT`): an error there makes the
  /// connection unusable.
  Hello,
  /// One op of the caller; `values` gathers the replies of its `left`
  /// commands but the last (none allocated for an op of one command).
  Op { op: Op, left: usize, values: Vec<Value> },
  /// A step of the whole-store op in progress (see [`Walk`]).
  Step { left: usize, values: Vec<Value> },
  /// The `PING` sent for an op answered without the server (a page
  /// cursor refused, or past the last page), so that its answer keeps its
  /// place in call order.
  Known(Result<Reply>),
  /// The `GET` of a rotation re-encoded for its new id (see `rotating`).
  Rotating,
}

type Decoder = combine::stream::Decoder<AnySendSyncPartialState, PointerOffset<[u8]>>;

/// The answer to one op, with the id of a `get` (to decode its session).
pub type Answer = (Option<String>, Result<Reply>);

/// The bytes of one socket read, handed to the parser; `Pending` when they
/// are used up (the parser keeps its partial state for the next read).
struct Chunk<'a>(&'a [u8]);

impl tokio::io::AsyncRead for Chunk<'_> {
  fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
    if self.0.is_empty() {
      return Poll::Pending;
    }
    let n = self.0.len().min(buf.remaining());
    buf.put_slice(&self.0[..n]);
    self.0 = &self.0[n..];
    Poll::Ready(Ok(()))
  }
}

/// One connection's protocol state (the socket itself lives in JS).
pub struct Wire {
  cmds: Commands,
  /// Where the connection goes, for messages (`127.0.0.1:6379`).
  address: String,
  hello: Vec<Cmd>,
  inflight: VecDeque<Expect>,
  decoder: Decoder,
  /// The whole-store op in progress (src/backend/redis/whole.rs).
  scan: Option<Walk>,
  /// Ops held back behind a whole-store op.
  held: VecDeque<Op>,
  out: Vec<u8>,
  /// One command's buffer, reused for every command packed.
  cmd: Cmd,
  /// A rotation re-encoded for its new id (the codec binds a session to
  /// its id) in progress: its `GET`, then its compare-and-set script; the
  /// ops after it are held until the script answers, as behind a scan.
  rotating: Option<Op>,
  /// The server lost the scripts (`NOSCRIPT`): load them before the next ops.
  reload: bool,
}

impl Wire {
  /// `username`/`password` are sent with `AUTH`, `db` with `SELECT`, each
  /// time the connection opens.
  pub fn new(cmds: Commands, address: String, username: Option<String>, password: Option<String>, db: Option<i64>) -> Wire {
    let mut hello = Vec::new();
    if let Some(p) = password {
      let mut auth = redis::cmd("AUTH");
      if let Some(u) = username {
        auth.arg(u);
      }
      hello.push(auth.arg(p).clone());
    }
    if let Some(db) = db.filter(|d| *d != 0) {
      hello.push(redis::cmd("SELECT").arg(db).clone());
    }
    // Per-user rules: their scripts, called by EVALSHA on this connection.
    if cmds.loads_scripts() {
      hello.extend(SCRIPTS.load_cmds());
    }
    Wire {
      cmds,
      address,
      hello,
      inflight: VecDeque::new(),
      decoder: Decoder::new(),
      scan: None,
      held: VecDeque::new(),
      out: Vec::new(),
      cmd: Cmd::new(),
      rotating: None,
      reload: false,
    }
  }

  /// A fresh connection: its opening commands go first.
  pub fn opened(&mut self) {
    debug_assert!(self.inflight.is_empty());
    self.decoder = Decoder::new();
    for c in &self.hello {
      c.write_packed_command(&mut self.out);
      self.inflight.push_back(Expect::Hello);
    }
  }

  /// Whether [`Wire::pack`] has something to send without new ops: the
  /// next step of a whole-store op, or ops held behind one that just ended.
  pub fn has_more(&self) -> bool {
    !self.out.is_empty() || (self.scan.is_none() && self.rotating.is_none() && !self.held.is_empty())
  }

  /// Ops sent or held, answered by neither a reply nor [`Wire::abort`] yet.
  pub fn pending(&self) -> usize {
    self.inflight.iter().filter(|e| matches!(e, Expect::Op { .. } | Expect::Rotating | Expect::Known(_))).count()
      + usize::from(self.scan.is_some())
      + self.held.len()
  }

  /// Queues `ops` (after any held ones) and returns the bytes to write:
  /// their commands, or the next steps of a whole-store op. Session values
  /// must already be encoded.
  pub fn pack(&mut self, ops: Vec<Op>) -> Option<Vec<u8>> {
    self.pack_with(ops, <[u8]>::to_vec)
  }

  /// [`Wire::pack`], handing the bytes to `f` (which copies them out) and
  /// keeping the buffer for the next tick.
  pub fn pack_with<R>(&mut self, ops: Vec<Op>, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    self.held.extend(ops);
    if std::mem::take(&mut self.reload) {
      for c in SCRIPTS.load_cmds() {
        c.write_packed_command(&mut self.out);
        self.inflight.push_back(Expect::Hello);
      }
    }
    let now = now_ms();
    while self.scan.is_none() && self.rotating.is_none() {
      let Some(op) = self.held.pop_front() else { break };
      let op = match op.into_whole() {
        Err(op @ Op::Rotate(_, _, Some(_))) => {
          self.rotate_read(op);
          break;
        }
        Err(op) => op,
        Ok(op) => match Walk::new(op) {
          Ok(walk) => {
            self.scan = Some(walk);
            if let Some(r) = self.scan_step() {
              self.known(r);
              continue;
            }
            break;
          }
          Err(e) => {
            self.known(Err(e));
            continue;
          }
        },
      };
      let out = &mut self.out;
      let n = self.cmds.each(&op, now, &mut self.cmd, |c| c.write_packed_command(out));
      // The value was sent; only the op's kind and id are needed for its reply.
      let mut op = op;
      if let Some((_, v)) = op.value_mut() {
        *v = Vec::new();
      }
      self.inflight.push_back(Expect::Op { op, left: n, values: Vec::with_capacity(n.saturating_sub(1)) });
    }
    if self.out.is_empty() {
      return None;
    }
    let r = f(&self.out);
    self.out.clear();
    Some(r)
  }

  /// Sends the `GET` of a re-encoded rotation (again, when its session
  /// changed between that read and the script).
  fn rotate_read(&mut self, op: Op) {
    let Op::Rotate(old, ..) = &op else { unreachable!("a rotation") };
    redis::cmd("GET").arg(Key(&self.cmds.prefix, old)).write_packed_command(&mut self.out);
    self.inflight.push_back(Expect::Rotating);
    self.rotating = Some(op);
  }

  /// The value a re-encoded rotation read: nothing to move, or the
  /// compare-and-set script with the value for the new id.
  fn rotate_cas(&mut self, value: Value) -> Option<Result<Reply>> {
    let op = self.rotating.take().expect("a rotation in progress");
    let Op::Rotate(old, new, Some(recode)) = &op else { unreachable!("a re-encoded rotation") };
    let read = match value {
      Value::Nil => return Some(Ok(Reply::Bool(false))),
      Value::ServerError(e) => return Some(Err(map_err(e.into()))),
      v => match redis::from_redis_value::<Vec<u8>>(v) {
        Ok(b) => b,
        Err(e) => return Some(Err(StoreError::new(Code::Corrupt, format!("unexpected reply from Redis: {e}")))),
      },
    };
    let value = match (recode.0)(old, new, read.clone()) {
      Ok(v) => v,
      Err(e) => return Some(Err(e)),
    };
    self.cmds.rotate_cas(old, new, &read, &value, &mut self.cmd);
    self.cmd.write_packed_command(&mut self.out);
    self.inflight.push_back(Expect::Op { op: op.clone(), left: 1, values: Vec::new() });
    // Still in progress (later ops held) until the script answers.
    self.rotating = Some(op);
    None
  }

  /// Sends the next step of the whole-store op in progress; its answer
  /// when the walk is over.
  fn scan_step(&mut self) -> Option<Result<Reply>> {
    let walk = self.scan.as_mut()?;
    let out = &mut self.out;
    let left = match walk.step(&self.cmds, &mut self.cmd, |c| c.write_packed_command(out)) {
      Step::Over => return Some(Ok(self.scan.take().expect("a walk in progress").reply())),
      Step::Scan => 1,
      Step::Keys(n) => n,
    };
    self.inflight.push_back(Expect::Step { left, values: Vec::with_capacity(left) });
    None
  }

  /// An op whose answer is known without the server: a `PING` keeps its
  /// place in call order.
  fn known(&mut self, r: Result<Reply>) {
    redis::cmd("PING").write_packed_command(&mut self.out);
    self.inflight.push_back(Expect::Known(r));
  }

  /// Parses the bytes of one socket read; returns the answers of the ops it
  /// completed, in call order, each with the id of a `get` (to decode its
  /// session). An `Err` means the connection is unusable (a reply that is
  /// not RESP, refused credentials): close it and [`Wire::abort`].
  pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Answer>> {
    let mut out = Vec::new();
    let mut chunk = Chunk(bytes);
    let waker = futures::task::noop_waker_ref();
    let mut cx = Context::from_waker(waker);
    loop {
      let value = {
        let fut = redis::parse_redis_value_async(&mut self.decoder, &mut chunk);
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut cx) {
          Poll::Pending => break,
          Poll::Ready(Ok(v)) => v,
          Poll::Ready(Err(e)) => {
            return Err(StoreError::new(
              Code::StoreUnavailable,
              format!("Redis at {} answered something that is not RESP (is it a Redis server?): {e}", self.address),
            ))
          }
        }
      };
      self.take(value, &mut out)?;
      // All read and parsed: stop here rather than have the parser try the
      // empty rest (it builds an end-of-input error to say so).
      if chunk.0.is_empty() && self.decoder.buffer().is_empty() {
        break;
      }
    }
    Ok(out)
  }

  fn take(&mut self, value: Value, out: &mut Vec<Answer>) -> Result<()> {
    let Some(expect) = self.inflight.front_mut() else {
      return Err(StoreError::new(Code::StoreUnavailable, format!("Redis at {} sent a reply nobody asked for", self.address)));
    };
    match expect {
      Expect::Hello => {
        self.inflight.pop_front();
        if let Value::ServerError(e) = value {
          let e = map_err(e.into());
          return Err(StoreError::new(e.code, format!("Redis at {}: {}", self.address, e.message)));
        }
      }
      Expect::Known(_) => {
        let Some(Expect::Known(r)) = self.inflight.pop_front() else { unreachable!("front was a known answer") };
        out.push((None, self.at(r)));
      }
      Expect::Rotating => {
        self.inflight.pop_front();
        if let Some(r) = self.rotate_cas(value) {
          out.push((None, self.at(r)));
        }
      }
      Expect::Op { left, values, .. } | Expect::Step { left, values } => {
        *left -= 1;
        if *left > 0 {
          values.push(value);
          return Ok(());
        }
        match self.inflight.pop_front() {
          Some(Expect::Op { op, mut values, .. }) => {
            if matches!(&value, Value::ServerError(e) if e.code() == "NOSCRIPT") {
              // A per-user call with nothing sent after it did nothing: it
              // goes again behind the scripts, still in call order. (Writes
              // dropped their value once sent: they answer the error.)
              if self.inflight.is_empty() && matches!(op, Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(_, _, None)) {
                let out = &mut self.out;
                for c in SCRIPTS.load_cmds() {
                  c.write_packed_command(out);
                  self.inflight.push_back(Expect::Hello);
                }
                let n = self.cmds.each(&op, now_ms(), &mut self.cmd, |c| c.write_packed_command(out));
                self.inflight.push_back(Expect::Op { op, left: n, values: Vec::new() });
                return Ok(());
              }
              self.reload = true;
            }
            if let Op::Rotate(_, _, Some(_)) = op {
              // The re-encoded rotation's script: over, or read again (-1).
              if value == Value::Int(-1) {
                let op = self.rotating.take().expect("a rotation in progress");
                self.rotate_read(op);
                return Ok(());
              }
              self.rotating = None;
            }
            let r = if values.is_empty() {
              Commands::reply_last(&op, value)
            } else {
              values.push(value);
              Commands::reply(&op, values)
            };
            out.push((if let Op::Get(id) = op { Some(id) } else { None }, self.at(r)))
          }
          Some(Expect::Step { mut values, .. }) => {
            values.push(value);
            if let Some(r) = self.stepped(values) {
              out.push((None, self.at(r)));
            }
          }
          _ => unreachable!("front was an op or a step"),
        }
      }
    }
    Ok(())
  }

  /// A refused write names the server, as connection errors do.
  fn at(&self, r: Result<Reply>) -> Result<Reply> {
    match r {
      Err(e) if e.code == Code::StoreReadOnly => Err(StoreError::new(e.code, format!("Redis at {}: {}", self.address, e.message))),
      r => r,
    }
  }

  /// One step of the whole-store op answered: its reply once it is over.
  fn stepped(&mut self, values: Vec<Value>) -> Option<Result<Reply>> {
    let walk = self.scan.as_mut().expect("a walk in progress");
    if let Err(e) = walk.answer(&self.cmds, values) {
      self.scan = None;
      return Some(Err(e));
    }
    self.scan_step()
  }

  /// The connection is gone (or unusable): every op sent, held or still
  /// `queued` fails with `e`, in call order, and the protocol state starts
  /// over.
  pub fn abort(&mut self, queued: Vec<Op>, e: &StoreError) -> Vec<Result<Reply>> {
    let n = self.pending() + queued.len();
    self.inflight.clear();
    self.scan = None;
    self.rotating = None;
    self.reload = false;
    self.held.clear();
    self.out.clear();
    self.decoder = Decoder::new();
    (0..n).map(|_| Err(e.clone())).collect()
  }
}
