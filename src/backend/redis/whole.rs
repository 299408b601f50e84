//! The whole-store ops on Redis (`len`, `clear`, `keys`, `entries`, a
//! `page`) as one sans-IO walk, [`Walk`]: `SCAN MATCH <prefix>*` on each
//! master in turn (never `KEYS`), and for clear, entries and a page the
//! `UNLINK`s, `GET`s or `GET`+`PTTL`s of each step's keys. It says which
//! commands to send next and takes their replies; both drivers run it, the
//! crate-driven client ([`RedisBackend::whole`], below) and the JS-socket
//! driver ([`super::wire`]), so they walk alike and share one cursor format.

use redis::{Cmd, Value};

use super::{map_err, parse_err, pttl_to_ttl, Commands, RedisBackend};
use crate::backend::{Kind, Op, Reply, Ttl, Whole};
use crate::error::{Code, Result, StoreError};

/// Keys per `SCAN` step of a walk (and so per batch of `UNLINK`s or `GET`s).
pub const SCAN_COUNT: usize = 1000;

/// A whole-store op in progress (see the module's doc). A page's cursor is
/// `<master>:<SCAN cursor>` (`""`: the start), the master an index into
/// the sorted list of masters (one, `0`, for a single server).
pub struct Walk {
  op: Whole,
  /// Masters walked in turn.
  masters: usize,
  /// A page: one `SCAN` step (and its keys' reads), on one master.
  one_step: bool,
  /// The master the next commands go to.
  master: usize,
  /// Cursor of the next `SCAN` on `master`; `None` once that is over.
  next: Option<u64>,
  /// The keys of the last `SCAN` step whose `UNLINK`/`GET`(+`PTTL`) are
  /// next to send (`sent`: sent, their replies awaited), with their ids.
  keys: Vec<(Vec<u8>, String)>,
  sent: bool,
  count: u64,
  ids: Vec<String>,
  entries: Vec<(String, Vec<u8>)>,
  page: Vec<(String, Vec<u8>, Ttl)>,
  /// A page's next cursor.
  page_next: String,
}

/// What a walk sends next: a `SCAN` step, or commands on its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
  /// One `SCAN` (a read, safe to send again).
  Scan,
  /// This many commands on the last step's keys (`UNLINK`s for a clear:
  /// sending them again removes nothing more).
  Keys(usize),
  /// The walk is over: [`Walk::reply`].
  Over,
}

impl Walk {
  /// A walk of `op` over one master; [`Walk::over_masters`] for more. A
  /// page's cursor is checked here: an error is the op's answer.
  pub fn new(op: Whole) -> Result<Walk> {
    let (master, next, one_step) = match &op {
      Whole::Page(cursor, _) => {
        let bad = || StoreError::new(Code::InvalidOption, format!("not a cursor of this store: {cursor:?}"));
        match cursor.split_once(':') {
          None if cursor.is_empty() => (0, 0, true),
          Some((m, c)) => (m.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?, true),
          None => return Err(bad()),
        }
      }
      Whole::Len | Whole::Clear | Whole::Keys | Whole::Entries => (0, 0, false),
    };
    Ok(Walk {
      op,
      masters: 1,
      one_step,
      master,
      next: Some(next),
      keys: Vec::new(),
      sent: false,
      count: 0,
      ids: Vec::new(),
      entries: Vec::new(),
      page: Vec::new(),
      page_next: String::new(),
    })
  }

  /// Walks `n` masters (a cluster's), in the order of their index.
  pub fn over_masters(mut self, n: usize) -> Walk {
    self.masters = n;
    self
  }

  /// The master (index) the commands of the next step go to.
  pub fn master(&self) -> usize {
    self.master
  }

  /// The commands of the next step, each handed to `f` (built in `cmd`,
  /// cleared first, so one buffer serves a whole walk); [`Step::Over`]
  /// when there are none: the walk is over. Call once per step, then
  /// [`Walk::answer`] with the step's replies.
  pub fn step(&mut self, cmds: &Commands, cmd: &mut Cmd, mut f: impl FnMut(&Cmd)) -> Step {
    if self.master >= self.masters {
      return Step::Over;
    }
    if !self.keys.is_empty() {
      let names: &[&str] = match self.op {
        Whole::Clear => &["UNLINK"],
        Whole::Entries => &["GET"],
        Whole::Page(..) => &["GET", "PTTL"],
        // They send nothing per key (their keys are counted or listed at once).
        Whole::Len | Whole::Keys => &[],
      };
      for (k, _) in &self.keys {
        for name in names {
          cmd.clear();
          cmd.arg(*name).arg(k);
          f(cmd);
        }
      }
      self.sent = true;
      return Step::Keys(self.keys.len() * names.len());
    }
    let Some(cursor) = self.next else { return Step::Over };
    let count = match self.op {
      Whole::Page(_, n) => n.max(1) as usize,
      Whole::Len | Whole::Clear | Whole::Keys | Whole::Entries => SCAN_COUNT,
    };
    cmd.clear();
    cmd.arg("SCAN").arg(cursor).arg("MATCH").arg(cmds.pattern()).arg("COUNT").arg(count);
    f(cmd);
    Step::Scan
  }

