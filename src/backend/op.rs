//! The operations every backend answers, as data: [`Op`] in, [`Reply`] out.
//! JS calls name an op and pass up to three arguments ([`Op::from_call`]);
//! the `#[napi]` layer and the engines pass ops on without knowing them.

use crate::error::{Code, Result, StoreError};
use crate::expiry::{after_ms, now_ms, Expiry};

/// Longest accepted session id, in UTF-8 bytes.
pub const MAX_ID_BYTES: usize = 1024;

/// What `ttl` reports for one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
  /// No such (live) entry.
  Missing,
  /// The entry never expires.
  Persistent,
  /// The entry expires at this absolute time (epoch ms).
  At(Expiry),
}

impl Ttl {
  /// As Redis's PTTL answers: `-2` missing, `-1` no expiry, else ms left.
  pub fn pttl(self) -> i64 {
    match self {
      Ttl::Missing => -2,
      Ttl::Persistent => -1,
      Ttl::At(at) => at.saturating_sub(now_ms()) as i64,
    }
  }
}

/// When a conditional set writes: Redis's `SET … NX` and `SET … XX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
  /// Only when no live entry has the id (`add`).
  Absent,
  /// Only when a live entry has the id (`replace`): never recreates a
  /// session removed meanwhile.
  Present,
}

/// One operation of a batch (see [`Backend::exec`]).
#[derive(Debug, Clone)]
pub enum Op {
  Get(String),
  Set(String, Vec<u8>, Option<Expiry>),
  /// Set only when `Cond` holds; answers `Bool(true)` when written.
  SetIf(String, Vec<u8>, Option<Expiry>, Cond),
  Remove(String),
  Touch(String, Option<Expiry>),
  Ttl(String),
  Exists(String),
  Len,
  Clear,
  Keys,
  Entries,
  /// Up to `count` live sessions after `cursor` (`""`: from the start), for
  /// walking a store of any size with bounded memory (the CLI).
  Page(String, u32),
  /// Take the lock of an id if it is free: (id, token, ttl ms). The lock
  /// contract every backend with locks meets: a lock is taken only when
  /// free or its ttl has run out; only its token releases or renews it;
  /// it ends at its ttl; a closed store holds none (lib/lock.js releases
  /// what a store's manager holds on `close()`). Where each backend keeps
  /// them: docs/backends.md, "Locks".
  Lock(String, String, u64),
  /// Release the lock if `token` still holds it.
  Unlock(String, String),
  /// Extend the lock to `ttl ms` from now if `token` still holds it.
  Renew(String, String, u64),
  /// A write of a store with per-user sessions (`userOf`): as `Set` (no
  /// `Cond`) or `SetIf`, and in the same atomic step the session is filed
  /// under its user (`None`: anonymous, out of any user's list), the
  /// user's least recently written sessions beyond `maxSessionsPerUser`
  /// removed. (`Set`/`SetIf`/`Touch` leave a session's user as it is.)
  Write(String, Vec<u8>, Option<Expiry>, Option<Cond>, Option<String>),
  /// A user's live sessions with their ttl: `Reply::Page` with no next page.
  SessionsOf(String),
  /// Removes every session of a user but the ids given; `Count` removed.
  RevokeUser(String, Vec<String>),
  /// Moves a live session to an id no live session has: its data, expiry,
  /// user and absolute end, in one atomic step; `Bool`. With a codec the
  /// value is re-encoded for the new id ([`Recode`]).
  Rotate(String, String, Option<Recode>),
  /// A round trip to where the sessions are (a Redis `PING`, a PostgreSQL
  /// `SELECT 1`, a look at the directory or bucket), answering `Done`; for
  /// health checks (`store.ping()`), so it fails as a call to a store that
  /// is down would.
  Ping,
}

/// How a value encoded for one id becomes the value for another (the
/// codec binds a session to its id), for [`Op::Rotate`].
#[derive(Clone)]
pub struct Recode(pub std::sync::Arc<RecodeFn>);

