//! Per-user sessions on Redis Cluster. A script runs on one slot, and a
//! session's slot is that of its key `<prefix><id>` (unchanged: hash tags
//! in session keys would move existing sessions), so a user's index and
//! the user's sessions sit on different slots. Each step on one session
//! is one script on its slot; each step on one user's index one script on
//! the index's slot; the steps are ordered so that the index is a superset
//! of the user's live sessions at every moment:
//!
//! - `\xffmeta:{T}<prefix><id>`: the session's meta, a hash on the
//!   session's own slot (`T` a tag chosen for that slot: [`slot_tag`]),
//!   with its expiry: `u` user, `e` absolute end, `w` last write (the
//!   node's `TIME` in µs), `b` the score of its entry in `u`'s index.
//! - `\xffuser:{T}<prefix><user>`: the user's index, a sorted set of ids
//!   scored by a bound of their expiry (twice the ttl, a minute at least;
//!   2^53: none), pruned at every step on it, the key expiring at its top
//!   score. An id is filed (its score raised to the new bound) before a
//!   write or touch may give the session that user or an expiry past `b`;
//!   entries are never removed before their score passes, so every
//!   session the meta gives a user is in the user's index.
//!
//! Listing, revocation and the cap read the index, then check each id on
//! its slot against its meta (a stale entry is skipped). The cap's step
//! after a write that gave the user a new session evicts the least
//! recently written beyond `n` (each eviction only if the session's `w` is
//! still the one seen, else it looks again). A rotation moves the old
//! session aside on its slot (`\xffrot:{T}…`, so neither id reads it),
//! files and writes the new id, then drops what it moved aside; a taken
//! new id puts it back. README/docs/backends.md say what is not atomic.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use futures::future::join_all;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Value};

use super::commands::{cond, owner, span};
use super::users::{self, Lua, COMMON};
use super::{parse_err, pttl_to_ttl, Commands, Key, RedisBackend};
use crate::backend::{Kind, Op, Recode, Reply};
use crate::error::{Code, Result, StoreError};
use crate::expiry::now_ms;

/// A write on the session's slot. KEYS: session, meta. ARGV: value, ttl ms
/// ('' none), cond ('', NX, XX), owner ('k' keep, 'a' anonymous, 'u' ..
/// user), maxLifetime ms (''), the bound filed for the owner (''). Answers
/// {1|0 written, 1 when the session is new to its user}, or {-1, user}
/// when the id must be filed under that user first.
const WRITE: &str = r#"
local sk, mk = KEYS[1], KEYS[2]
local live = redis.call('EXISTS', sk) == 1
if (ARGV[3] == 'NX' and live) or (ARGV[3] == 'XX' and not live) then return {0, 0} end
local old, ends, bound = false, false, false
if live then
  local m = redis.call('HMGET', mk, 'u', 'e', 'b')
  old = m[1]
  ends = m[2] and tonumber(m[2])
  bound = m[3] and tonumber(m[3])
end
ends = end_of(ends, ARGV[5])
local user = owner_of(ARGV[4], old)
local at = expiry(ARGV[2], ends)
if user then
  if old ~= user then bound = false end
  if ARGV[6] ~= '' then
    bound = math.max(bound or 0, tonumber(ARGV[6]))
  elseif not bound or (at or FOREVER) > bound then
    return {-1, user}
  end
  -- Never past the entry's score (the nodes' clocks differ by more than the margin).
  if bound < FOREVER and (not at or at > bound) then at = bound end
end
redis.call('UNLINK', mk)
if at and at <= now then
  redis.call('UNLINK', sk)
  return {1, 0}
