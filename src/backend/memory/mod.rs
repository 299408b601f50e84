//! In-process store: serialized bytes in a hash map kept in least-recently-used
//! order, bounded by entry count and bytes, with an expiry index that one
//! background thread (shared by every memory store of the process) sweeps.
//!
//! * Expired entries are invisible at once (every read checks the expiry) and
//!   reclaimed by the sweeper within `sweep_interval` even if nobody reads them
//!   again (simpleS's built-in store never reclaims them).
//! * The sweeper works in chunks of `SWEEP_CHUNK` entries per lock, so a big
//!   expiry wave never stalls the JS thread for long.
//! * `max_bytes` counts id + value bytes plus `ENTRY_OVERHEAD` per entry (an
//!   estimate of the map, index and allocation overhead), so the bound is close
//!   to real memory use.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use hashlink::linked_hash_map::RawEntryMut;
use hashlink::LinkedHashMap;
use parking_lot::{Condvar, Mutex};

use super::{Cond, Op, Recode, Reply, SyncBackend, Ttl, UserRules};
use crate::error::{Code, Result, StoreError};
use crate::expiry::{is_expired, now_ms, Expiry};

/// Bytes charged per entry on top of id and value (map node, index node, Arc).
pub const ENTRY_OVERHEAD: usize = 96;
/// Entries reclaimed per lock acquisition by the sweeper.
const SWEEP_CHUNK: usize = 1024;

/// A live entry as persisted: id, stored bytes, expiry.
pub type Saved = (String, Vec<u8>, Option<Expiry>);
/// Live entries, and the per-user meta of those that have any.
pub type SavedUsers = (Vec<Saved>, Vec<(String, SavedMeta)>);

/// What a store with per-user rules keeps beside a session, as persisted
/// (sessions.json's `<file>.users`): its user, its absolute end, and its
/// place in the store's write order (`seq`, larger = written later).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedMeta {
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub user: Option<String>,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub end: Option<Expiry>,
  pub seq: u64,
}

#[derive(Debug, Clone)]
pub struct MemoryOptions {
  /// Most entries kept; the least recently used are evicted beyond it.
  pub max_entries: Option<usize>,
  /// Most bytes kept (see module docs for what counts).
  pub max_bytes: Option<usize>,
  /// How often the sweeper reclaims expired entries. `None`: no sweeper thread
  /// (expired entries are still invisible, and reclaimed when touched).
  pub sweep_interval: Option<Duration>,
  /// Per-user sessions (users.rs).
  pub rules: UserRules,
}

impl Default for MemoryOptions {
  fn default() -> Self {
    MemoryOptions { max_entries: None, max_bytes: None, sweep_interval: Some(Duration::from_secs(1)), rules: UserRules::default() }
  }
}

mod users;
use users::{Meta, Owner, Users};

struct Entry {
  value: Box<[u8]>,
  expires: Option<Expiry>,
  /// Stores with per-user rules only (a pointer's width for the others).
  meta: Option<Box<Meta>>,
}

#[derive(Default)]
struct State {
  /// Front = least recently used.
  map: LinkedHashMap<Arc<str>, Entry>,
  /// (slot(expires), id) of every entry that has an expiry (see [`slot`]).
  index: BTreeSet<(Expiry, Arc<str>)>,
  bytes: usize,
  /// Live entries evicted by the bounds.
  evicted: u64,
  closed: bool,
  /// In-process locks: id → (token, expires).
  locks: std::collections::HashMap<String, (String, Expiry)>,
  /// Each user's sessions (stores with `userOf`).
  users: Users,
}

/// Granularity of the expiry index (ms).
const SLOT_MS: u64 = 1000;

/// The expiry index files an entry under the end of its expiry's slot, so a
/// rewrite with the same timeout within one slot leaves the index alone.
/// Reads check the
/// exact expiry; the sweep reclaims an entry at most `SLOT_MS` late.
fn slot(t: Expiry) -> u64 {
  t.div_ceil(SLOT_MS).saturating_mul(SLOT_MS)
}

