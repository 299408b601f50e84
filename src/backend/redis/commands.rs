//! How ops become Redis commands and replies become answers: the one
//! op <-> command mapping, shared by the crate-driven client (`super`), the
//! JS-socket driver ([`super::wire`]) and the daemon client (the daemon speaks
//! the same commands, and its own for locks and per-user steps).

use redis::{Cmd, Value};

use super::users;
use crate::backend::{Cond, Op, Owner, Put, Reply, Ttl, UserRules};
use crate::error::{Code, Result, StoreError};
use crate::expiry::now_ms;

/// Release a lock only if the caller's token still holds it.
const UNLOCK_LUA: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// Extend a lock only if the caller's token still holds it.
const RENEW_LUA: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// How ops become Redis commands and replies become answers, for one key
/// prefix: shared by this backend and the JS-thread connection
/// ([`wire`]).
#[derive(Debug, Clone)]
pub struct Commands {
  /// Key prefix, e.g. `sess:`.
  pub prefix: String,
  /// rs-store's session daemon: locks are its `LOCK`/`UNLOCK`/`RENEW`.
  pub daemon: bool,
  /// Per-user rules: with any, writes, removals and touches are scripts
  /// (src/backend/redis/users.rs).
  pub rules: UserRules,
}

/// Lock keys start with a byte that UTF-8 never starts with, so no session
/// id (a JS string, stored as UTF-8) can name one, whatever the prefix, and
/// scans skip them.
const LOCK_MARK: &[u8] = b"\xfflock:";

/// `<prefix><id>` as one command argument, written straight into it.
pub(crate) struct Key<'a>(pub &'a str, pub &'a str);

impl redis::ToRedisArgs for Key<'_> {
  fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
    use std::io::Write;
    let mut w = out.writer_for_next_arg();
    // Writing into a Vec cannot fail.
    let _ = w.write_all(self.0.as_bytes());
    let _ = w.write_all(self.1.as_bytes());
  }
}

impl Commands {
  pub fn key(&self, id: &str) -> String {
    let mut k = String::with_capacity(self.prefix.len() + id.len());
    k.push_str(&self.prefix);
    k.push_str(id);
    k
  }

  /// The daemon keeps locks in a table of their own, keyed `<prefix><id>`;
  /// on Redis a lock is `\xfflock:<prefix><id>` (see [`LOCK_MARK`]).
  fn lock_key(&self, id: &str) -> Vec<u8> {
    if self.daemon {
      return self.key(id).into_bytes();
    }
    [LOCK_MARK, self.prefix.as_bytes(), id.as_bytes()].concat()
  }

  /// `SCAN … MATCH` pattern of every key under the prefix.
  pub fn pattern(&self) -> String {
    format!("{}*", escape_glob(&self.prefix))
  }

  /// The session id of a scanned key; `None` for a lock key or a key that
  /// is not UTF-8 (not rs-store's).
  pub fn id_of(&self, key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(self.prefix.as_bytes())?;
    if key.starts_with(LOCK_MARK) {
      return None;
    }
    std::str::from_utf8(rest).ok().map(str::to_string)
  }

