//! Per-user sessions on Redis (`userOf`, `maxSessionsPerUser`,
//! `maxLifetime`, `rotate`): each write, removal, touch, listing,
//! revocation and rotation is one Lua script, so a session, its user's
//! index and the rules move in one atomic step on the server, whatever
//! other processes do at the same time.
//!
//! Keys (the session keys are unchanged, `<prefix><id>`):
//! - `\xffmeta:<prefix><id>`: a hash beside each session of such a store,
//!   with the same expiry: `u` its user, `e` its absolute end (epoch ms),
//!   `w` when it was last written (server time in µs, the order of the cap);
//! - `\xffuser:<prefix><user>`: the user's index, a sorted set of session
//!   ids scored by their expiry (2^53: none); entries whose score has
//!   passed are dropped at every step on the user but a rewrite of a
//!   listed session (the common write: one ZADD, no walk), and the key
//!   expires no sooner than the last of its sessions.
//!
//! Both start with a byte UTF-8 never starts with (as lock keys do), so
//! no session id names one and scans skip them. An entry is trusted only
//! while its session exists and its meta names the user: a session
//! removed by a plain client (or `clear()`) or rewritten for another user
//! is unlisted at once, its entry dropped at the next step on the user.
//!
//! Time is the server's (`TIME`), read once per script: every process
//! agrees on the absolute end and the order of writes. The scripts are
//! loaded (`SCRIPT LOAD`) on every new connection of a store with these
//! rules and called by `EVALSHA`; see [`Commands::each`] for `NOSCRIPT`.

use std::sync::LazyLock;

use redis::{Cmd, Script, Value};

use super::commands::span;
use super::{parse_err, pttl_to_ttl, Commands, Conn, Key, RedisBackend};
use crate::backend::{Kind, Op, Owner, Put, Recode, Reply};
use crate::error::{Code, Result, StoreError};
use crate::expiry::now_ms;

/// What every per-user script starts with, on one server and on a
/// cluster's nodes (src/backend/redis/cluster_users.rs): the server's
/// clock, read once, and the rules of a write's end, owner and expiry.
pub(super) const COMMON: &str = r#"
-- Writes after TIME: Redis before 5 needs effects replication asked for.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = tonumber(t[1]) * 1000000 + tonumber(t[2])
local FOREVER = 9007199254740992
local function fmt(n) return string.format('%.0f', n) end
-- A session's absolute end; one with none (written without maxLifetime)
-- starts its lifetime now when `life` (maxLifetime ms, '' none) is given.
local function end_of(ends, life)
  if not ends and life ~= '' then return now + tonumber(life) end
  return ends
end
-- Whose a write leaves the session: 'k' keeps `old`, 'a' nobody's, 'u'..user.
local function owner_of(arg, old)
  if arg == 'a' then return false elseif arg ~= 'k' then return string.sub(arg, 2) end
  return old
end
-- An expiry `ttl` ms from now ('' none), never past the absolute end.
local function expiry(ttl, ends)
  local at = false
  if ttl ~= '' then at = now + tonumber(ttl) end
  if ends and (not at or at > ends) then at = ends end
  return at
end
-- The keys expire at `at` (epoch ms), or never.
local function expire(at, ...)
  for _, k in ipairs({...}) do
    if at then redis.call('PEXPIREAT', k, fmt(at)) else redis.call('PERSIST', k) end
  end
end
"#;

/// Helpers every script on one server has after [`COMMON`]. `ARGV[1]` is
/// always the key prefix.
const PRELUDE: &str = r#"
local P = ARGV[1]
local function skey(id) return P .. id end
local function mkey(id) return '\255meta:' .. P .. id end
local function ukey(u) return '\255user:' .. P .. u end
-- The index key lives as long as its longest-lived session.
local function settle(idx)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. fmt(now))
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if #top == 0 then return end
  local s = tonumber(top[2])
  if s >= FOREVER then redis.call('PERSIST', idx) else redis.call('PEXPIREAT', idx, fmt(s)) end