/// Moves `id` in the expiry index from `old` to `new`, unless both fall in
/// one slot.
fn reslot(index: &mut BTreeSet<(Expiry, Arc<str>)>, id: &Arc<str>, old: Option<Expiry>, new: Option<Expiry>) {
  if old.map(slot) == new.map(slot) {
    return;
  }
  if let Some(t) = old {
    index.remove(&(slot(t), id.clone()));
  }
  if let Some(t) = new {
    index.insert((slot(t), id.clone()));
  }
}

fn charge(id: &str, value_len: usize) -> usize {
  id.len() + value_len + ENTRY_OVERHEAD
}

impl State {
  fn unlink(&mut self, id: &Arc<str>, e: &Entry) {
    reslot(&mut self.index, id, e.expires, None);
    self.bytes -= charge(id, e.value.len());
    if let Some(m) = &e.meta {
      self.users.forget(m);
    }
  }

  fn remove(&mut self, id: &str) -> Option<(Arc<str>, Entry)> {
    let (k, e) = self.map.remove_entry(id)?;
    self.unlink(&k, &e);
    Some((k, e))
  }

  /// The live entry for `id`, removing it first if it has expired.
  fn live(&mut self, id: &str, now: u64) -> Option<&mut Entry> {
    if is_expired(self.map.get(id)?.expires, now) {
      self.remove(id);
      return None;
    }
    self.map.to_back(id)
  }

  fn reindex(&mut self, id: &str, expires: Option<Expiry>) -> bool {
    let Some((k, e)) = self.map.get_key_value(id) else { return false };
    let (k, old) = (k.clone(), e.expires);
    reslot(&mut self.index, &k, old, expires);
    if let Some(e) = self.map.get_mut(id) {
      e.expires = expires;
    }
    true
  }

  /// Removes up to `limit` expired entries; returns how many.
  fn sweep(&mut self, now: u64, limit: usize) -> usize {
    let mut n = 0;
    while n < limit {
      let Some((t, _)) = self.index.first() else { break };
      if *t > now {
        break;
      }
      // A due slot's entries have all expired (slot(t) >= t).
      let (_, id) = self.index.pop_first().expect("first exists");
      if let Some(e) = self.map.remove(&*id) {
        self.bytes -= charge(&id, e.value.len());
        if let Some(m) = &e.meta {
          self.users.forget(m);
        }
      }
      n += 1;
    }
    // The current slot: only its entries that have expired already.
    let current = slot(now);
    if n < limit && current > now {
      let expired: Vec<Arc<str>> = self
        .index
        .range((current, Arc::from(""))..)
        .take_while(|(s, _)| *s == current)
        .filter(|(_, id)| self.map.get(&**id).is_some_and(|e| is_expired(e.expires, now)))
        .take(limit - n)
        .map(|(_, id)| id.clone())
        .collect();
      for id in expired {
        self.remove(&id);
        n += 1;
      }
    }
    if n < limit {
      // Locks whose holder died without releasing them (the last chunk only).
      self.locks.retain(|_, (_, exp)| *exp > now);
    }
    n
  }

  /// Entries expired by `now` that the sweep has not reclaimed yet: every
  /// entry of a due slot, and those of the current slot that have expired.
  fn expired_count(&self, now: u64) -> usize {
    self
      .index
      .iter()
      .take_while(|(s, _)| *s <= slot(now))
      .filter(|(s, id)| *s <= now || self.map.get(&**id).is_some_and(|e| is_expired(e.expires, now)))
      .count()
  }
}

struct Shared {
  state: Mutex<State>,
}

/// The sweeps of every memory store, run by one thread: a thread per store
/// made each store cost a thread's start and stop, and memory that
/// thousands of short-lived stores (tests, per-tenant stores) never got
/// back. A store leaves the list when it is closed or dropped.
struct Sweeps {
  list: Mutex<Vec<(Weak<Shared>, Duration, Instant)>>,
  wake: Condvar,
}