/// (old id, new id, value encoded for the old id) → the value for the new id.
pub type RecodeFn = dyn Fn(&str, &str, Vec<u8>) -> Result<Vec<u8>> + Send + Sync;

impl std::fmt::Debug for Recode {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str("Recode")
  }
}

/// Options of per-user sessions a store was made with (JS: `userOf`,
/// `maxSessionsPerUser`, `maxLifetime`), enforced by the backend in the
/// same atomic step as the write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRules {
  /// Writes carry their user (`userOf` given).
  pub users: bool,
  /// Most live sessions one user keeps.
  pub max_per_user: Option<u32>,
  /// Absolute lifetime from a session's first write, in ms.
  pub max_lifetime_ms: Option<u64>,
}

impl UserRules {
  /// Whether the store was made with any of them (else it pays nothing).
  pub fn any(&self) -> bool {
    self.users || self.max_per_user.is_some() || self.max_lifetime_ms.is_some()
  }
  /// The expiry a write or touch may give a session whose absolute end is `end`.
  pub fn clamp(end: Option<Expiry>, at: Option<Expiry>) -> Option<Expiry> {
    match (end, at) {
      (Some(e), Some(a)) => Some(e.min(a)),
      (Some(e), None) => Some(e),
      (None, a) => a,
    }
  }
  /// The absolute end of a session first written now.
  pub fn end_from_now(&self) -> Option<Expiry> {
    self.max_lifetime_ms.map(after_ms)
  }
}