end
-- A user's live sessions as { id, write stamp }, least recently written
-- first; entries of sessions that are gone or not the user's are dropped.
local function live_of(idx, user)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. fmt(now))
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local m = redis.call('HMGET', mkey(id), 'u', 'w')
    if m[1] == user and redis.call('EXISTS', skey(id)) == 1 then
      out[#out + 1] = { id, tonumber(m[2]) or 0 }
    else
      redis.call('ZREM', idx, id)
    end
  end
  table.sort(out, function(a, b) return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1]) end)
  return out
end
local function drop(id, user)
  redis.call('UNLINK', skey(id), mkey(id))
  if user then redis.call('ZREM', ukey(user), id) end
end
"#;

/// A write. ARGV: prefix, id, value, ttl ms ('' none), cond ('', NX, XX),
/// owner ('k' keep, 'a' anonymous, 'u' .. user), maxLifetime ms ('' none),
/// maxSessionsPerUser ('' none). Answers 1 written, 0 not (cond).
const WRITE: &str = r#"
local id, sk, mk = ARGV[2], skey(ARGV[2]), mkey(ARGV[2])
local live = redis.call('EXISTS', sk) == 1
if (ARGV[5] == 'NX' and live) or (ARGV[5] == 'XX' and not live) then return 0 end
local old, ends, meta = false, false, false
if live then
  local m = redis.call('HMGET', mk, 'u', 'e')
  old = m[1]
  ends = m[2] and tonumber(m[2])
  meta = old or ends
end
ends = end_of(ends, ARGV[7])
local user = owner_of(ARGV[6], old)
local at = expiry(ARGV[4], ends)
if old and old ~= user then
  redis.call('ZREM', ukey(old), id)
  settle(ukey(old))
end
if at and at <= now then
  redis.call('UNLINK', sk, mk)
  return 1