end
if at then redis.call('SET', sk, ARGV[1], 'PX', fmt(at - now)) else redis.call('SET', sk, ARGV[1]) end
if user or ends then
  local f = { 'w', fmt(stamp) }
  if user then f[#f + 1] = 'u'; f[#f + 1] = user; f[#f + 1] = 'b'; f[#f + 1] = fmt(bound) end
  if ends then f[#f + 1] = 'e'; f[#f + 1] = fmt(ends) end
  redis.call('HSET', mk, unpack(f))
  if at then redis.call('PEXPIREAT', mk, fmt(at)) end
end
if user and old ~= user then return {1, 1} end
return {1, 0}
"#;

/// A new expiry, never past the absolute end. KEYS: session, meta. ARGV:
/// ttl ms (''), a bound filed (''), the user it was filed under. Answers 1
/// live, 0 missing, or {-1, user} when it must be filed first.
const TOUCH: &str = r#"
local sk, mk = KEYS[1], KEYS[2]
if redis.call('EXISTS', sk) == 0 then return 0 end
local m = redis.call('HMGET', mk, 'u', 'e', 'b')
local at = expiry(ARGV[1], m[2] and tonumber(m[2]))
if m[1] then
  local bound = m[3] and tonumber(m[3])
  local filed = ARGV[2] ~= '' and ARGV[3] == m[1]
  if filed then bound = math.max(bound or 0, tonumber(ARGV[2])) end
  if not bound or (at or FOREVER) > bound then
    if not filed then return {-1, m[1]} end
    at = bound
  end
  redis.call('HSET', mk, 'b', fmt(bound))
end
expire(at, sk, mk)
return 1
"#;

/// A removal. KEYS: session, meta. Answers 1 when a live session went.
const REMOVE: &str = r#"
local live = redis.call('EXISTS', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2])
return live
"#;

/// A session of the user, if it is one. KEYS: session, meta. ARGV: user,
/// '1' for the value too. Answers {w} or {w, value, pttl}, or nil.
const READ: &str = r#"
local m = redis.call('HMGET', KEYS[2], 'u', 'w')
if m[1] ~= ARGV[1] then return false end
if ARGV[2] ~= '1' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return false end
  return { m[2] or '0' }
end
local v = redis.call('GET', KEYS[1])
if not v then return false end
return { m[2] or '0', v, redis.call('PTTL', KEYS[1]) }
"#;

/// Removes a session if it is the user's (and, for the cap, still last
/// written at `w`). KEYS: session, meta, moved-aside session and meta (a
/// rotation in flight, dropped too on a revocation). ARGV: user, w ('').
/// Answers 1 when a live session was removed.
const DROP: &str = r#"
local n = 0
local m = redis.call('HMGET', KEYS[2], 'u', 'w')
if m[1] == ARGV[1] and (ARGV[2] == '' or m[2] == ARGV[2]) then
  n = redis.call('UNLINK', KEYS[1])
  redis.call('UNLINK', KEYS[2])
end
if ARGV[2] == '' and redis.call('HGET', KEYS[4], 'u') == ARGV[1] then redis.call('UNLINK', KEYS[3], KEYS[4]) end
return n
"#;

/// A rotation's first step, on the old id's slot: the session and its meta
/// move aside (neither id reads it). KEYS: session, meta, aside, aside
/// meta. Answers {value, pttl, user, end} or nil.
const TAKE: &str = r#"
local pt = redis.call('PTTL', KEYS[1])
if pt == -2 or (pt ~= -1 and pt <= 0) then return false end
local v = redis.call('GET', KEYS[1])
local m = redis.call('HMGET', KEYS[2], 'u', 'e')
redis.call('UNLINK', KEYS[3], KEYS[4])
redis.call('RENAME', KEYS[1], KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]) end
return { v, pt, m[1] or '', m[2] or '' }
"#;

