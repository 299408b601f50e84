//! Per-user sessions in the daemon dialect (`rs.daemon()`): the daemon runs
//! no Lua, so each step the Redis scripts take (src/backend/redis/users.rs)
//! is one daemon command with the same arguments, prefix first, and the
//! same reply (src/daemon/users.rs answers them):
//!
//! - `UWRITE prefix id value ttl-ms cond owner max-lifetime-ms max-sessions`
//!   for every write of a store with rules (`''` for none; owner `k` keeps
//!   the session's user, `a` anonymous, `u<user>`): the rules are this
//!   client's options, sent with each write;
//! - `SESSIONSOF prefix user`, `REVOKEUSER prefix user keep-id…`,
//!   `ROTATE prefix old new` (with a codec also the SHA-256 of the value
//!   read and the value re-encoded for the new id: `-1` when it changed).
//!
//! Removals and touches stay `UNLINK` and `PEXPIRE`: the daemon's storage
//! takes a removed session out of its user's list, and never lets a touch
//! pass a session's absolute end, whoever sends it.

use redis::Cmd;
use sha2::{Digest, Sha256};

use super::Commands;
use crate::backend::{Kind, Op, Owner, Put};

impl Commands {
  /// Whether a connection loads the Redis scripts when it opens: a store
  /// with rules on Redis (the daemon has its own commands).
  pub(crate) fn loads_scripts(&self) -> bool {
    self.rules.any() && !self.daemon
  }

  /// The daemon command of `op` into `cmd` (cleared first), when it is a
  /// per-user op or a write of a store with rules; false otherwise (its
  /// plain commands serve).
  pub(crate) fn daemon_users(&self, op: &Op, now: u64, cmd: &mut Cmd) -> bool {
    cmd.clear();
    match op.kind() {
      // A plain write keeps the session's user (`k`); without rules it is a plain SET.
      Kind::Write(Put { owner: Owner::Keep, .. }) if !self.rules.any() => return false,
      Kind::Write(put) => {
        cmd.arg("UWRITE").arg(&self.prefix);
        self.write_args(&put, now, cmd);
      }
      Kind::SessionsOf(user) => {
        cmd.arg("SESSIONSOF").arg(&self.prefix).arg(user);
      }
      Kind::RevokeUser(user, keep) => {
        cmd.arg("REVOKEUSER").arg(&self.prefix).arg(user).arg(keep);
      }
      Kind::Rotate(old, new, recode) => {
        debug_assert!(recode.is_none(), "a re-encoded rotation is rotate_cas");
        cmd.arg("ROTATE").arg(&self.prefix).arg(old).arg(new);
      }
      Kind::Read(_) | Kind::Remove(_) | Kind::Touch(..) | Kind::Lock(_) | Kind::Walk | Kind::Clear | Kind::Ping => return false,
    }
    true
  }

  /// The daemon's compare-and-set rotation (see [`Commands::rotate_cas`]):
  /// the digest of the value read stands for it, so the request carries
  /// one value, within the daemon's bound on a request.
  pub(crate) fn daemon_rotate_cas(&self, old: &str, new: &str, read: &[u8], value: &[u8], cmd: &mut Cmd) {
    cmd.clear();
    cmd.arg("ROTATE").arg(&self.prefix).arg(old).arg(new).arg(digest(read)).arg(value);
  }
}

/// The SHA-256 of a stored value, in lowercase hex.
pub(crate) fn digest(value: &[u8]) -> String {
  Sha256::digest(value).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::{Cond, UserRules};

  fn args(cmd: &Cmd) -> Vec<String> {
    let v: Vec<Vec<u8>> = redis::from_redis_value(redis::parse_redis_value(&cmd.get_packed_command()).unwrap()).unwrap();
    v.into_iter().map(|a| String::from_utf8_lossy(&a).to_string()).collect()
  }

  #[test]
  fn daemon_commands_carry_the_rules() {
    let rules = UserRules { users: true, max_per_user: Some(3), max_lifetime_ms: Some(5000) };
    let d = Commands { prefix: "s:".into(), daemon: true, rules };
    let mut cmd = Cmd::new();
    assert!(d.daemon_users(&Op::Write("a".into(), b"{}".to_vec(), Some(10_000), Some(Cond::Present), Some("ada".into())), 9_000, &mut cmd));
    assert_eq!(args(&cmd), ["UWRITE", "s:", "a", "{}", "1000", "XX", "uada", "5000", "3"]);
    assert!(d.daemon_users(&Op::Set("a".into(), b"{}".to_vec(), None), 0, &mut cmd));
    assert_eq!(args(&cmd), ["UWRITE", "s:", "a", "{}", "", "", "k", "5000", "3"]);
    assert!(d.daemon_users(&Op::SetIf("a".into(), b"{}".to_vec(), None, Cond::Absent), 0, &mut cmd));
    assert_eq!(args(&cmd), ["UWRITE", "s:", "a", "{}", "", "NX", "k", "5000", "3"]);
    assert!(d.daemon_users(&Op::Write("a".into(), b"{}".to_vec(), Some(500), None, None), 0, &mut cmd));
    assert_eq!(args(&cmd), ["UWRITE", "s:", "a", "{}", "500", "", "a", "5000", "3"]);
    assert!(d.daemon_users(&Op::RevokeUser("ada".into(), vec!["x".into(), "y".into()]), 0, &mut cmd));
    assert_eq!(args(&cmd), ["REVOKEUSER", "s:", "ada", "x", "y"]);
    assert!(!d.daemon_users(&Op::Remove("a".into()), 0, &mut cmd), "a removal is UNLINK");
    d.daemon_rotate_cas("a", "b", b"old", b"new", &mut cmd);
    assert_eq!(args(&cmd), ["ROTATE", "s:", "a", "b", &digest(b"old"), "new"]);
    // a client without rules sends its plain SET
    let plain = Commands { prefix: "s:".into(), daemon: true, rules: UserRules::default() };
    assert!(!plain.daemon_users(&Op::Set("a".into(), b"{}".to_vec(), None), 0, &mut cmd));
    assert!(!plain.daemon_users(&Op::SetIf("a".into(), b"{}".to_vec(), None, Cond::Present), 0, &mut cmd));
    assert!(plain.daemon_users(&Op::Write("a".into(), b"{}".to_vec(), None, Some(Cond::Present), Some("ada".into())), 0, &mut cmd));
    assert_eq!(args(&cmd), ["UWRITE", "s:", "a", "{}", "", "XX", "uada", "", ""]);
    assert!(plain.daemon_users(&Op::Rotate("a".into(), "b".into(), None), 0, &mut cmd));
    assert_eq!(args(&cmd), ["ROTATE", "s:", "a", "b"]);
  }
}