/// An op by what it does, its parts borrowed, for the sites that treat
/// several ops alike (the op's id, user and changes below; the Redis
/// scripts, the daemon dialect, a cluster's steps, the whole-store runs).
/// [`Op::kind`] is the one match that names every op for them; their
/// matches on a `Kind` are exhaustive too, so a new op is classified there
/// once, and a new kind makes the compiler list every site.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
  /// `Get`, `Ttl`, `Exists`: read one session.
  Read(&'a str),
  /// `Set`, `SetIf`, `Write`: write one session.
  Write(Put<'a>),
  Remove(&'a str),
  /// `Touch`: a new expiry (`None`: none).
  Touch(&'a str, Option<Expiry>),
  /// `Lock`, `Unlock`, `Renew`: locks live apart from the sessions.
  Lock(&'a str),
  /// `Len`, `Keys`, `Entries`, `Page`: read the whole store.
  Walk,
  /// `Clear`: a walk that removes.
  Clear,
  /// A user's sessions.
  SessionsOf(&'a str),
  /// A user, and the ids to keep.
  RevokeUser(&'a str, &'a [String]),
  /// Old id, new id, and with a codec how the value is re-encoded.
  Rotate(&'a str, &'a str, Option<&'a Recode>),
  Ping,
}

/// A write, as `Set`, `SetIf` and `Write` all are.
#[derive(Debug, Clone, Copy)]
pub struct Put<'a> {
  pub id: &'a str,
  pub value: &'a [u8],
  pub at: Option<Expiry>,
  /// `SetIf`'s, or a `Write`'s.
  pub cond: Option<Cond>,
  pub owner: Owner<'a>,
}

/// Whose session a write leaves: `Set`/`SetIf` keep its user, a `Write`
/// names one, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
  Keep,
  Anonymous,
  User(&'a str),
}

impl Op {
  /// What the op does (see [`Kind`]).
  #[inline]
  pub fn kind(&self) -> Kind<'_> {
    match self {
      Op::Get(id) | Op::Ttl(id) | Op::Exists(id) => Kind::Read(id),
      Op::Set(id, value, at) => Kind::Write(Put { id, value, at: *at, cond: None, owner: Owner::Keep }),
      Op::SetIf(id, value, at, cond) => Kind::Write(Put { id, value, at: *at, cond: Some(*cond), owner: Owner::Keep }),
      Op::Write(id, value, at, cond, user) => {
        Kind::Write(Put { id, value, at: *at, cond: *cond, owner: user.as_deref().map_or(Owner::Anonymous, Owner::User) })
      }
      Op::Remove(id) => Kind::Remove(id),
      Op::Touch(id, at) => Kind::Touch(id, *at),
      Op::Lock(id, ..) | Op::Unlock(id, _) | Op::Renew(id, ..) => Kind::Lock(id),
      Op::Len | Op::Keys | Op::Entries | Op::Page(..) => Kind::Walk,
      Op::Clear => Kind::Clear,
      Op::SessionsOf(user) => Kind::SessionsOf(user),
      Op::RevokeUser(user, keep) => Kind::RevokeUser(user, keep),
      Op::Rotate(old, new, recode) => Kind::Rotate(old, new, recode.as_ref()),
      Op::Ping => Kind::Ping,
    }
  }

  /// The session id the op is about, or `None` for whole-store ops.
  #[inline]
  pub fn id(&self) -> Option<&str> {
    match self.kind() {
      Kind::Read(id) | Kind::Write(Put { id, .. }) | Kind::Remove(id) | Kind::Touch(id, _) | Kind::Lock(id) => Some(id),
      // A rotation is about two ids, a user's ops about many: each keeps
      // its batch in one group, in call order with the rest.
      Kind::Walk | Kind::Clear | Kind::SessionsOf(_) | Kind::RevokeUser(..) | Kind::Rotate(..) | Kind::Ping => None,
    }
  }

  /// The user a per-user write files its session under (grouping the
  /// writes of one user, see `shards_joined`).
  #[inline]
  pub fn user(&self) -> Option<&str> {
    match self.kind() {
      Kind::Write(Put { owner: Owner::User(user), .. }) => Some(user),
      Kind::Write(_) | Kind::Read(_) | Kind::Remove(_) | Kind::Touch(..) | Kind::Lock(_) | Kind::Walk | Kind::Clear => None,
      Kind::SessionsOf(_) | Kind::RevokeUser(..) | Kind::Rotate(..) | Kind::Ping => None,
    }
  }
}

/// A whole-store op, apart from the per-id ones: for engines that walk the
/// store in steps (the Redis JS-socket path), so that their matches list
/// every whole-store op and a new one cannot pass for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whole {
  Len,
  Clear,
  Keys,
  Entries,
  Page(String, u32),
}

impl Op {
  /// The whole-store op this is, or the per-id op back.
  pub fn into_whole(self) -> std::result::Result<Whole, Op> {
    match self {
      Op::Len => Ok(Whole::Len),
      Op::Clear => Ok(Whole::Clear),
      Op::Keys => Ok(Whole::Keys),
      Op::Entries => Ok(Whole::Entries),
      Op::Page(cursor, n) => Ok(Whole::Page(cursor, n)),
      op @ (Op::Get(_) | Op::Set(..) | Op::SetIf(..) | Op::Remove(_) | Op::Touch(..) | Op::Ttl(_) | Op::Exists(_)) => Err(op),
      op @ (Op::Lock(..) | Op::Unlock(..) | Op::Renew(..)) => Err(op),
      // Per-user ops are answered by the backends that have them, never walked.
      op @ (Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..)) => Err(op),
      // One command, not a walk.
      op @ Op::Ping => Err(op),
    }
  }
}

/// A page of a walk: the next cursor (`""` after the last page) and the
/// sessions with their ttl.
pub type Page = (String, Vec<(String, Vec<u8>, Ttl)>);

/// The answer to one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
  Value(Option<Vec<u8>>),
  Bool(bool),
  Ttl(Ttl),
  Count(u64),
  Keys(Vec<String>),
  Entries(Vec<(String, Vec<u8>)>),
  /// A page of sessions with their ttl, and the cursor of the next page
  /// (`""` when this was the last).
  Page(String, Vec<(String, Vec<u8>, Ttl)>),
  Done,
}

impl Reply {
  fn unexpected(self) -> StoreError {
    StoreError::new(Code::Internal, format!("unexpected reply {self:?}"))
  }
}

/// `Reply::into_value(self) -> Result<Option<Vec<u8>>>` and the like: the
/// reply of the shape an op answers, else `ERR_INTERNAL`.
macro_rules! into_shape {
  ($($name:ident: $variant:ident($($part:ident),+) -> $t:ty;)*) => {
    impl Reply {
      $(
        pub fn $name(self) -> Result<$t> {
          if let Reply::$variant($($part),+) = self {
            Ok(($($part),+))
          } else {
            Err(self.unexpected())
          }
        }
      )*
    }
  };
}

into_shape! {
  into_value: Value(v) -> Option<Vec<u8>>;
  into_bool: Bool(b) -> bool;
  into_ttl: Ttl(t) -> Ttl;
  into_count: Count(n) -> u64;
  into_keys: Keys(k) -> Vec<String>;
  into_entries: Entries(e) -> Vec<(String, Vec<u8>)>;
  into_page: Page(next, page) -> Page;
}

/// What an op changes, for engines that answer some reads without the
/// backend (the file store's fast reads wait for pending changes of an id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changes {
  Nothing = 0,
  Its = 1,
  All = 2,
}

