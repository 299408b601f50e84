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

use super::{map_err, pttl_to_ttl, Commands, Key, SCRIPTS};
use crate::backend::{Op, Reply, Ttl, Whole};
use crate::error::{Code, Result, StoreError};
use crate::expiry::now_ms;

/// Keys per `SCAN` step.
const SCAN_COUNT: usize = 1000;

/// What the next reply (or replies) on the connection answer.
enum Expect {
  /// The connection's opening (`AUTH`, `SELECT`): an error there makes the
  /// connection unusable.
  Hello,
  /// One op of the caller; `values` gathers the replies of its `left`
  /// commands but the last (none allocated for an op of one command).
  Op { op: Op, left: usize, values: Vec<Value> },
  /// A step of the whole-store op in progress (see [`Scan`]).
  Step { left: usize, values: Vec<Value> },
  /// The `GET` of a rotation re-encoded for its new id (see `rotating`).
  Rotating,
}

/// A whole-store op in progress: `SCAN` steps and, for clear and entries,
/// the `UNLINK`s or `GET`s of each step's keys.
struct Scan {
  op: Whole,
  /// Cursor of the next `SCAN`; `None` once the walk is over.
  next: Option<u64>,
  /// Ids of the keys whose `GET`/`UNLINK` replies are awaited.
  ids: Vec<String>,
  count: u64,
  found: Vec<String>,
  entries: Vec<(String, Vec<u8>)>,
  /// `page`: one SCAN step, then a GET and a PTTL per key; the cursor to
  /// continue from.
  page: Vec<(String, Vec<u8>, Ttl)>,
  page_next: String,
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
  scan: Option<Scan>,
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
    self.inflight.iter().filter(|e| matches!(e, Expect::Op { .. } | Expect::Rotating)).count()
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
        Ok(op) => {
          let next = match &op {
            Whole::Page(cursor, _) if !cursor.is_empty() => Some(cursor.parse().map_err(|_| ()).unwrap_or(0)),
            Whole::Page(..) | Whole::Len | Whole::Clear | Whole::Keys | Whole::Entries => Some(0),
          };
          let scan = Scan {
            op,
            next,
            ids: Vec::new(),
            count: 0,
            found: Vec::new(),
            entries: Vec::new(),
            page: Vec::new(),
            page_next: String::new(),
          };
          self.scan = Some(scan);
          self.scan_step();
          break;
        }
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

  /// Sends the next `SCAN` of the whole-store op in progress.
  fn scan_step(&mut self) {
    let Some(scan) = self.scan.as_ref() else { return };
    let Some(cursor) = scan.next else { return };
    let count = match scan.op {
      Whole::Page(_, n) => n.max(1) as usize,
      Whole::Len | Whole::Clear | Whole::Keys | Whole::Entries => SCAN_COUNT,
    };
    redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(self.cmds.pattern()).arg("COUNT").arg(count).write_packed_command(&mut self.out);
    self.inflight.push_back(Expect::Step { left: 1, values: Vec::with_capacity(1) });
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
    let r = self.step(values);
    let over = r.is_err() || self.scan.as_ref().is_some_and(|s| s.next.is_none() && s.ids.is_empty());
    if !over {
      return None;
    }
    let scan = self.scan.take().expect("a scan in progress");
    Some(r.map(|()| match scan.op {
      Whole::Len | Whole::Clear => Reply::Count(scan.count),
      Whole::Keys => Reply::Keys(scan.found),
      Whole::Page(..) => Reply::Page(scan.page_next, scan.page),
      Whole::Entries => Reply::Entries(scan.entries),
    }))
  }

  fn step(&mut self, values: Vec<Value>) -> Result<()> {
    for v in &values {
      if let Value::ServerError(e) = v {
        return Err(map_err(e.clone().into()));
      }
    }
    let scan = self.scan.as_mut().expect("a scan in progress");
    let bad = |e: redis::ParsingError| StoreError::new(Code::Corrupt, format!("unexpected reply from Redis: {e}"));
    if !scan.ids.is_empty() && matches!(scan.op, Whole::Page(..)) {
      // A GET and a PTTL per key; a key gone between SCAN and GET is skipped.
      let mut values = values.into_iter();
      for id in std::mem::take(&mut scan.ids) {
        let (Some(v), Some(t)) = (values.next(), values.next()) else { break };
        if let Some(b) = redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(bad)? {
          scan.page.push((id, b, pttl_to_ttl(redis::from_redis_value::<i64>(t).map_err(bad)?)));
        }
      }
      return Ok(());
    }
    if !scan.ids.is_empty() {
      // The GETs or UNLINKs of the last step's keys.
      for (id, v) in std::mem::take(&mut scan.ids).into_iter().zip(values) {
        match scan.op {
          Whole::Clear => scan.count += redis::from_redis_value::<u64>(v).map_err(bad)?,
          // A key that expired between SCAN and GET is simply skipped.
          Whole::Entries => scan.entries.extend(redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(bad)?.map(|b| (id, b))),
          // They send no command per key (a page's GET/PTTL pairs are read above).
          Whole::Len | Whole::Keys | Whole::Page(..) => {
            return Err(StoreError::new(Code::Internal, "a reply per key for a walk that sent none"))
          }
        }
      }
      self.scan_step();
      return Ok(());
    }
    let [v] = <[Value; 1]>::try_from(values).map_err(|_| StoreError::new(Code::Internal, "a SCAN step has one reply"))?;
    let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(v).map_err(bad)?;
    scan.next = (next != 0).then_some(next);
    if let Whole::Page(..) = scan.op {
      // One step only: the caller continues from `next`.
      scan.page_next = scan.next.map(|n| n.to_string()).unwrap_or_default();
      scan.next = None;
    }
    let keys: Vec<(Vec<u8>, String)> = keys.into_iter().filter_map(|k| self.cmds.id_of(&k).map(|id| (k, id))).collect();
    match scan.op {
      Whole::Page(..) if !keys.is_empty() => {
        for (k, _) in &keys {
          redis::cmd("GET").arg(k).write_packed_command(&mut self.out);
          redis::cmd("PTTL").arg(k).write_packed_command(&mut self.out);
        }
        scan.ids = keys.into_iter().map(|(_, id)| id).collect();
        self.inflight.push_back(Expect::Step { left: scan.ids.len() * 2, values: Vec::with_capacity(scan.ids.len() * 2) });
        return Ok(());
      }
      Whole::Page(..) => {}
      Whole::Len => scan.count += keys.len() as u64,
      Whole::Keys => scan.found.extend(keys.into_iter().map(|(_, id)| id)),
      Whole::Clear | Whole::Entries if !keys.is_empty() => {
        let name = if matches!(scan.op, Whole::Clear) { "UNLINK" } else { "GET" };
        for (k, _) in &keys {
          redis::cmd(name).arg(k).write_packed_command(&mut self.out);
        }
        scan.ids = keys.into_iter().map(|(_, id)| id).collect();
        self.inflight.push_back(Expect::Step { left: scan.ids.len(), values: Vec::with_capacity(scan.ids.len()) });
        return Ok(());
      }
      Whole::Clear | Whole::Entries => {}
    }
    self.scan_step();
    Ok(())
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