/// A rotation's write of the new id if free. KEYS: session, meta. ARGV:
/// value, pttl (-1 none), user (''), end (''), bound (''). Answers 1 or 0.
const PUT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('UNLINK', KEYS[2])
if ARGV[2] ~= '-1' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) else redis.call('SET', KEYS[1], ARGV[1]) end
if ARGV[3] ~= '' or ARGV[4] ~= '' then
  local f = { 'w', fmt(stamp) }
  if ARGV[3] ~= '' then f[#f + 1] = 'u'; f[#f + 1] = ARGV[3]; f[#f + 1] = 'b'; f[#f + 1] = ARGV[5] end
  if ARGV[4] ~= '' then f[#f + 1] = 'e'; f[#f + 1] = ARGV[4] end
  redis.call('HSET', KEYS[2], unpack(f))
  if ARGV[2] ~= '-1' then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
end
return 1
"#;

/// A rotation's last step on the old id's slot. KEYS: session, meta,
/// aside, aside meta. ARGV: 'done' (drop what was moved aside; answers 0
/// when a revocation dropped it meanwhile) or 'undo' (put it back unless
/// the old id was written meanwhile).
const END: &str = r#"
if ARGV[1] == 'done' then
  local had = redis.call('EXISTS', KEYS[3])
  redis.call('UNLINK', KEYS[3], KEYS[4])
  return had
end
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('UNLINK', KEYS[3], KEYS[4])
  return 0
end
redis.call('RENAME', KEYS[3], KEYS[1])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('RENAME', KEYS[4], KEYS[2]) end
return 1
"#;

/// Files an id under a user, on the index's slot. KEYS: index. ARGV: id,
/// ttl ms ('' none). Answers the entry's score (a bound of the expiry).
const FILE: &str = r#"
local idx = KEYS[1]
redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. fmt(now))
local b = FOREVER
if ARGV[2] ~= '' then
  local s = tonumber(ARGV[2])
  b = now + s + math.max(s, 60000)
end
local cur = redis.call('ZSCORE', idx, ARGV[1])
if cur and tonumber(cur) >= b then
  b = tonumber(cur)
else
  redis.call('ZADD', idx, fmt(b), ARGV[1])
end
local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
if tonumber(top[2]) >= FOREVER then redis.call('PERSIST', idx) else redis.call('PEXPIREAT', idx, top[2]) end
return fmt(b)
"#;

/// The ids filed under a user whose entry has not passed. KEYS: index.
const LIST: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. fmt(now))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;

struct Scripts {
  write: Lua,
  touch: Lua,
  remove: Lua,
  read: Lua,
  drop: Lua,
  take: Lua,
  put: Lua,
  end: Lua,
  file: Lua,
  list: Lua,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
  // Each the common prelude (src/backend/redis/users.rs) and its body.
  let s = |body: &str| Lua::new(&[COMMON, body]);
  Scripts {
    write: s(WRITE),
    touch: s(TOUCH),
    remove: s(REMOVE),
    read: s(READ),
    drop: s(DROP),
    take: s(TAKE),
    put: s(PUT),
    end: s(END),
    file: s(FILE),
    list: s(LIST),
  }
});

/// For each of the 16384 slots a short tag hashing to it: `{tag}` makes a
/// key of that slot whatever follows, so a meta key lands with its session
/// key even when the session key has braces of its own.
static TAGS: LazyLock<HashMap<Slot, String>> = LazyLock::new(|| {
  let mut tags = HashMap::with_capacity(16384);
  let mut n = 0u32;
  while tags.len() < 16384 {
    let tag = format!("{n:x}");
    tags.entry(Slot::for_key(&tag)).or_insert(tag);
    n += 1;
  }
  tags
});

/// The tag of the slot `key` is on.
fn slot_tag(key: &[u8]) -> &'static str {
  &TAGS[&Slot::for_key(key)]
}

/// `<mark>{tag}<key>`: a key beside `key`, on its slot.
fn beside(mark: &[u8], key: &[u8]) -> Vec<u8> {
  [mark, b"{", slot_tag(key).as_bytes(), b"}", key].concat()
}

/// A session's keys: itself, its meta, and where a rotation moves both aside.
struct Keys {
  session: Vec<u8>,
  meta: Vec<u8>,
  aside: Vec<u8>,
  aside_meta: Vec<u8>,
}

impl Keys {
  fn of(prefix: &str, id: &str) -> Keys {
    let session = [prefix.as_bytes(), id.as_bytes()].concat();
    Keys { meta: beside(b"\xffmeta:", &session), aside: beside(b"\xffrot:", &session), aside_meta: beside(b"\xffrotm:", &session), session }
  }
  fn two(&self) -> [&[u8]; 2] {
    [&self.session, &self.meta]
  }
  fn four(&self) -> [&[u8]; 4] {
    [&self.session, &self.meta, &self.aside, &self.aside_meta]
  }
}

/// A user's index key.
fn index_key(prefix: &str, user: &str) -> Vec<u8> {
  beside(b"\xffuser:", &[prefix.as_bytes(), user.as_bytes()].concat())
}