end
if at then redis.call('SET', sk, ARGV[3], 'PX', fmt(at - now)) else redis.call('SET', sk, ARGV[3]) end
-- The meta of a live session is rewritten in place (HSET overwrites
-- every field it keeps); a new session's may be a removed one's leftover.
if not live then redis.call('UNLINK', mk) end
if user or ends then
  if old and not user then redis.call('HDEL', mk, 'u') end
  local f = { 'w', fmt(stamp) }
  if user then f[#f + 1] = 'u'; f[#f + 1] = user end
  if ends then f[#f + 1] = 'e'; f[#f + 1] = fmt(ends) end
  redis.call('HSET', mk, unpack(f))
  if at then redis.call('PEXPIREAT', mk, fmt(at)) elseif meta then redis.call('PERSIST', mk) end
elseif meta then
  redis.call('UNLINK', mk)
end
if user then
  local idx = ukey(user)
  local pt = redis.call('PTTL', idx)
  if redis.call('ZADD', idx, at and fmt(at) or fmt(FOREVER), id) == 1 then
    -- A new entry: the index drops its expired ones.
    redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. fmt(now))
  end
  -- The index holds every live session of the user (maybe stale entries
  -- too): no more entries than the cap, nothing to evict or read. Every
  -- write checks, so a cap lowered since trims at the user's next write.
  if ARGV[8] ~= '' and redis.call('ZCARD', idx) > tonumber(ARGV[8]) then
    local l = live_of(idx, user)
    for i = 1, #l - tonumber(ARGV[8]) do drop(l[i][1], user) end
  end
  -- The index lives at least as long as the session: a later expiry is
  -- kept, a persistent index (one with a session without expiry, or none
  -- left) is settled on its entries.
  if pt == -1 then
    if at then settle(idx) end
  elseif not at then
    redis.call('PERSIST', idx)
  elseif pt == -2 or now + pt < at then
    redis.call('PEXPIREAT', idx, fmt(at))
  end
end
return 1
"#;

/// A removal. ARGV: prefix, id. Answers 1 when a live session was removed.
const REMOVE: &str = r#"
local id, sk, mk = ARGV[2], skey(ARGV[2]), mkey(ARGV[2])
local live = redis.call('EXISTS', sk)
local u = redis.call('HGET', mk, 'u')
redis.call('UNLINK', sk, mk)
if u then
  redis.call('ZREM', ukey(u), id)
  settle(ukey(u))
end
return live
"#;

/// A new expiry, never past the absolute end. ARGV: prefix, id, ttl ms
/// ('' none). Answers 1 when the session is live.
const TOUCH: &str = r#"
local id, sk, mk = ARGV[2], skey(ARGV[2]), mkey(ARGV[2])
if redis.call('EXISTS', sk) == 0 then return 0 end
local m = redis.call('HMGET', mk, 'u', 'e')
local at = expiry(ARGV[3], m[2] and tonumber(m[2]))
expire(at, sk, mk)
if m[1] then
  redis.call('ZADD', ukey(m[1]), at and fmt(at) or fmt(FOREVER), id)
  settle(ukey(m[1]))
end
return 1
"#;

/// A user's live sessions. ARGV: prefix, user. Answers id, value, pttl, …
const SESSIONS_OF: &str = r#"
local idx = ukey(ARGV[2])
local out = {}
for _, e in ipairs(live_of(idx, ARGV[2])) do
  out[#out + 1] = e[1]
  out[#out + 1] = redis.call('GET', skey(e[1]))
  out[#out + 1] = redis.call('PTTL', skey(e[1]))
end
settle(idx)
return out
"#;

/// Removes a user's sessions. ARGV: prefix, user, ids to keep…; answers
/// how many were removed.
const REVOKE: &str = r#"
local idx, user = ukey(ARGV[2]), ARGV[2]
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local n = 0
for _, e in ipairs(live_of(idx, user)) do
  if not keep[e[1]] then
    drop(e[1], user)
    n = n + 1
  end
end
settle(idx)
return n
"#;

/// Moves a live session to a free id with its ttl, meta and index entry.
/// ARGV: prefix, old id, new id, and with a codec '1', the value read
/// (compared: it answers -1 when the session changed since) and the value
/// for the new id. Answers 1 moved, 0 not (old missing, new taken).
const ROTATE: &str = r#"
local old, new = ARGV[2], ARGV[3]
if old == new or redis.call('EXISTS', skey(new)) == 1 then return 0 end
local v = redis.call('GET', skey(old))
if not v then return 0 end
if ARGV[4] == '1' then
  if v ~= ARGV[5] then return -1 end
  v = ARGV[6]
end
local pt = redis.call('PTTL', skey(old))
if pt ~= -1 and pt <= 0 then return 0 end
local u = redis.call('HGET', mkey(old), 'u')
redis.call('UNLINK', mkey(new))
if pt > 0 then redis.call('SET', skey(new), v, 'PX', pt) else redis.call('SET', skey(new), v) end
if redis.call('EXISTS', mkey(old)) == 1 then redis.call('RENAME', mkey(old), mkey(new)) end
redis.call('UNLINK', skey(old))
if u then
  local idx = ukey(u)
  redis.call('ZREM', idx, old)
  redis.call('ZADD', idx, pt > 0 and fmt(now + pt) or fmt(FOREVER), new)
  settle(idx)
end
return 1
"#;

/// One script: its source and its hash.
pub(crate) struct Lua {
  pub(super) code: String,
  pub(super) script: Script,
}

impl Lua {
  /// The script of `parts` (preludes, then its body), hashed once.
  pub(super) fn new(parts: &[&str]) -> Lua {
    let code = parts.concat();
    Lua { script: Script::new(&code), code }
  }
}

/// The scripts, each the preludes and its body.
pub(crate) struct Scripts {
  write: Lua,
  remove: Lua,
  touch: Lua,
  sessions_of: Lua,
  revoke: Lua,
  rotate: Lua,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
  let s = |body: &str| Lua::new(&[COMMON, PRELUDE, body]);
  Scripts { write: s(WRITE), remove: s(REMOVE), touch: s(TOUCH), sessions_of: s(SESSIONS_OF), revoke: s(REVOKE), rotate: s(ROTATE) }
});

impl Scripts {
  fn all(&self) -> [&Lua; 6] {
    [&self.write, &self.remove, &self.touch, &self.sessions_of, &self.revoke, &self.rotate]
  }

  /// `SCRIPT LOAD` of each script, for a connection's opening.
  pub(crate) fn load_cmds(&self) -> Vec<Cmd> {
    self.all().iter().map(|s| redis::cmd("SCRIPT").arg("LOAD").arg(&s.code).clone()).collect()
  }

  /// Loads every script on `conn` (the redis crate's `Script::load_async`).
  pub(crate) async fn load<C: redis::aio::ConnectionLike>(&self, conn: &mut C) -> redis::RedisResult<()> {
    for s in self.all() {
      s.script.load_async(conn).await?;
    }
    Ok(())
  }
}

impl Commands {
  /// Whether `op` is a script on this store: the per-user ops always, and
  /// writes, removals and touches where the store has per-user rules (a
  /// store without them sends its plain commands and pays nothing).
  pub(crate) fn scripted(&self, op: &Op) -> bool {
    match op.kind() {
      Kind::Write(Put { owner: Owner::Keep, .. }) | Kind::Remove(_) | Kind::Touch(..) => self.rules.any(),
      Kind::Write(_) | Kind::SessionsOf(_) | Kind::RevokeUser(..) | Kind::Rotate(..) => true,
      Kind::Read(_) | Kind::Lock(_) | Kind::Walk | Kind::Clear | Kind::Ping => false,
    }
  }

  /// The script call of a [`Commands::scripted`] op, into `cmd` (cleared
  /// first). `EVALSHA` where the connection loaded the scripts (a store
  /// with per-user rules); `EVAL` for a rotation on a plain store (rare:
  /// nothing to load for it). A rotation re-encoded for its new id is
  /// [`Commands::rotate_cas`].
  pub(crate) fn script(&self, op: &Op, now: u64, cmd: &mut Cmd) {
    if self.daemon && self.daemon_users(op, now, cmd) {
      return;
    }
    let s = &*SCRIPTS;
    cmd.clear();
    // KEYS[1], the key the step is about (a session, or a user's index),
    // then the prefix and the step's own arguments.
    match op.kind() {
      Kind::Write(put) => {
        self.call(&s.write, cmd);
        cmd.arg(Key(&self.prefix, put.id)).arg(&self.prefix);
        self.write_args(&put, now, cmd);
      }
      Kind::Remove(id) => {
        self.call(&s.remove, cmd);
        cmd.arg(Key(&self.prefix, id)).arg(&self.prefix).arg(id);
      }
      Kind::Touch(id, at) => {
        self.call(&s.touch, cmd);
        cmd.arg(Key(&self.prefix, id)).arg(&self.prefix).arg(id).arg(span(at, now));
      }
      Kind::SessionsOf(user) => {
        self.call(&s.sessions_of, cmd);
        cmd.arg(index_key(&self.prefix, user)).arg(&self.prefix).arg(user);
      }
      Kind::RevokeUser(user, keep) => {
        self.call(&s.revoke, cmd);
        cmd.arg(index_key(&self.prefix, user)).arg(&self.prefix).arg(user).arg(keep);
      }
      Kind::Rotate(old, new, recode) => {
        debug_assert!(recode.is_none(), "a re-encoded rotation is rotate_cas");
        self.call(&s.rotate, cmd);
        cmd.arg(Key(&self.prefix, old)).arg(&self.prefix).arg(old).arg(new);
      }
      Kind::Read(_) | Kind::Lock(_) | Kind::Walk | Kind::Clear | Kind::Ping => unreachable!("not scripted"),
    }
  }

  /// A rotation whose value was read as `read` and re-encoded as `value`
  /// for the new id: moved only if the session still holds `read`
  /// (answers -1 when it changed meanwhile: read again).
  pub(crate) fn rotate_cas(&self, old: &str, new: &str, read: &[u8], value: &[u8], cmd: &mut Cmd) {
    if self.daemon {
      return self.daemon_rotate_cas(old, new, read, value, cmd);
    }
    cmd.clear();
    self.call(&SCRIPTS.rotate, cmd);
    cmd.arg(Key(&self.prefix, old)).arg(&self.prefix).arg(old).arg(new).arg("1").arg(read).arg(value);
  }

  fn call(&self, lua: &Lua, cmd: &mut Cmd) {
    if self.rules.any() {
      cmd.arg("EVALSHA").arg(lua.script.get_hash());
    } else {
      cmd.arg("EVAL").arg(&lua.code);
    }
    cmd.arg(1);
  }
}

impl RedisBackend {
  /// A per-user op's script on its own (its batch runs alone: nothing
  /// else is in flight, so a `NOSCRIPT` answer loads the scripts and sends
  /// it again, as the redis crate's `Script::invoke_async` does).
  pub(super) async fn script(&self, op: &Op) -> Result<Reply> {
    let mut cmd = Cmd::new();
    self.cmds.script(op, now_ms(), &mut cmd);
    let v = self.run_script(&cmd).await?;
    Commands::reply(op, vec![v]).map_err(|e| self.at(e))
  }

  async fn run_script(&self, cmd: &Cmd) -> Result<Value> {
    let conn = self.conn().await?;
    let once = |conn: Conn| async move {
      match conn {
        Conn::Single(c) => self.single("a script", c, false, move |mut c| async move { cmd.query_async::<Value>(&mut c).await }).await,
        Conn::Cluster(mut c) => self.timed("a script", async move { cmd.query_async::<Value>(&mut c).await }).await,
      }
    };
    match once(conn.clone()).await {
      Err(e) if e.message.ends_with(&lost_scripts().message) => {
        let mut c = conn.clone();
        match &mut c {
          Conn::Single(m) => self.timed("SCRIPT LOAD", SCRIPTS.load(m)).await?,
          Conn::Cluster(m) => self.timed("SCRIPT LOAD", SCRIPTS.load(m)).await?,
        }
        once(c).await
      }
      r => r,
    }
  }

  /// A rotation re-encoded for its new id (the codec binds a session to
  /// its id): read, re-encode, then move it if it still holds what was
  /// read (else read again: another process changed it meanwhile).
  pub(super) async fn rotate_recoded(&self, old: &str, new: &str, recode: &Recode) -> Result<Reply> {
    let mut cmd = Cmd::new();
    loop {
      let read = match self.run_script(redis::cmd("GET").arg(Key(&self.cmds.prefix, old))).await? {
        Value::Nil => return Ok(Reply::Bool(false)),
        v => redis::from_redis_value::<Vec<u8>>(v).map_err(parse_err)?,
      };
      let value = (recode.0)(old, new, read.clone())?;
      self.cmds.rotate_cas(old, new, &read, &value, &mut cmd);
      match self.run_script(&cmd).await? {
        Value::Int(-1) => continue,
        v => return Ok(Reply::Bool(redis::from_redis_value::<i64>(v).map_err(parse_err)? > 0)),
      }
    }
  }
}

/// A user's index key.
fn index_key(prefix: &str, user: &str) -> Vec<u8> {
  [b"\xffuser:", prefix.as_bytes(), user.as_bytes()].concat()
}

/// The reply of a per-user op's script.
pub(crate) fn reply(op: &Op, last: Value) -> Result<Reply> {
  let int = |v: &Value| -> Result<i64> { redis::from_redis_value_ref(v).map_err(parse_err) };
  Ok(match op.kind() {
    Kind::Write(Put { cond: None, .. }) => Reply::Done,
    Kind::Write(_) | Kind::Rotate(..) => Reply::Bool(int(&last)? > 0),
    Kind::RevokeUser(..) => Reply::Count(int(&last)?.max(0) as u64),
    Kind::SessionsOf(_) => {
      let flat: Vec<Value> = redis::from_redis_value(last).map_err(parse_err)?;
      let mut out = Vec::with_capacity(flat.len() / 3);
      let mut it = flat.into_iter();
      while let (Some(id), Some(v), Some(t)) = (it.next(), it.next(), it.next()) {
        let id: String = redis::from_redis_value(id).map_err(parse_err)?;
        let v: Vec<u8> = redis::from_redis_value(v).map_err(parse_err)?;
        let pttl = int(&t)?;
        out.push((id, v, pttl_to_ttl(pttl)));
      }
      Reply::Page(String::new(), out)
    }
    Kind::Read(_) | Kind::Remove(_) | Kind::Touch(..) | Kind::Lock(_) | Kind::Walk | Kind::Clear | Kind::Ping => {
      return Err(StoreError::new(Code::Internal, format!("not a per-user op: {op:?}")))
    }
  })
}

/// What a `NOSCRIPT` answer becomes: the server lost the scripts (a
/// `SCRIPT FLUSH`) under a live connection; the call did nothing.
pub(crate) fn lost_scripts() -> StoreError {
  StoreError::new(
    Code::StoreUnavailable,
    "the server no longer has rs-store's scripts (SCRIPT FLUSH?): the call did nothing; they are loaded again for the next calls",
  )
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::{Cond, UserRules};

  fn cmds(rules: UserRules) -> Commands {
    Commands { prefix: "s:".into(), daemon: false, rules }
  }

  #[test]
  fn plain_stores_send_plain_commands() {
    let plain = cmds(UserRules::default());
    let set = Op::Set("a".into(), b"{}".to_vec(), None);
    assert!(!plain.scripted(&set));
    assert!(!plain.scripted(&Op::Remove("a".into())));
    assert!(plain.scripted(&Op::Rotate("a".into(), "b".into(), None)));
    let users = cmds(UserRules { users: true, ..Default::default() });
    assert!(users.scripted(&set));
    assert!(users.scripted(&Op::Touch("a".into(), None)));
    assert!(!users.scripted(&Op::Get("a".into())));
  }

  #[test]
  fn script_calls() {
    let users = cmds(UserRules { users: true, max_per_user: Some(3), max_lifetime_ms: Some(5000) });
    let mut cmd = Cmd::new();
    users.script(&Op::Write("a".into(), b"{}".to_vec(), Some(10_000), Some(Cond::Present), Some("ada".into())), 9_000, &mut cmd);
    // The command as the server reads it: an array of bulk strings.
    let args: Vec<Vec<u8>> = redis::from_redis_value(redis::parse_redis_value(&cmd.get_packed_command()).unwrap()).unwrap();
    let text = |i: usize| String::from_utf8_lossy(&args[i]).to_string();
    assert_eq!(text(0), "EVALSHA");
    assert_eq!(text(1), SCRIPTS.write.script.get_hash());
    assert_eq!((text(2), text(3), text(4), text(5)), ("1".into(), "s:a".into(), "s:".into(), "a".into()));
    assert_eq!((text(7), text(8), text(9), text(10), text(11)), ("1000".into(), "XX".into(), "uada".into(), "5000".into(), "3".into()));
    // a plain store's rotation brings its script along
    cmds(UserRules::default()).script(&Op::Rotate("a".into(), "b".into(), None), 0, &mut cmd);
    assert!(cmd.get_packed_command().starts_with(b"*7\r\n$4\r\nEVAL\r\n"));
    assert_eq!(SCRIPTS.load_cmds().len(), 6);
  }
}
