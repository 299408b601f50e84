//! The daemon's lock table: one table for the whole daemon (every client
//! connection sees the same locks, unlike HTTP Sessions' daemon, which kept
//! them per connection so two clients could both "hold" one lock). A lock
//! dies with the connection that took it or when its ttl runs out (the
//! lock contract every backend meets: a hung holder that keeps its
//! connection open does not hold a session forever).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::expiry::now_ms;

struct Holder {
  conn: u64,
  token: Vec<u8>,
  /// Epoch ms.
  expires: u64,
}

#[derive(Default)]
pub struct LockTable {
  held: Mutex<HashMap<Vec<u8>, Holder>>,
}

impl LockTable {
  /// Takes `key` for (`conn`, `token`) for `ttl_ms` when free (or its
  /// holder's ttl has run out); true when taken (or when this very holder
  /// asks again, which renews it).
  pub fn lock(&self, conn: u64, key: &[u8], token: &[u8], ttl_ms: u64) -> bool {
    let now = now_ms();
    let expires = now.saturating_add(ttl_ms);
    let mut held = self.held.lock();
    match held.get_mut(key) {
      Some(h) if h.expires > now => {
        let mine = h.conn == conn && h.token == token;
        if mine {
          h.expires = expires;
        }
        mine
      }
      _ => {
        held.insert(key.to_vec(), Holder { conn, token: token.to_vec(), expires });
        true
      }
    }
  }

  /// Extends `key` to `ttl_ms` from now when `token` still holds it.
  pub fn renew(&self, key: &[u8], token: &[u8], ttl_ms: u64) -> bool {
    let now = now_ms();
    match self.held.lock().get_mut(key) {
      Some(h) if h.token == token && h.expires > now => {
        h.expires = now.saturating_add(ttl_ms);
        true
      }
      _ => false,
    }
  }

  /// Releases `key` when `token` still holds it.
  /// An expired lock of `token` is dropped too, and answers false.
  pub fn unlock(&self, key: &[u8], token: &[u8]) -> bool {
    let mut held = self.held.lock();
    match held.get(key) {
      Some(h) if h.token == token => {
        let live = h.expires > now_ms();
        held.remove(key);
        live
      }
      _ => false,
    }
  }

  /// Drops every lock of a closed connection; answers how many.
  pub fn release_conn(&self, conn: u64) -> usize {
    let mut held = self.held.lock();
    let before = held.len();
    held.retain(|_, h| h.conn != conn);
    before - held.len()
  }

  /// Locks held now (for INFO).
  pub fn len(&self) -> usize {
    let now = now_ms();
    self.held.lock().values().filter(|h| h.expires > now).count()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn one_holder_across_connections_and_freed_on_disconnect() {
    let t = LockTable::default();
    assert!(t.lock(1, b"k", b"a", 60_000));
    assert!(!t.lock(2, b"k", b"b", 60_000), "another connection cannot take a held lock");
    assert!(t.lock(1, b"k", b"a", 60_000), "re-asking holder keeps it");
    assert!(!t.unlock(b"k", b"b"));
    assert!(t.renew(b"k", b"a", 60_000));
    assert_eq!(t.release_conn(1), 1);
    assert!(!t.renew(b"k", b"a", 60_000));
    assert!(t.lock(2, b"k", b"b", 60_000));
    assert!(t.unlock(b"k", b"b"));
    assert_eq!(t.len(), 0);
  }

  #[test]
  fn a_lock_ends_with_its_ttl_even_while_its_connection_lives() {
    let t = LockTable::default();
    assert!(t.lock(1, b"k", b"a", 1));
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(t.len(), 0);
    assert!(!t.renew(b"k", b"a", 60_000), "too late to renew");
    assert!(t.lock(2, b"k", b"b", 60_000), "a hung holder's lock is taken over");
    assert!(!t.unlock(b"k", b"a"));
    assert!(t.unlock(b"k", b"b"));
  }
}