fn sweeps() -> &'static Sweeps {
  static SWEEPS: OnceLock<&'static Sweeps> = OnceLock::new();
  SWEEPS.get_or_init(|| {
    let s: &'static Sweeps = Box::leak(Box::new(Sweeps { list: Mutex::new(Vec::new()), wake: Condvar::new() }));
    // Lives as long as the process (past the environment that started it:
    // its code must stay mapped); it holds no store alive (weak refs).
    crate::runtime::outlive_environments();
    let _ = std::thread::Builder::new().name("rs-store-sweep".into()).spawn(move || sweep_loop(s));
    s
  })
}

fn sweep_loop(sweeps: &'static Sweeps) {
  loop {
    let due: Vec<Arc<Shared>> = {
      let mut list = sweeps.list.lock();
      let now = Instant::now();
      list.retain(|(w, ..)| w.upgrade().is_some_and(|s| !s.state.lock().closed));
      let next = list.iter().map(|(_, _, at)| *at).min();
      if next.is_none_or(|at| at > now) {
        match next {
          Some(at) => {
            sweeps.wake.wait_until(&mut list, at);
          }
          None => sweeps.wake.wait(&mut list),
        }
        continue;
      }
      list
        .iter_mut()
        .filter(|(_, _, at)| *at <= now)
        .filter_map(|(w, every, at)| {
          *at = now + *every;
          w.upgrade()
        })
        .collect()
    };
    // Chunked: release the lock between chunks so callers interleave.
    for shared in due {
      while shared.state.lock().sweep(now_ms(), SWEEP_CHUNK) == SWEEP_CHUNK {}
    }
  }
}

/// The memory backend. Cheap to share behind an `Arc`.
pub struct MemoryBackend {
  shared: Arc<Shared>,
  opts: MemoryOptions,
}

impl MemoryBackend {
  pub fn new(opts: MemoryOptions) -> Result<Self> {
    if opts.max_entries == Some(0) {
      return Err(StoreError::new(Code::InvalidOption, "maxEntries must be at least 1"));
    }
    if let Some(b) = opts.max_bytes {
      if b < ENTRY_OVERHEAD {
        return Err(StoreError::new(Code::InvalidOption, format!("maxBytes must be at least {ENTRY_OVERHEAD}")));
      }
    }
    let shared = Arc::new(Shared { state: Mutex::new(State::default()) });
    if let Some(every) = opts.sweep_interval {
      let s = sweeps();
      s.list.lock().push((Arc::downgrade(&shared), every, Instant::now() + every));
      s.wake.notify_all();
    }
    Ok(MemoryBackend { shared, opts })
  }

  /// Bytes currently charged (see module docs).
  pub fn bytes(&self) -> usize {
    self.shared.state.lock().bytes
  }

  /// Every live entry with its expiry (for persistence).
  pub fn snapshot(&self) -> Result<Vec<Saved>> {
    let st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    Ok(st.map.iter().filter(|(_, e)| !is_expired(e.expires, now)).map(|(k, e)| (k.to_string(), e.value.to_vec(), e.expires)).collect())
  }

  /// Every live entry with its expiry, and the per-user meta of those that
  /// have a user or an absolute end, from one instant (for persistence).
  pub fn snapshot_users(&self) -> Result<SavedUsers> {
    let st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    let mut saved = Vec::with_capacity(st.map.len());
    let mut metas = Vec::new();
    for (k, e) in st.map.iter().filter(|(_, e)| !is_expired(e.expires, now)) {
      saved.push((k.to_string(), e.value.to_vec(), e.expires));
      if let Some(m) = e.meta.as_deref().filter(|m| m.user.is_some() || m.end.is_some()) {
        metas.push((k.to_string(), SavedMeta { user: m.user.as_deref().map(str::to_string), end: m.end, seq: m.seq }));
      }
    }
    Ok((saved, metas))
  }