/// How many times a step looks again when another process changed what it
/// saw (each time means another write of the same session or user won).
const TRIES: usize = 16;

fn busy(what: &str) -> StoreError {
  StoreError::new(Code::StoreUnavailable, format!("{what}: the session kept changing under it ({TRIES} tries)"))
}

fn int(v: &Value) -> Result<i64> {
  redis::from_redis_value_ref(v).map_err(parse_err)
}

fn text(v: Value) -> Result<String> {
  redis::from_redis_value(v).map_err(parse_err)
}

impl RedisBackend {
  /// One script on the slot of `keys` (all on one slot): `EVALSHA`, and
  /// `EVAL` when the node does not have it yet (which loads it there).
  async fn eval(&self, c: &ClusterConnection, lua: &Lua, keys: &[&[u8]], args: &[&[u8]]) -> Result<Value> {
    let mut cmd = Cmd::new();
    for with_code in [false, true] {
      cmd.clear();
      if with_code {
        cmd.arg("EVAL").arg(&lua.code);
      } else {
        cmd.arg("EVALSHA").arg(lua.script.get_hash());
      }
      cmd.arg(keys.len()).arg(keys).arg(args);
      let mut c = c.clone();
      let r = self.timed("a script", async { cmd.query_async::<Value>(&mut c).await }).await;
      let r = match r {
        Ok(Value::ServerError(e)) => Err(self.at(super::map_err(e.into()))),
        r => r,
      };
      match r {
        Err(e) if !with_code && e.message.ends_with(&users::lost_scripts().message) => continue,
        r => return r,
      }
    }
    unreachable!("the second try sends the code")
  }

  /// Files `id` under `user` for an expiry `span` ms from now; the bound.
  async fn file(&self, c: &ClusterConnection, user: &str, id: &str, span: &str) -> Result<String> {
    let idx = index_key(&self.cmds.prefix, user);
    text(self.eval(c, &SCRIPTS.file, &[&idx], &[id.as_bytes(), span.as_bytes()]).await?)
  }

  /// The ids filed under `user`.
  async fn listed(&self, c: &ClusterConnection, user: &str) -> Result<Vec<String>> {
    let idx = index_key(&self.cmds.prefix, user);
    redis::from_redis_value(self.eval(c, &SCRIPTS.list, &[&idx], &[]).await?).map_err(parse_err)
  }

  /// A write, removal or touch of a store with per-user rules (on a
  /// cluster: one script, or more when the id must be filed first).
  pub(super) async fn cluster_step(&self, c: ClusterConnection, op: &Op) -> Result<Reply> {
    let now = now_ms();
    match op.kind() {
      Kind::Write(put) => {
        let written = self.write(&c, put.id, put.value, &span(put.at, now), cond(put.cond), &owner(put.owner)).await?;
        Commands::reply_last(op, Value::Int(written))
      }
      Kind::Remove(id) => {
        let v = self.eval(&c, &SCRIPTS.remove, &Keys::of(&self.cmds.prefix, id).two(), &[]).await?;
        Ok(Reply::Bool(int(&v)? > 0))
      }
      Kind::Touch(id, at) => self.touch(&c, id, &span(at, now)).await,
      Kind::Read(_)
      | Kind::Lock(_)
      | Kind::Walk
      | Kind::Clear
      | Kind::Ping
      | Kind::SessionsOf(_)
      | Kind::RevokeUser(..)
      | Kind::Rotate(..) => Err(StoreError::new(Code::Internal, format!("not a cluster step: {op:?}"))),
    }
  }