  /// The commands of one per-id op, built one by one in `cmd` (cleared
  /// first, so one buffer serves a whole batch) and handed to `f`;
  /// whole-store ops are scans: none. Returns how many. `now` (ms since
  /// the epoch, read once per batch) turns expiry times into `PX` spans.
  pub fn each(&self, op: &Op, now: u64, cmd: &mut Cmd, mut f: impl FnMut(&Cmd)) -> usize {
    macro_rules! cmd {
      ($name:expr $(, $arg:expr)*) => {{
        cmd.clear();
        cmd.arg($name);
        $(cmd.arg($arg);)*
        f(cmd);
        1
      }};
    }
    if self.daemon {
      if self.daemon_users(op, now, cmd) {
        f(cmd);
        return 1;
      }
    } else if self.scripted(op) {
      self.script(op, now, cmd);
      f(cmd);
      return 1;
    }
    let key = |id| Key(&self.prefix, id);
    let span = |at: &u64| at.saturating_sub(now).max(1);
    match op {
      Op::Get(id) => cmd!("GET", key(id)),
      Op::Set(id, value, exp) => {
        self.set(id, value, *exp, None, now, cmd);
        f(cmd);
        1
      }
      Op::SetIf(id, value, exp, c) => {
        self.set(id, value, *exp, Some(*c), now, cmd);
        f(cmd);
        1
      }
      Op::Remove(id) => cmd!("UNLINK", key(id)),
      Op::Touch(id, Some(at)) => cmd!("PEXPIRE", key(id), span(at)),
      // No expiry: PERSIST answers 0 both for "missing" and "had none", so EXISTS decides.
      Op::Touch(id, None) => cmd!("PERSIST", key(id)) + cmd!("EXISTS", key(id)),
      Op::Ttl(id) => cmd!("PTTL", key(id)),
      Op::Exists(id) => cmd!("EXISTS", key(id)),
      Op::Lock(id, token, ttl) if self.daemon => cmd!("LOCK", self.lock_key(id), token, (*ttl).max(1)),
      Op::Unlock(id, token) if self.daemon => cmd!("UNLOCK", self.lock_key(id), token),
      Op::Renew(id, token, ttl) if self.daemon => cmd!("RENEW", self.lock_key(id), token, (*ttl).max(1)),
      Op::Lock(id, token, ttl) => cmd!("SET", self.lock_key(id), token, "NX", "PX", (*ttl).max(1)),
      Op::Unlock(id, token) => cmd!("EVAL", UNLOCK_LUA, 1, self.lock_key(id), token),
      Op::Renew(id, token, ttl) => cmd!("EVAL", RENEW_LUA, 1, self.lock_key(id), token, (*ttl).max(1)),
      Op::Len | Op::Clear | Op::Entries | Op::Keys | Op::Page(..) => 0,
      // Scripts (above).
      Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) => 0,
      Op::Ping => cmd!("PING"),
    }
  }

  /// `SET <prefix><id> value [NX|XX] [PX ms]` into `cmd` (cleared first).
  fn set(&self, id: &str, value: &[u8], exp: Option<u64>, c: Option<Cond>, now: u64, cmd: &mut Cmd) {
    cmd.clear();
    cmd.arg("SET").arg(Key(&self.prefix, id)).arg(value);
    if c.is_some() {
      cmd.arg(cond(c));
    }
    if let Some(at) = exp {
      cmd.arg("PX").arg(at.saturating_sub(now).max(1));
    }
  }

  /// Turns the replies of the commands of `op` ([`Commands::each`]) into
  /// the op's reply.
  pub fn reply(op: &Op, mut values: Vec<Value>) -> Result<Reply> {
    let last = values.pop().ok_or_else(|| StoreError::new(Code::Internal, "no reply from Redis"))?;
    if let Some(Value::ServerError(e)) = values.iter().find(|v| matches!(v, Value::ServerError(_))) {
      return Err(map_err(e.clone().into()));
    }
    Commands::reply_last(op, last)
  }

  /// [`Commands::reply`] from the last command's reply alone (all of it
  /// for an op of one command), the earlier ones already checked.
  pub fn reply_last(op: &Op, last: Value) -> Result<Reply> {
    if let Value::ServerError(e) = last {
      return Err(map_err(e.into()));
    }
    let int = |v: &Value| -> Result<i64> { redis::from_redis_value_ref(v).map_err(parse_err) };
    Ok(match op {
      Op::Get(_) => Reply::Value(match last {
        // The bytes move into the answer (no copy).
        Value::BulkString(b) => Some(b),
        v => redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(parse_err)?,
      }),
      Op::Set(..) => Reply::Done,
      Op::Remove(_) | Op::Touch(..) | Op::Exists(_) | Op::Unlock(..) | Op::Renew(..) => Reply::Bool(int(&last)? > 0),
      // SET … NX|XX answers OK when written, nil when not; the daemon's
      // LOCK answers 1 or 0.
      Op::SetIf(..) | Op::Lock(..) => Reply::Bool(match last {
        Value::Nil => false,
        Value::Int(n) => n > 0,
        _ => true,
      }),
      Op::Ttl(_) => Reply::Ttl(pttl_to_ttl(int(&last)?)),
      Op::Len | Op::Clear | Op::Entries | Op::Keys | Op::Page(..) => unreachable!("scans are not pipelined"),
      Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) => return users::reply(op, last),
      Op::Ping => Reply::Done,
    })
  }
}