  /// Whether the store was made with per-user rules.
  pub fn has_users(&self) -> bool {
    self.opts.rules.any()
  }

  /// Reclaims every expired entry now; returns how many.
  pub fn sweep_now(&self) -> usize {
    let mut total = 0;
    loop {
      let n = self.shared.state.lock().sweep(now_ms(), SWEEP_CHUNK);
      total += n;
      if n < SWEEP_CHUNK {
        return total;
      }
    }
  }

  fn check_open(st: &State) -> Result<()> {
    if st.closed {
      return Err(StoreError::closed());
    }
    Ok(())
  }

  /// What an entry of `id` and a `value_len`-byte value is charged, refused
  /// when that alone is over `maxBytes`.
  fn charge_within(&self, id: &str, value_len: usize) -> Result<usize> {
    let size = charge(id, value_len);
    match self.opts.max_bytes {
      Some(max) if size > max => {
        Err(StoreError::new(Code::SessionTooLarge, format!("entry of {size} bytes exceeds the store's maxBytes ({max})")))
      }
      _ => Ok(size),
    }
  }
}

impl MemoryBackend {
  /// `set`, or with a condition `set_if`; true when written. `owner`: the
  /// session's user, where the write has per-user `rules` (the store's own,
  /// or the daemon client's that sent it).
  fn put(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, cond: Option<Cond>, owner: Owner, rules: UserRules) -> Result<bool> {
    let size = self.charge_within(id, value.len())?;
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    if cond.is_some() || rules.any() {
      let now = now_ms();
      let live = st.live(id, now).is_some();
      if cond.is_some_and(|c| live != (c == Cond::Present)) {
        return Ok(false);
      }
    }
    let value = value.into_boxed_slice();
    let st = &mut *st;
    let mut expires = expires;
    let meta = if rules.any() {
      // The session's user and absolute end, taken out of the index (the
      // write files it again); a session that is not live starts anew.
      let old = st.map.get_mut(id).and_then(|e| e.meta.take());
      if let Some(m) = &old {
        st.users.forget(m);
      }
      let m = Meta::written(old, owner, &rules, &mut st.users);
      expires = UserRules::clamp(m.end, expires);
      Some(m)
    } else {
      None
    };
    self.insert(st, id, value, size, expires, meta, rules.max_per_user);
    Ok(true)
  }

  /// Stores the entry (in place of any old one), files it under its user,
  /// then applies the cap (`maxSessionsPerUser`) and the bounds.
  #[allow(clippy::too_many_arguments)]
  fn insert(
    &self,
    st: &mut State,
    id: &str,
    value: Box<[u8]>,
    size: usize,
    expires: Option<Expiry>,
    meta: Option<Box<Meta>>,
    cap: Option<u32>,
  ) {
    let user = meta.as_ref().and_then(|m| m.user.clone().map(|u| (u, m.seq)));
    let key = if let RawEntryMut::Occupied(mut o) = st.map.raw_entry_mut().from_key(id) {
      // An overwrite updates the entry in place (no new node, the key is
      // kept) and moves it to the back (most recently used).
      o.to_back();
      let (k, e) = o.get_key_value_mut();
      let old = std::mem::replace(e, Entry { value, expires, meta });
      reslot(&mut st.index, k, old.expires, expires);
      st.bytes = st.bytes - charge(id, old.value.len()) + size;
      let k = k.clone();
      // A write without rules over a user's session (a daemon client
      // without userOf) takes it out of the user's list.
      if let Some(m) = &old.meta {
        st.users.forget(m);
      }
      k
    } else {
      let key: Arc<str> = Arc::from(id);
      reslot(&mut st.index, &key, None, expires);
      st.bytes += size;
      st.map.insert(key.clone(), Entry { value, expires, meta });
      key
    };
    if let Some((user, seq)) = user {
      st.users.file(&user, seq, key);
      if let Some(n) = cap {
        st.cap(&user, n as usize, now_ms());
      }
    }
    self.evict(st);
  }