impl Op {
  /// The op a JS call names, its arguments checked: `id` is the session id
  /// (`page`: the cursor), `text` the session's JSON (`lock`, `unlock`,
  /// `renew`: the lock's token), `ms` a ttl in ms from now (`undefined`:
  /// never expires; `page`: how many sessions). A ttl that has run out makes
  /// `set`, `replace` and `touch` a `remove`.
  pub fn from_call(name: &str, id: Option<String>, text: Option<Vec<u8>>, ms: Option<f64>) -> Result<Op> {
    let need = |what: &str| StoreError::new(Code::InvalidArgument, format!("{name}() needs {what}"));
    let id_of = |id: Option<String>| -> Result<String> {
      let id = id.ok_or_else(|| need("a session id"))?;
      check_id(&id)?;
      Ok(id)
    };
    let session = |t: Option<Vec<u8>>| t.ok_or_else(|| need("the session text"));
    let token = |t: Option<Vec<u8>>| String::from_utf8(t.ok_or_else(|| need("a lock token"))?).map_err(|_| need("a lock token"));
    Ok(match name {
      "get" => Op::Get(id_of(id)?),
      "set" => match expiry_for(ms)? {
        _ if ms == Some(0.0) => Op::Remove(id_of(id)?),
        at => Op::Set(id_of(id)?, session(text)?, at),
      },
      "add" => set_if(id_of(id)?, session(text)?, ms, Cond::Absent)?,
      "replace" => set_if(id_of(id)?, session(text)?, ms, Cond::Present)?,
      "remove" => Op::Remove(id_of(id)?),
      "touch" => match expiry_for(ms)? {
        _ if ms == Some(0.0) => Op::Remove(id_of(id)?),
        at => Op::Touch(id_of(id)?, at),
      },
      "ttl" => Op::Ttl(id_of(id)?),
      "exists" => Op::Exists(id_of(id)?),
      "len" => Op::Len,
      "clear" => Op::Clear,
      "keys" => Op::Keys,
      "entries" => Op::Entries,
      "page" => Op::Page(id.unwrap_or_default(), ms.map_or(1, |n| (n.clamp(1.0, u32::MAX as f64) as u32).max(1))),
      "lock" => Op::Lock(id_of(id)?, token(text)?, lock_ttl(ms)?),
      "unlock" => Op::Unlock(id_of(id)?, token(text)?),
      "renew" => Op::Renew(id_of(id)?, token(text)?, lock_ttl(ms)?),
      // text: the session's JSON, a NUL, the user ("": anonymous); JSON
      // text never holds a NUL, nor does a user (lib/store.js checks).
      "uset" | "uadd" | "ureplace" => {
        let (value, user) = split_user(session(text)?)?;
        let cond = match name {
          "uadd" => Some(Cond::Absent),
          "ureplace" => Some(Cond::Present),
          _ => None,
        };
        match expiry_for(ms)? {
          _ if ms == Some(0.0) && cond != Some(Cond::Absent) => Op::Remove(id_of(id)?),
          _ if ms == Some(0.0) => return Err(StoreError::new(Code::InvalidTimeout, "add() needs a timeout in the future")),
          at => Op::Write(id_of(id)?, value, at, cond, user),
        }
      }
      "sessionsOf" => Op::SessionsOf(user_of(id, name)?),
      // text: the ids to keep, as a JSON array of strings.
      "revokeUser" => {
        let except: Vec<String> = match text {
          None => Vec::new(),
          Some(t) => serde_json::from_slice(&t).map_err(|_| need("the ids to keep as a JSON array of strings"))?,
        };
        Op::RevokeUser(user_of(id, name)?, except)
      }
      // text: the new id.
      "ping" => Op::Ping,
      "rotate" => {
        let new = String::from_utf8(text.ok_or_else(|| need("the new id"))?).map_err(|_| need("the new id"))?;
        check_id(&new)?;
        Op::Rotate(id_of(id)?, new, None)
      }
      _ => return Err(StoreError::new(Code::InvalidArgument, format!("unknown operation {name:?}"))),
    })
  }