  async fn write(&self, c: &ClusterConnection, id: &str, v: &[u8], span: &str, cond: &str, owner: &[u8]) -> Result<i64> {
    let keys = Keys::of(&self.cmds.prefix, id);
    let rules = &self.cmds.rules;
    let ml = rules.max_lifetime_ms.map(|n| n.to_string()).unwrap_or_default();
    // An add makes a new session: filed at once.
    let mut bound = match (cond, owner.strip_prefix(b"u")) {
      ("NX", Some(u)) => Some(self.file(c, std::str::from_utf8(u).unwrap_or_default(), id, span).await?),
      _ => None,
    };
    for _ in 0..TRIES {
      let b = bound.as_deref().unwrap_or_default();
      let args: [&[u8]; 6] = [v, span.as_bytes(), cond.as_bytes(), owner, ml.as_bytes(), b.as_bytes()];
      let reply: Vec<Value> = redis::from_redis_value(self.eval(c, &SCRIPTS.write, &keys.two(), &args).await?).map_err(parse_err)?;
      let mut it = reply.into_iter();
      let (Some(first), Some(second)) = (it.next(), it.next()) else { return Err(StoreError::new(Code::Corrupt, "a short reply")) };
      match int(&first)? {
        -1 => bound = Some(self.file(c, &text(second)?, id, span).await?),
        written => {
          if written > 0 && int(&second)? > 0 {
            if let (Some(n), Some(u)) = (rules.max_per_user, owner.strip_prefix(b"u")) {
              self.cap(c, std::str::from_utf8(u).unwrap_or_default(), n as usize).await?;
            }
          }
          return Ok(written);
        }
      }
    }
    Err(busy("a write"))
  }

  async fn touch(&self, c: &ClusterConnection, id: &str, span: &str) -> Result<Reply> {
    let keys = Keys::of(&self.cmds.prefix, id);
    let (mut bound, mut user) = (String::new(), String::new());
    for _ in 0..TRIES {
      match self.eval(c, &SCRIPTS.touch, &keys.two(), &[span.as_bytes(), bound.as_bytes(), user.as_bytes()]).await? {
        Value::Array(a) if a.len() == 2 => {
          user = text(a.into_iter().nth(1).unwrap_or(Value::Nil))?;
          bound = self.file(c, &user, id, span).await?;
        }
        v => return Ok(Reply::Bool(int(&v)? > 0)),
      }
    }
    Err(busy("an update"))
  }