  /// Evicts the least recently used beyond the bounds.
  fn evict(&self, st: &mut State) {
    let max_entries = self.opts.max_entries.unwrap_or(usize::MAX);
    let max_bytes = self.opts.max_bytes.unwrap_or(usize::MAX);
    while st.map.len() > max_entries || st.bytes > max_bytes {
      let Some((k, e)) = st.map.pop_front() else { break };
      st.unlink(&k, &e);
      st.evicted += 1;
    }
  }
}

/// The ops, one method each ([`SyncBackend::run`] picks one).
impl MemoryBackend {
  pub(crate) fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    Ok(st.live(id, now_ms()).map(|e| e.value.to_vec()))
  }

  pub(crate) fn set(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>) -> Result<()> {
    self.put(id, value, expires, None, Owner::Keep, self.opts.rules).map(|_| ())
  }

  /// Atomic: the check and the write happen under one lock (`run`'s
  /// `SetIf` is this, under the rules it is given).
  #[cfg(test)]
  pub(crate) fn set_if(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, cond: Cond) -> Result<bool> {
    self.put(id, value, expires, Some(cond), Owner::Keep, self.opts.rules)
  }

  pub(crate) fn remove(&self, id: &str) -> Result<bool> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    Ok(st.remove(id).is_some_and(|(_, e)| !is_expired(e.expires, now)))
  }

  pub(crate) fn touch(&self, id: &str, expires: Option<Expiry>) -> Result<bool> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    let Some(e) = st.live(id, now_ms()) else { return Ok(false) };
    // Never past the absolute end (maxLifetime).
    let expires = UserRules::clamp(e.meta.as_ref().and_then(|m| m.end), expires);
    Ok(st.reindex(id, expires))
  }

  pub(crate) fn ttl(&self, id: &str) -> Result<Ttl> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    Ok(match st.live(id, now_ms()) {
      None => Ttl::Missing,
      Some(Entry { expires: None, .. }) => Ttl::Persistent,
      Some(Entry { expires: Some(t), .. }) => Ttl::At(*t),
    })
  }

  pub(crate) fn exists(&self, id: &str) -> Result<bool> {
    let st = self.shared.state.lock();
    Self::check_open(&st)?;
    Ok(st.map.get(id).is_some_and(|e| !is_expired(e.expires, now_ms())))
  }

  pub(crate) fn len(&self) -> Result<u64> {
    let st = self.shared.state.lock();
    Self::check_open(&st)?;
    Ok((st.map.len() - st.expired_count(now_ms())) as u64)
  }

  pub(crate) fn clear(&self) -> Result<u64> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    let live = (st.map.len() - st.expired_count(now_ms())) as u64;
    st.map.clear();
    st.index.clear();
    st.users.clear();
    st.bytes = 0;
    Ok(live)
  }

  pub(crate) fn keys(&self) -> Result<Vec<String>> {
    let st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    Ok(st.map.iter().filter(|(_, e)| !is_expired(e.expires, now)).map(|(k, _)| k.to_string()).collect())
  }

  pub(crate) fn lock(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    match st.locks.get(id) {
      Some((_, exp)) if *exp > now => Ok(false),
      _ => {
        st.locks.insert(id.to_string(), (token.to_string(), now.saturating_add(ttl_ms)));
        Ok(true)
      }
    }
  }

  pub(crate) fn unlock(&self, id: &str, token: &str) -> Result<bool> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    if st.locks.get(id).is_some_and(|(t, _)| t == token) {
      st.locks.remove(id);
      return Ok(true);
    }
    Ok(false)
  }

  pub(crate) fn renew(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    let now = now_ms();
    match st.locks.get_mut(id) {
      Some((t, exp)) if t == token && *exp > now => {
        *exp = now.saturating_add(ttl_ms);
        Ok(true)
      }
      _ => Ok(false),
    }
  }

  pub(crate) fn entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(self.snapshot()?.into_iter().map(|(k, v, _)| (k, v)).collect())
  }

  /// The sorted ids after `cursor`, up to `count` with their sessions.
  pub(crate) fn page(&self, cursor: &str, count: u32) -> Result<super::Page> {
    let mut ids: Vec<String> = self.keys()?.into_iter().filter(|id| id.as_str() > cursor).collect();
    ids.sort_unstable();
    let more = ids.len() > count as usize;
    ids.truncate(count as usize);
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
      if let (Some(v), ttl) = (self.get(&id)?, self.ttl(&id)?) {
        out.push((id, v, ttl));
      }
    }
    let next = if more { out.last().map(|(id, ..)| id.clone()).unwrap_or_default() } else { String::new() };
    Ok((next, out))
  }
}