  /// The session value an op writes, with its id (to encode it, or to drop
  /// it once sent).
  pub fn value_mut(&mut self) -> Option<(&str, &mut Vec<u8>)> {
    match self {
      Op::Set(id, v, _) | Op::SetIf(id, v, ..) | Op::Write(id, v, ..) => Some((id, v)),
      // Reads and other changes of one id, locks, walks, a user's ops.
      Op::Get(_) | Op::Ttl(_) | Op::Exists(_) | Op::Remove(_) | Op::Touch(..) | Op::Lock(..) | Op::Unlock(..) | Op::Renew(..) => None,
      Op::Len | Op::Clear | Op::Keys | Op::Entries | Op::Page(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) | Op::Ping => {
        None
      }
    }
  }

  pub fn changes(&self) -> Changes {
    match self.kind() {
      Kind::Write(_) | Kind::Remove(_) | Kind::Touch(..) => Changes::Its,
      Kind::Clear | Kind::RevokeUser(..) | Kind::Rotate(..) => Changes::All,
      // Locks live apart from the sessions (docs/backends.md, "Locks").
      Kind::Read(_) | Kind::Lock(_) | Kind::Walk | Kind::SessionsOf(_) | Kind::Ping => Changes::Nothing,
    }
  }
}

/// A session's JSON and its user, as `uset` carries them (see [`Op::from_call`]).
fn split_user(mut text: Vec<u8>) -> Result<(Vec<u8>, Option<String>)> {
  let at = text.iter().rposition(|&b| b == 0).ok_or_else(|| StoreError::new(Code::InvalidArgument, "a per-user write needs its user"))?;
  let user = text.split_off(at);
  text.truncate(at);
  let user = String::from_utf8(user[1..].to_vec()).map_err(|_| StoreError::new(Code::InvalidArgument, "user is not UTF-8"))?;
  if user.is_empty() {
    return Ok((text, None));
  }
  check_user(&user)?;
  Ok((text, Some(user)))
}

fn user_of(user: Option<String>, name: &str) -> Result<String> {
  let user = user.ok_or_else(|| StoreError::new(Code::InvalidArgument, format!("{name}() needs a user")))?;
  check_user(&user)?;
  Ok(user)
}