impl Commands {
  /// A write's arguments after the prefix, as the per-user `WRITE` script
  /// (src/backend/redis/users.rs) and the daemon's `UWRITE` both take them:
  /// id, value, ttl ms, cond, owner, then this store's rules (maxLifetime
  /// ms, maxSessionsPerUser; `''` for none).
  pub(super) fn write_args(&self, put: &Put, now: u64, cmd: &mut Cmd) {
    cmd.arg(put.id).arg(put.value).arg(span(put.at, now)).arg(cond(put.cond)).arg(&*owner(put.owner));
    let num = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    cmd.arg(num(self.rules.max_lifetime_ms)).arg(num(self.rules.max_per_user.map(u64::from)));
  }
}

/// An expiry as the per-user steps take it: ms from `now` (at least 1),
/// `''` for none.
pub(super) fn span(at: Option<u64>, now: u64) -> String {
  at.map(|a| a.saturating_sub(now).max(1).to_string()).unwrap_or_default()
}

/// A write's condition as the per-user steps take it: `NX`, `XX`, `''`.
pub(super) fn cond(c: Option<Cond>) -> &'static str {
  match c {
    Some(Cond::Absent) => "NX",
    Some(Cond::Present) => "XX",
    None => "",
  }
}

/// A write's owner as the per-user steps take it: `k` keeps the session's
/// user, `a` anonymous, `u<user>`.
pub(super) fn owner(o: Owner) -> std::borrow::Cow<'static, [u8]> {
  match o {
    Owner::Keep => b"k".as_slice().into(),
    Owner::Anonymous => b"a".as_slice().into(),
    Owner::User(u) => [b"u", u.as_bytes()].concat().into(),
  }
}

/// Whether the commands of `op`, applied twice, leave what applying them
/// once does (so a request lost with its connection may be sent again):
/// reads, `SET`, `PEXPIRE`/`PERSIST`, `UNLINK` and a lock's renewal with
/// the same arguments. Not `SET NX`/`XX` (the second answer could differ
/// from the first's effect), taking a lock, or a release (its answer).
pub(super) fn resendable(op: &Op) -> bool {
  matches!(op, Op::Get(_) | Op::Set(..) | Op::Remove(_) | Op::Touch(..) | Op::Ttl(_) | Op::Exists(_) | Op::Renew(..) | Op::Ping)
}

/// A `PTTL` answer as a [`Ttl`].
pub(crate) fn pttl_to_ttl(ms: i64) -> Ttl {
  match ms {
    -2 => Ttl::Missing,
    -1 => Ttl::Persistent,
    ms => Ttl::At(now_ms().saturating_add(ms.max(0) as u64)),
  }
}