impl SyncBackend for MemoryBackend {
  fn run(&self, op: Op) -> Result<Reply> {
    self.run_under(self.opts.rules, op)
  }

  /// Writes follow `rules`; the rest needs none (a touch never passes a
  /// session's absolute end, whoever asks).
  fn run_under(&self, rules: UserRules, op: Op) -> Result<Reply> {
    Ok(match op {
      Op::Get(id) => Reply::Value(self.get(&id)?),
      Op::Set(id, v, at) => {
        self.put(&id, v, at, None, Owner::Keep, rules)?;
        Reply::Done
      }
      Op::SetIf(id, v, at, cond) => Reply::Bool(self.put(&id, v, at, Some(cond), Owner::Keep, rules)?),
      Op::Remove(id) => Reply::Bool(self.remove(&id)?),
      Op::Touch(id, at) => Reply::Bool(self.touch(&id, at)?),
      Op::Ttl(id) => Reply::Ttl(self.ttl(&id)?),
      Op::Exists(id) => Reply::Bool(self.exists(&id)?),
      Op::Len => Reply::Count(self.len()?),
      Op::Clear => Reply::Count(self.clear()?),
      Op::Keys => Reply::Keys(self.keys()?),
      Op::Entries => Reply::Entries(self.entries()?),
      Op::Page(cursor, count) => {
        let (next, page) = self.page(&cursor, count)?;
        Reply::Page(next, page)
      }
      Op::Lock(id, token, ttl) => Reply::Bool(self.lock(&id, &token, ttl)?),
      Op::Unlock(id, token) => Reply::Bool(self.unlock(&id, &token)?),
      Op::Renew(id, token, ttl) => Reply::Bool(self.renew(&id, &token, ttl)?),
      Op::Write(id, v, at, cond, user) => match (self.put(&id, v, at, cond, Owner::User(user), rules)?, cond) {
        (written, Some(_)) => Reply::Bool(written),
        (_, None) => Reply::Done,
      },
      Op::SessionsOf(user) => Reply::Page(String::new(), self.sessions_of(&user)?),
      Op::RevokeUser(user, except) => Reply::Count(self.revoke_user(&user, &except)?),
      Op::Rotate(old, new, recode) => Reply::Bool(self.rotate(&old, &new, recode.as_ref())?),
      Op::Ping => {
        Self::check_open(&self.shared.state.lock())?;
        Reply::Done
      }
    })
  }

  fn held(&self) -> Option<super::Holding> {
    let st = self.shared.state.lock();
    Some(super::Holding { entries: st.map.len() as u64, bytes: st.bytes as u64, evicted: st.evicted })
  }

  fn close(&self) -> Result<()> {
    {
      let mut st = self.shared.state.lock();
      st.closed = true;
      st.map.clear();
      st.index.clear();
      st.users.clear();
      st.locks.clear();
      st.bytes = 0;
    }
    Ok(())
  }
}

impl Drop for MemoryBackend {
  fn drop(&mut self) {
    let _ = SyncBackend::close(self);
  }
}

#[cfg(test)]
mod tests;