/// A user as the index keeps it: not empty, at most [`MAX_ID_BYTES`].
pub fn check_user(user: &str) -> Result<()> {
  if user.is_empty() || user.len() > MAX_ID_BYTES || user.contains('\0') {
    return Err(StoreError::new(
      Code::InvalidArgument,
      format!("a user must be a non-empty string of at most {MAX_ID_BYTES} bytes without NUL"),
    ));
  }
  Ok(())
}

/// An id that can name a stored session: not empty, at most
/// [`MAX_ID_BYTES`]. (Reads of other ids answer "missing" in the JS facade,
/// which never passes them here.)
pub fn check_id(id: &str) -> Result<()> {
  if id.is_empty() {
    return Err(StoreError::new(Code::InvalidId, "session id must not be empty"));
  }
  if id.len() > MAX_ID_BYTES {
    return Err(StoreError::new(Code::InvalidId, format!("session id is {} bytes; at most {MAX_ID_BYTES} are allowed", id.len())));
  }
  Ok(())
}

/// `None` = never expires. A ttl of 0 is an expiry in the past (and set,
/// touch, replace with it remove the session: no clock read needed).
pub fn expiry_for(ttl_ms: Option<f64>) -> Result<Option<Expiry>> {
  match ttl_ms {
    None => Ok(None),
    Some(t) if t.is_nan() || t < 0.0 => Err(StoreError::new(Code::InvalidTimeout, format!("ttl must be a number >= 0, got {t}"))),
    Some(t) if t.is_infinite() => Ok(None),
    // `as u64` saturates, and after_ms saturates: no overflow for huge ttls.
    Some(t) => Ok(Some(after_ms(t.ceil() as u64))),
  }
}

/// A conditional set. A timeout that has already run out removes on
/// `replace` (as `set` does) and is refused on `add`, which writes or does
/// nothing (the facade answers `false` for it itself).
fn set_if(id: String, value: Vec<u8>, ttl_ms: Option<f64>, cond: Cond) -> Result<Op> {
  match expiry_for(ttl_ms)? {
    _ if ttl_ms == Some(0.0) => match cond {
      Cond::Present => Ok(Op::Remove(id)),
      Cond::Absent => Err(StoreError::new(Code::InvalidTimeout, "add() needs a timeout in the future")),
    },
    at => Ok(Op::SetIf(id, value, at, cond)),
  }
}