/// Maps a redis-crate error to a coded store error.
pub(crate) fn map_err(e: redis::RedisError) -> StoreError {
  use redis::ErrorKind;
  if e.code() == Some("NOSCRIPT") {
    return users::lost_scripts();
  }
  let msg = e.to_string();
  // The session daemon answers errors with rs-store's own codes.
  if let Some(code) = e.code().and_then(Code::parse) {
    return StoreError::new(code, e.detail().unwrap_or(&msg).to_string());
  }
  match e.kind() {
    ErrorKind::AuthenticationFailed => StoreError::new(Code::StoreAuth, format!("the server refused the credentials: {msg}")),
    ErrorKind::InvalidClientConfig => StoreError::new(Code::InvalidOption, format!("configuration: {msg}")),
    // The crate parses the server's error code; Redis before 6 said "ERR invalid password".
    _ if matches!(e.code(), Some("WRONGPASS" | "NOAUTH")) || (e.code() == Some("ERR") && msg.contains("invalid password")) => {
      StoreError::new(Code::StoreAuth, format!("the server refused the credentials: {msg}"))
    }
    // Reachable, but writes are refused: what to do is not "reconnect".
    _ if matches!(e.code(), Some("OOM" | "READONLY" | "MISCONF")) => {
      StoreError::new(Code::StoreReadOnly, format!("the server refuses writes: {msg}"))
    }
    // SELECT refused: a configuration error, not an outage.
    _ if msg.contains("DB index is out of range") || msg.contains("invalid DB index") => {
      StoreError::new(Code::InvalidOption, format!("the server has no such database (option db): {msg}"))
    }
    _ if msg.contains("WRONGTYPE") => StoreError::new(Code::Corrupt, format!("a key under the prefix is not a string: {msg}")),
    _ if e.kind() == ErrorKind::Parse => {
      StoreError::new(Code::StoreUnavailable, format!("the server answered something that is not RESP (is it a Redis server?): {msg}"))
    }
    _ => StoreError::new(Code::StoreUnavailable, msg),
  }
}

/// A reply of an unexpected shape (e.g. a foreign value under the prefix).
pub(crate) fn parse_err(e: redis::ParsingError) -> StoreError {
  StoreError::new(Code::Corrupt, format!("unexpected reply from Redis: {e}"))
}

/// Escapes glob characters so a prefix matches literally in SCAN MATCH.
pub(super) fn escape_glob(s: &str) -> String {
  let mut out = String::with_capacity(s.len());
  for ch in s.chars() {
    if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
      out.push('\\');
    }
    out.push(ch);
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn plain_writes_are_one_set() {
    let cmds = Commands { prefix: "s:".into(), daemon: false, rules: UserRules::default() };
    let args = |op: Op| {
      let mut packed = Vec::new();
      assert_eq!(cmds.each(&op, 9_000, &mut Cmd::new(), |c| packed.push(c.get_packed_command())), 1);
      let v: Vec<Vec<u8>> = redis::from_redis_value(redis::parse_redis_value(&packed[0]).unwrap()).unwrap();
      v.into_iter().map(|a| String::from_utf8(a).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(args(Op::Set("a".into(), b"{}".to_vec(), Some(10_000))), ["SET", "s:a", "{}", "PX", "1000"]);
    assert_eq!(args(Op::Set("a".into(), b"{}".to_vec(), None)), ["SET", "s:a", "{}"]);
    assert_eq!(args(Op::SetIf("a".into(), b"{}".to_vec(), None, Cond::Absent)), ["SET", "s:a", "{}", "NX"]);
    assert_eq!(args(Op::SetIf("a".into(), b"{}".to_vec(), Some(8_000), Cond::Present)), ["SET", "s:a", "{}", "XX", "PX", "1"]);
  }

  #[test]
  fn glob_escape() {
    assert_eq!(escape_glob("sess:"), "sess:");
    assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
  }

  #[test]
  fn refused_writes_have_their_own_code() {
    for (reply, code) in [
      ("-OOM command not allowed when used memory > 'maxmemory'.", Code::StoreReadOnly),
      ("-READONLY You can't write against a read only replica.", Code::StoreReadOnly),
      ("-MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.", Code::StoreReadOnly),
      ("-WRONGTYPE Operation against a key holding the wrong kind of value", Code::Corrupt),
      ("-ERR something else", Code::StoreUnavailable),
    ] {
      let Value::ServerError(e) = redis::parse_redis_value(format!("{reply}\r\n").as_bytes()).unwrap() else { panic!("{reply}") };
      assert_eq!(map_err(e.into()).code, code, "{reply}");
    }
  }
}
