//! The daemon's lock table: one table for the whole daemon (every client
//! connection sees the same locks, unlike HTTP Sessions' daemon, which kept
//! them per connection so two clients could both "hold" one lock), and a
//! lock dies with the connection that took it.

use std::collections::HashMap;

use parking_lot::Mutex;

struct Holder {
  conn: u64,
  token: Vec<u8>,
}

#[derive(Default)]
pub struct LockTable {
  held: Mutex<HashMap<Vec<u8>, Holder>>,
}

impl LockTable {
  /// Takes `key` for (`conn`, `token`) when free; true when taken (or when
  /// this very holder asks again).
  pub fn lock(&self, conn: u64, key: &[u8], token: &[u8]) -> bool {
    let mut held = self.held.lock();
    match held.get(key) {
      Some(h) => h.conn == conn && h.token == token,
      None => {
        held.insert(key.to_vec(), Holder { conn, token: token.to_vec() });
        true
      }
    }
  }

  /// Releases `key` when `token` holds it.
  pub fn unlock(&self, key: &[u8], token: &[u8]) -> bool {
    let mut held = self.held.lock();
    if held.get(key).is_some_and(|h| h.token == token) {
      held.remove(key);
      true
    } else {
      false
    }
  }

  /// Does `token` (still) hold `key`?
  pub fn holds(&self, key: &[u8], token: &[u8]) -> bool {
    self.held.lock().get(key).is_some_and(|h| h.token == token)
  }

  /// Drops every lock of a closed connection; answers how many.
  pub fn release_conn(&self, conn: u64) -> usize {
    let mut held = self.held.lock();
    let before = held.len();
    held.retain(|_, h| h.conn != conn);
    before - held.len()
  }

  pub fn len(&self) -> usize {
    self.held.lock().len()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn one_holder_across_connections_and_freed_on_disconnect() {
    let t = LockTable::default();
    assert!(t.lock(1, b"k", b"a"));
    assert!(!t.lock(2, b"k", b"b"), "another connection cannot take a held lock");
    assert!(t.lock(1, b"k", b"a"), "re-asking holder keeps it");
    assert!(!t.unlock(b"k", b"b"));
    assert!(t.holds(b"k", b"a"));
    assert_eq!(t.release_conn(1), 1);
    assert!(!t.holds(b"k", b"a"));
    assert!(t.lock(2, b"k", b"b"));
    assert!(t.unlock(b"k", b"b"));
    assert_eq!(t.len(), 0);
  }
}
