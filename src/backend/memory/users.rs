//! Per-user sessions in the memory store (`userOf`, `maxSessionsPerUser`,
//! `maxLifetime`): each user's sessions in the order they were last
//! written, kept under the store's one lock with the sessions themselves,
//! so a write, its filing under its user and the cap are one step.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::{charge, reslot, MemoryBackend, Recode, SavedMeta, State, Ttl, UserRules};
use crate::error::Result;
use crate::expiry::{is_expired, now_ms, Expiry};

/// What a store with per-user rules keeps beside a session.
pub(super) struct Meta {
  /// Whose it is (`None`: anonymous).
  pub user: Option<Arc<str>>,
  /// Its absolute end (maxLifetime), fixed at its first write.
  pub end: Option<Expiry>,
  /// When it was last written, in the store's write order.
  pub seq: u64,
}

/// Whose a written session is.
pub(super) enum Owner {
  /// As it was (a plain `set`/`add`/`replace`).
  Keep,
  /// This user's (`None`: anonymous).
  User(Option<String>),
}

impl Meta {
  /// The meta of a session written now; `old` is its meta if it was live.
  pub fn written(old: Option<Box<Meta>>, owner: Owner, rules: &UserRules, users: &mut Users) -> Box<Meta> {
    users.seq += 1;
    // A session with no end (new, or written without maxLifetime) starts
    // its lifetime now.
    let end = old.as_ref().and_then(|m| m.end).or_else(|| rules.end_from_now());
    let user = match owner {
      Owner::Keep => old.and_then(|m| m.user),
      Owner::User(None) => None,
      // The same user again keeps its shared name (no allocation).
      Owner::User(Some(u)) => Some(old.and_then(|m| m.user).filter(|o| **o == *u).unwrap_or_else(|| Arc::from(u))),
    };
    Box::new(Meta { user, end, seq: users.seq })
  }
}

/// user → (write order → id).
#[derive(Default)]
pub(super) struct Users {
  by_user: HashMap<Arc<str>, BTreeMap<u64, Arc<str>>>,
  seq: u64,
}

impl Users {
  /// Takes a session out of its user's list.
  pub fn forget(&mut self, m: &Meta) {
    let Some(u) = &m.user else { return };
    if let Some(list) = self.by_user.get_mut(u) {
      list.remove(&m.seq);
      if list.is_empty() {
        self.by_user.remove(u);
      }
    }
  }

  pub fn file(&mut self, user: &Arc<str>, seq: u64, id: Arc<str>) {
    self.by_user.entry(user.clone()).or_default().insert(seq, id);
  }

  pub fn clear(&mut self) {
    self.by_user.clear();
  }

  /// A user's session ids, least recently written first.
  fn ids(&self, user: &str) -> Vec<Arc<str>> {
    self.by_user.get(user).map(|l| l.values().cloned().collect()).unwrap_or_default()
  }
}

impl State {
  /// Removes `user`'s least recently written sessions beyond `n` live ones
  /// (and those that expired).
  pub(super) fn cap(&mut self, user: &str, n: usize, now: u64) {
    let mut live = Vec::new();
    for id in self.users.ids(user) {
      if self.map.get(&*id).is_some_and(|e| is_expired(e.expires, now)) {
        self.remove(&id);
      } else {
        live.push(id);
      }
    }
    for id in live.iter().take(live.len().saturating_sub(n)) {
      self.remove(id);
    }
  }
}

impl MemoryBackend {
  pub(super) fn sessions_of(&self, user: &str) -> Result<Vec<(String, Vec<u8>, Ttl)>> {
    let st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    Ok(
      st.users
        .ids(user)
        .into_iter()
        .filter_map(|id| {
          let e = st.map.get(&*id).filter(|e| !is_expired(e.expires, now))?;
          Some((id.to_string(), e.value.to_vec(), e.expires.map_or(Ttl::Persistent, Ttl::At)))
        })
        .collect(),
    )
  }

  pub(super) fn revoke_user(&self, user: &str, except: &[String]) -> Result<u64> {
    // a set, built before the lock: the list may be long (a scan per
    // entry would be the user's sessions × the list, under the lock)
    let except: HashSet<&str> = except.iter().map(String::as_str).collect();
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    let mut n = 0;
    for id in st.users.ids(user) {
      if except.contains(&*id) {
        continue;
      }
      if st.remove(&id).is_some_and(|(_, e)| !is_expired(e.expires, now)) {
        n += 1;
      }
    }
    Ok(n)
  }

  /// Loads a persisted session (sessions.json at start) with the user and
  /// absolute end it had (`saved`; `None`: anonymous, a lifetime from now).
  /// Call in the order the sessions were written (`seq`) so that the cap
  /// keeps the most recent. Answers whether the cap or the bounds removed
  /// any session (the persisted file then has more than the store).
  pub(crate) fn restore(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, saved: Option<SavedMeta>) -> Result<bool> {
    let rules = self.opts.rules;
    if !rules.any() {
      self.set(id, value, expires)?;
      return Ok(false);
    }
    let size = self.charge_within(id, value.len())?;
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    let st = &mut *st;
    // Strictly increasing whatever the file says, so no two share a place.
    let seq = saved.as_ref().map_or(0, |m| m.seq).max(st.users.seq + 1);
    st.users.seq = seq;
    let (user, end) = match saved {
      Some(m) => (m.user.map(Arc::from), m.end.or_else(|| rules.end_from_now())),
      None => (None, rules.end_from_now()),
    };
    let expires = UserRules::clamp(end, expires);
    if is_expired(expires, now_ms()) {
      return Ok(false);
    }
    let before = st.map.len() + usize::from(!st.map.contains_key(id));
    if let Some(m) = st.map.get_mut(id).and_then(|e| e.meta.take()) {
      st.users.forget(&m);
    }
    self.insert(st, id, value.into_boxed_slice(), size, expires, Some(Box::new(Meta { user, end, seq })), rules.max_per_user);
    Ok(st.map.len() < before)
  }

  /// Moves the live session `old` to the free id `new`, under one lock.
  pub(super) fn rotate(&self, old: &str, new: &str, recode: Option<&Recode>) -> Result<bool> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    if st.live(new, now).is_some() {
      return Ok(false);
    }
    let Some(e) = st.live(old, now) else { return Ok(false) };
    // Re-encoded first: a failure changes nothing.
    let value = recode.map(|r| (r.0)(old, new, e.value.to_vec())).transpose()?;
    let (_, mut e) = st.remove(old).expect("live");
    if let Some(v) = value {
      e.value = v.into_boxed_slice();
    }
    let key: Arc<str> = Arc::from(new);
    let st = &mut *st;
    reslot(&mut st.index, &key, None, e.expires);
    st.bytes += charge(new, e.value.len());
    if let Some(Meta { user: Some(u), seq, .. }) = e.meta.as_deref() {
      st.users.file(u, *seq, key.clone());
    }
    st.map.insert(key, e);
    self.evict(st);
    Ok(true)
  }
}