/// A lock's ttl in ms: at least 1 (huge values are clamped, never overflow).
fn lock_ttl(ttl_ms: Option<f64>) -> Result<u64> {
  let t = ttl_ms.unwrap_or(f64::NAN);
  // Written so that NaN is refused too.
  #[allow(clippy::neg_cmp_op_on_partial_ord)]
  if !(t >= 1.0) {
    return Err(StoreError::new(Code::InvalidTimeout, format!("lock ttl must be a number >= 1 ms, got {t}")));
  }
  Ok(t.min(1e15) as u64)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn id_rules() {
    assert!(check_id("abc").is_ok());
    assert_eq!(check_id("").unwrap_err().code, Code::InvalidId);
    assert!(check_id(&"x".repeat(MAX_ID_BYTES)).is_ok());
    assert_eq!(check_id(&"x".repeat(MAX_ID_BYTES + 1)).unwrap_err().code, Code::InvalidId);
    // bytes, not chars: 400 three-byte chars are over the limit
    assert!(check_id(&"€".repeat(400)).is_err());
  }

  #[test]
  fn ttl_rules() {
    assert_eq!(expiry_for(None).unwrap(), None);
    assert_eq!(expiry_for(Some(f64::INFINITY)).unwrap(), None);
    assert_eq!(expiry_for(Some(f64::NAN)).unwrap_err().code, Code::InvalidTimeout);
    assert_eq!(expiry_for(Some(-1.0)).unwrap_err().code, Code::InvalidTimeout);
    let at = expiry_for(Some(1000.0)).unwrap().unwrap();
    assert!(at >= now_ms() + 999 && at <= now_ms() + 1000);
    assert_eq!(expiry_for(Some(1e300)).unwrap(), Some(u64::MAX));
  }

  #[test]
  fn calls() {
    let call = |name: &str, id: Option<&str>, text: Option<&str>, ms: Option<f64>| {
      Op::from_call(name, id.map(str::to_string), text.map(|t| t.as_bytes().to_vec()), ms)
    };
    assert!(matches!(call("set", Some("a"), Some("{}"), Some(1000.0)), Ok(Op::Set(..))));
    assert!(matches!(call("set", Some("a"), Some("{}"), Some(0.0)), Ok(Op::Remove(_))));
    assert!(matches!(call("replace", Some("a"), Some("{}"), Some(0.0)), Ok(Op::Remove(_))));
    assert_eq!(call("add", Some("a"), Some("{}"), Some(0.0)).unwrap_err().code, Code::InvalidTimeout);
    assert!(matches!(call("add", Some("a"), Some("{}"), None), Ok(Op::SetIf(_, _, None, Cond::Absent))));
    assert_eq!(call("get", Some(""), None, None).unwrap_err().code, Code::InvalidId);
    assert_eq!(call("set", Some("a"), None, None).unwrap_err().code, Code::InvalidArgument);
    assert_eq!(call("lock", Some("a"), Some("t"), Some(0.5)).unwrap_err().code, Code::InvalidTimeout);
    assert!(matches!(call("lock", Some("a"), Some("t"), Some(1e300)), Ok(Op::Lock(_, _, 1_000_000_000_000_000))));
    assert!(matches!(call("page", None, None, Some(0.0)), Ok(Op::Page(c, 1)) if c.is_empty()));
    assert_eq!(call("frobnicate", None, None, None).unwrap_err().code, Code::InvalidArgument);
    assert_eq!(call("clear", None, None, None).unwrap().changes(), Changes::All);
    assert_eq!(call("touch", Some("a"), None, None).unwrap().changes(), Changes::Its);
    // per-user writes: the JSON, a NUL, the user ("" anonymous)
    assert!(matches!(call("uset", Some("a"), Some("{\"u\":1}\0ada"), Some(1000.0)),
      Ok(Op::Write(_, v, Some(_), None, Some(u))) if v == b"{\"u\":1}" && u == "ada"));
    assert!(matches!(call("ureplace", Some("a"), Some("{}\0"), None), Ok(Op::Write(_, _, None, Some(Cond::Present), None))));
    assert!(matches!(call("ureplace", Some("a"), Some("{}\0u"), Some(0.0)), Ok(Op::Remove(_))));
    assert_eq!(call("uadd", Some("a"), Some("{}\0u"), Some(0.0)).unwrap_err().code, Code::InvalidTimeout);
    assert_eq!(call("uset", Some("a"), Some("{}"), None).unwrap_err().code, Code::InvalidArgument);
    assert!(matches!(call("revokeUser", Some("ada"), Some("[\"x\"]"), None), Ok(Op::RevokeUser(u, e)) if u == "ada" && e == ["x"]));
    assert_eq!(call("revokeUser", Some("ada"), Some("{}"), None).unwrap_err().code, Code::InvalidArgument);
    assert_eq!(call("sessionsOf", Some(""), None, None).unwrap_err().code, Code::InvalidArgument);
    assert!(matches!(call("rotate", Some("a"), Some("b"), None), Ok(Op::Rotate(o, n, None)) if o == "a" && n == "b"));
    assert_eq!(call("rotate", Some("a"), Some(""), None).unwrap_err().code, Code::InvalidId);
    let ping = call("ping", None, None, None).unwrap();
    assert!(matches!(ping, Op::Ping) && ping.id().is_none() && ping.changes() == Changes::Nothing);
    assert!(matches!(ping.into_whole(), Err(Op::Ping)), "a ping is one command, not a walk");
  }
}