  /// The user's live sessions as (w, id, and with `full` the value and
  /// pttl), least recently written first.
  async fn live_of(&self, c: &ClusterConnection, user: &str, full: bool) -> Result<Vec<(u64, String, Option<(Vec<u8>, i64)>)>> {
    let ids = self.listed(c, user).await?;
    let flag: &[u8] = if full { b"1" } else { b"" };
    let reads = ids.iter().map(|id| async move {
      let keys = Keys::of(&self.cmds.prefix, id);
      self.eval(c, &SCRIPTS.read, &keys.two(), &[user.as_bytes(), flag]).await
    });
    let mut out = Vec::new();
    for (id, v) in ids.iter().zip(join_all(reads).await) {
      let Value::Array(a) = v? else { continue };
      let mut a = a.into_iter();
      let w = text(a.next().unwrap_or(Value::Nil))?.parse().unwrap_or(0);
      let rest = match (a.next(), a.next()) {
        (Some(v), Some(t)) => Some((redis::from_redis_value::<Vec<u8>>(v).map_err(parse_err)?, int(&t)?)),
        _ => None,
      };
      out.push((w, id.clone(), rest));
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(out)
  }

  /// `maxSessionsPerUser`: removes the user's least recently written
  /// sessions beyond `n`, each only while it is still as seen.
  async fn cap(&self, c: &ClusterConnection, user: &str, n: usize) -> Result<()> {
    for _ in 0..TRIES {
      let live = self.live_of(c, user, false).await?;
      if live.len() <= n {
        return Ok(());
      }
      let drops = live[..live.len() - n].iter().map(|(w, id, _)| async move {
        let keys = Keys::of(&self.cmds.prefix, id);
        self.eval(c, &SCRIPTS.drop, &keys.four(), &[user.as_bytes(), w.to_string().as_bytes()]).await
      });
      let mut all = true;
      for r in join_all(drops).await {
        all &= int(&r?)? > 0;
      }
      if all {
        return Ok(());
      }
    }
    Err(busy("maxSessionsPerUser"))
  }

  /// `sessionsOf`, `revokeUser` and `rotate` on a cluster.
  pub(super) async fn cluster_whole(&self, op: &Op) -> Result<Reply> {
    let super::Conn::Cluster(c) = self.conn().await? else {
      return Err(StoreError::new(Code::Internal, "not a cluster connection"));
    };
    match op.kind() {
      Kind::SessionsOf(user) => {
        let live = self.live_of(&c, user, true).await?;
        let page = live.into_iter().filter_map(|(_, id, r)| r.map(|(v, t)| (id, v, pttl_to_ttl(t)))).collect();
        Ok(Reply::Page(String::new(), page))
      }
      Kind::RevokeUser(user, except) => {
        let keep: HashSet<&str> = except.iter().map(String::as_str).collect();
        let ids = self.listed(&c, user).await?;
        let drops = ids.iter().filter(|id| !keep.contains(id.as_str())).map(|id| {
          let c = &c;
          async move {
            let keys = Keys::of(&self.cmds.prefix, id);
            self.eval(c, &SCRIPTS.drop, &keys.four(), &[user.as_bytes(), b""]).await
          }
        });
        let mut n = 0;
        for r in join_all(drops).await {
          n += int(&r?)?.max(0) as u64;
        }
        Ok(Reply::Count(n))
      }
      Kind::Rotate(old, new, recode) => Ok(Reply::Bool(self.rotate(&c, old, new, recode).await?)),
      Kind::Read(_) | Kind::Write(_) | Kind::Remove(_) | Kind::Touch(..) | Kind::Lock(_) | Kind::Walk | Kind::Clear | Kind::Ping => {
        Err(StoreError::new(Code::Internal, format!("not a cluster per-user op: {op:?}")))
      }
    }
  }

  async fn rotate(&self, c: &ClusterConnection, old: &str, new: &str, recode: Option<&Recode>) -> Result<bool> {
    if old == new {
      return Ok(false);
    }
    let mut cc = c.clone();
    let taken =
      self.timed("EXISTS", async { redis::cmd("EXISTS").arg(Key(&self.cmds.prefix, new)).query_async::<i64>(&mut cc).await }).await?;
    if taken > 0 {
      return Ok(false);
    }
    let (from, to) = (Keys::of(&self.cmds.prefix, old), Keys::of(&self.cmds.prefix, new));
    let Value::Array(took) = self.eval(c, &SCRIPTS.take, &from.four(), &[]).await? else { return Ok(false) };
    let mut took = took.into_iter();
    let mut next = || took.next().unwrap_or(Value::Nil);
    let value: Vec<u8> = redis::from_redis_value(next()).map_err(parse_err)?;
    let pttl = int(&next())?;
    let (user, ends) = (text(next())?, text(next())?);
    let undo = || async { self.eval(c, &SCRIPTS.end, &from.four(), &[b"undo"]).await };
    let moved = async {
      let value = match recode {
        Some(r) => (r.0)(old, new, value)?,
        None => value,
      };
      let span = if pttl > 0 { pttl.to_string() } else { String::new() };
      let bound = if user.is_empty() { String::new() } else { self.file(c, &user, new, &span).await? };
      let pt = pttl.to_string();
      let args: [&[u8]; 5] = [&value, pt.as_bytes(), user.as_bytes(), ends.as_bytes(), bound.as_bytes()];
      Ok::<bool, StoreError>(int(&self.eval(c, &SCRIPTS.put, &to.two(), &args).await?)? > 0)
    };
    match moved.await {
      Ok(true) => {
        // A revocation that dropped the old session meanwhile drops the new one.
        if int(&self.eval(c, &SCRIPTS.end, &from.four(), &[b"done"]).await?)? == 0 && !user.is_empty() {
          self.eval(c, &SCRIPTS.drop, &to.four(), &[user.as_bytes(), b""]).await?;
        }
        Ok(true)
      }
      Ok(false) => {
        undo().await?;
        Ok(false)
      }
      Err(e) => {
        let _ = undo().await;
        Err(e)
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn keys_beside_a_session_are_on_its_slot() {
    for id in ["a", "a{b}c", "{}x", "}{", "x{", "{y}", "ünï"] {
      let k = Keys::of("sess:", id);
      let slot = Slot::for_key(&k.session);
      for other in [&k.meta, &k.aside, &k.aside_meta] {
        assert_eq!(Slot::for_key(other), slot, "{id}");
      }
    }
    assert_eq!(TAGS.len(), 16384);
    assert!(index_key("s:", "ada").starts_with(b"\xffuser:{"));
  }
}
