//! Per-user sessions on the daemon (`userOf`, `maxSessionsPerUser`,
//! `maxLifetime`, `rotate`): each command carries one op, with the rules of
//! the client that sent it, to the storage ([`Backend::exec_under`]), which
//! applies it in one atomic step. The rules are client options, so they
//! come with every write (as the Redis scripts take them as `ARGV`) rather
//! than as daemon flags; clients sharing a prefix should share them.
//!
//! A user is filed in the storage as `<prefix length>:<prefix><user>`, so
//! clients of different prefixes never see each other's users (as on
//! Redis, where a user's index is keyed under the prefix).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::resp::Reply;
use super::{key, store_error, text, wrong_args};
use crate::backend::redis::digest;
use crate::backend::{check_user, Backend, Cond, Op, Recode, Reply as Answer, UserRules};
use crate::error::{Code, Result, StoreError};
use crate::expiry::after_ms;

type Answered = std::result::Result<Reply, Reply>;

/// The reply to a per-user command, or `None` when `name` is not one.
pub(super) async fn command(s: &dyn Backend, max_value: usize, name: &str, a: &[Vec<u8>]) -> Option<Answered> {
  Some(match (name, a.len()) {
    ("UWRITE", 8) => uwrite(s, max_value, a).await,
    ("SESSIONSOF", 2) => sessions_of(s, a).await,
    ("REVOKEUSER", n) if n >= 2 => revoke(s, max_value, a).await,
    ("ROTATE", 3 | 5) => rotate(s, max_value, a).await,
    ("UWRITE" | "SESSIONSOF" | "REVOKEUSER" | "ROTATE", _) => Err(wrong_args(name)),
    _ => return None,
  })
}

fn bad(code: Code, message: impl AsRef<str>) -> Reply {
  Reply::error(code.as_str(), message)
}

/// The storage key of a session id under a prefix.
fn session_key(prefix: &str, id: &[u8]) -> std::result::Result<String, Reply> {
  if id.is_empty() {
    return Err(bad(Code::InvalidId, "session id must not be empty"));
  }
  let id = text(id)?;
  key(format!("{prefix}{id}").as_bytes()).map(str::to_string)
}

/// A user as the storage files it (see the module docs).
fn scoped(prefix: &str, user: &[u8]) -> std::result::Result<String, Reply> {
  let user = std::str::from_utf8(user).map_err(|_| bad(Code::InvalidArgument, "a user must be UTF-8"))?;
  check_user(user).map_err(store_error)?;
  Ok(format!("{}:{prefix}{user}", prefix.len()))
}

/// `''`, or a whole number from `min` to `max`.
fn optional(arg: &[u8], min: u64, max: u64, code: Code, what: &str) -> std::result::Result<Option<u64>, Reply> {
  if arg.is_empty() {
    return Ok(None);
  }
  match std::str::from_utf8(arg).ok().and_then(|s| s.parse::<u64>().ok()) {
    Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
    _ => Err(bad(code, format!("{what} must be '' (none) or a whole number from {min} to {max}, got {:?}", String::from_utf8_lossy(arg)))),
  }
}

/// Every per-user op runs with the users flag set: the storage keeps a
/// session's user and absolute end for it.
async fn under(s: &dyn Backend, rules: UserRules, op: Op) -> Result<Answer> {
  let rules = UserRules { users: true, ..rules };
  s.exec_under(rules, vec![op]).await.pop().unwrap_or_else(|| Err(StoreError::new(Code::Internal, "no reply")))
}

/// `UWRITE prefix id value ttl-ms cond owner max-lifetime-ms max-sessions`:
/// a write as the Redis write script takes it (`''` for none; cond `NX`,
/// `XX` or `''`; owner `k` keep, `a` anonymous, `u<user>`).
async fn uwrite(s: &dyn Backend, max_value: usize, a: &[Vec<u8>]) -> Answered {
  let prefix = text(&a[0])?;
  let k = session_key(prefix, &a[1])?;
  if a[2].len() > max_value {
    return Err(bad(Code::SessionTooLarge, format!("values are at most {max_value} bytes")));
  }
  let at = optional(&a[3], 1, u64::MAX, Code::InvalidTimeout, "the ttl (ms)")?.map(after_ms);
  let cond = match &a[4][..] {
    b"" => None,
    c if c.eq_ignore_ascii_case(b"NX") => Some(Cond::Absent),
    c if c.eq_ignore_ascii_case(b"XX") => Some(Cond::Present),
    c => return Err(bad(Code::InvalidArgument, format!("cond must be NX, XX or '', got {:?}", String::from_utf8_lossy(c)))),
  };
  let owner = match a[5].split_first() {
    Some((b'k', [])) => None,
    Some((b'a', [])) => Some(None),
    Some((b'u', user)) => Some(Some(scoped(prefix, user)?)),
    _ => return Err(bad(Code::InvalidArgument, "owner must be k (keep), a (anonymous) or u<user>")),
  };
  let rules = UserRules {
    users: true,
    max_lifetime_ms: optional(&a[6], 1, u64::MAX, Code::InvalidOption, "maxLifetime (ms)")?,
    max_per_user: optional(&a[7], 1, u32::MAX as u64, Code::InvalidOption, "maxSessionsPerUser")?.map(|n| n as u32),
  };
  let value = a[2].clone();
  let op = match (owner, cond) {
    (None, None) => Op::Set(k, value, at),
    (None, Some(c)) => Op::SetIf(k, value, at, c),
    (Some(user), cond) => Op::Write(k, value, at, cond, user),
  };
  match under(s, rules, op).await.map_err(store_error)? {
    Answer::Bool(written) => Ok(Reply::bool(written)),
    _ => Ok(Reply::bool(true)),
  }
}