  /// The replies of the step last sent ([`Walk::step`]). An error ends the
  /// walk: it is the op's answer.
  pub fn answer(&mut self, cmds: &Commands, values: Vec<Value>) -> Result<()> {
    if let Some(Value::ServerError(e)) = values.iter().find(|v| matches!(v, Value::ServerError(_))) {
      return Err(map_err(e.clone().into()));
    }
    if self.sent {
      self.sent = false;
      return self.keys_answered(values);
    }
    let [v] = <[Value; 1]>::try_from(values).map_err(|_| StoreError::new(Code::Internal, "a SCAN step has one reply"))?;
    let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(v).map_err(parse_err)?;
    let keys = keys.into_iter().filter_map(|k| cmds.id_of(&k).map(|id| (k, id)));
    match self.op {
      Whole::Len => self.count += keys.count() as u64,
      Whole::Keys => self.ids.extend(keys.map(|(_, id)| id)),
      Whole::Clear | Whole::Entries | Whole::Page(..) => self.keys = keys.collect(),
    }
    self.next = (next != 0).then_some(next);
    if self.one_step {
      // The caller continues from the cursor it is given.
      self.page_next = match (next, self.master + 1 < self.masters) {
        (0, false) => String::new(),
        (0, true) => format!("{}:0", self.master + 1),
        (c, _) => format!("{}:{c}", self.master),
      };
    }
    self.advance();
    Ok(())
  }

  /// After a step: once there is nothing more to send on this master, the
  /// next one (a page stops after its step instead).
  fn advance(&mut self) {
    if !self.keys.is_empty() {
      return;
    }
    if self.one_step {
      self.master = self.masters;
    } else if self.next.is_none() {
      self.master += 1;
      self.next = Some(0);
    }
  }

  /// The replies of the commands on the last step's keys.
  fn keys_answered(&mut self, values: Vec<Value>) -> Result<()> {
    let mut values = values.into_iter();
    for (_, id) in std::mem::take(&mut self.keys) {
      match self.op {
        Whole::Clear => {
          let Some(v) = values.next() else { break };
          self.count += redis::from_redis_value::<u64>(v).map_err(parse_err)?;
        }
        // A key that expired between SCAN and GET is simply skipped.
        Whole::Entries => {
          let Some(v) = values.next() else { break };
          self.entries.extend(redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(parse_err)?.map(|b| (id, b)));
        }
        Whole::Page(..) => {
          let (Some(v), Some(t)) = (values.next(), values.next()) else { break };
          if let Some(b) = redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(parse_err)? {
            self.page.push((id, b, pttl_to_ttl(redis::from_redis_value::<i64>(t).map_err(parse_err)?)));
          }
        }
        Whole::Len | Whole::Keys => return Err(StoreError::new(Code::Internal, "a reply per key for a walk that sent none")),
      }
    }
    self.advance();
    Ok(())
  }

  /// The op's answer, once [`Walk::step`] says [`Step::Over`].
  pub fn reply(self) -> Reply {
    match self.op {
      Whole::Len | Whole::Clear => Reply::Count(self.count),
      Whole::Keys => Reply::Keys(self.ids),
      Whole::Entries => Reply::Entries(self.entries),
      Whole::Page(..) => Reply::Page(self.page_next, self.page),
    }
  }
}

/// The whole-store ops: walks, one master at a time, a ping of every
/// master, and the per-user ops that run on their own.
impl RedisBackend {
  pub(super) async fn whole(&self, op: &Op) -> Result<Reply> {
    Ok(match op.kind() {
      Kind::Walk | Kind::Clear => match op.clone().into_whole() {
        Ok(w) => self.walk(Walk::new(w)?).await?,
        Err(op) => unreachable!("{op:?} is a walk"),
      },
      // Every master of a Cluster, failing ones too: one down is an
      // outage of its slots' sessions.
      Kind::Ping => {
        let conn = self.conn().await?;
        for node in self.masters_of(&conn, true).await? {
          Commands::reply_last(op, self.on_node(&conn, &node, redis::cmd("PING")).await?)?;
        }
        Reply::Done
      }
      Kind::SessionsOf(_) | Kind::RevokeUser(..) | Kind::Rotate(..) if self.cluster => self.cluster_whole(op).await?,
      Kind::SessionsOf(_) | Kind::RevokeUser(..) | Kind::Rotate(_, _, None) => self.script(op).await?,
      Kind::Rotate(old, new, Some(recode)) => self.rotate_recoded(old, new, recode).await?,
      Kind::Read(_) | Kind::Write(_) | Kind::Remove(_) | Kind::Touch(..) | Kind::Lock(_) => unreachable!("{op:?} is pipelined"),
    })
  }

  /// Runs `walk` to its end, each step one request to its master.
  async fn walk(&self, walk: Walk) -> Result<Reply> {
    let conn = self.conn().await?;
    let masters = self.masters(&conn).await?;
    let mut walk = walk.over_masters(masters.len());
    let mut cmd = Cmd::new();
    loop {
      let mut cmds = Vec::new();
      let step = walk.step(&self.cmds, &mut cmd, |c| cmds.push(c.clone()));
      let values = match step {
        Step::Over => return Ok(walk.reply()),
        Step::Scan => vec![self.on_node(&conn, &masters[walk.master()], cmds.pop().expect("a SCAN")).await?],
        Step::Keys(_) => self.node_pipeline(&conn, &masters[walk.master()], cmds).await?,
      };
      walk.answer(&self.cmds, values)?;
    }
  }
}