/// `SESSIONSOF prefix user`: `[id, value, pttl, …]`, least recently written first.
async fn sessions_of(s: &dyn Backend, a: &[Vec<u8>]) -> Answered {
  let prefix = text(&a[0])?;
  let op = Op::SessionsOf(scoped(prefix, &a[1])?);
  let (_, list) = under(s, UserRules::default(), op).await.and_then(Answer::into_page).map_err(store_error)?;
  let mut out = Vec::with_capacity(list.len() * 3);
  for (k, v, ttl) in list {
    let Some(id) = k.strip_prefix(prefix) else { continue };
    out.push(Reply::Bulk(Some(id.as_bytes().to_vec())));
    out.push(Reply::Bulk(Some(v)));
    out.push(Reply::Int(ttl.pttl()));
  }
  Ok(Reply::Array(out))
}

/// `REVOKEUSER prefix user [keep-id …]`: how many were removed. The ids
/// to keep, each counted with the prefix it is stored under, total at most
/// `max_value` bytes, checked before any key is built: the prefix arrives
/// once but each key repeats it, so many one-byte ids under a long prefix
/// would otherwise make the daemon build ~600× the request's size.
async fn revoke(s: &dyn Backend, max_value: usize, a: &[Vec<u8>]) -> Answered {
  let prefix = text(&a[0])?;
  let user = scoped(prefix, &a[1])?;
  let ids = &a[2..];
  let total = ids.iter().fold(0usize, |n, id| n.saturating_add(prefix.len() + id.len()));
  if total > max_value {
    let msg = format!("the ids to keep, each with the prefix, are at most {max_value} bytes in all, got {total} ({} ids)", ids.len());
    return Err(bad(Code::InvalidArgument, msg));
  }
  let keep = ids.iter().map(|id| session_key(prefix, id)).collect::<std::result::Result<Vec<_>, _>>()?;
  let n = under(s, UserRules::default(), Op::RevokeUser(user, keep)).await.and_then(Answer::into_count).map_err(store_error)?;
  Ok(Reply::Int(n as i64))
}

/// `ROTATE prefix old new [sha256-hex value]`: `1` moved, `0` not (old
/// missing, new taken). With the digest of the value the client read and
/// the value it re-encoded for the new id (the codec binds a session to
/// its id), it moves only if the session still holds what was read, else
/// answers `-1` (read again). A digest, not the value read, keeps the
/// request within one value's bound. The value is held to `max_value` as
/// `UWRITE`'s is (the request's bound leaves room for two keys besides).
async fn rotate(s: &dyn Backend, max_value: usize, a: &[Vec<u8>]) -> Answered {
  let prefix = text(&a[0])?;
  let (old, new) = (session_key(prefix, &a[1])?, session_key(prefix, &a[2])?);
  if a.get(4).is_some_and(|value| value.len() > max_value) {
    return Err(bad(Code::SessionTooLarge, format!("values are at most {max_value} bytes")));
  }
  let changed = Arc::new(AtomicBool::new(false));
  let recode = match a.get(3..5) {
    None => None,
    Some([read_digest, value]) => {
      let expected = std::str::from_utf8(read_digest)
        .ok()
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad(Code::InvalidArgument, "the digest of the value read must be 64 hex digits (SHA-256)"))?
        .to_ascii_lowercase();
      let (value, changed) = (value.clone(), changed.clone());
      Some(Recode(Arc::new(move |_: &str, _: &str, read: Vec<u8>| {
        if digest(&read) == expected {
          return Ok(value.clone());
        }
        changed.store(true, Ordering::Relaxed);
        Err(StoreError::new(Code::Internal, "changed since it was read"))
      })))
    }
    Some(_) => unreachable!("3 or 5 arguments"),
  };
  match under(s, UserRules::default(), Op::Rotate(old, new, recode)).await.and_then(Answer::into_bool) {
    Ok(moved) => Ok(Reply::bool(moved)),
    Err(_) if changed.load(Ordering::Relaxed) => Ok(Reply::Int(-1)),
    Err(e) => Err(store_error(e)),
  }
}
