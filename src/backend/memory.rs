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

use super::{Cond, Op, Reply, SyncBackend, Ttl};
use crate::error::{Code, Result, StoreError};
use crate::expiry::{is_expired, now_ms, Expiry};

/// Bytes charged per entry on top of id and value (map node, index node, Arc).
pub const ENTRY_OVERHEAD: usize = 96;
/// Entries reclaimed per lock acquisition by the sweeper.
const SWEEP_CHUNK: usize = 1024;

/// A live entry as persisted: id, stored bytes, expiry.
pub type Saved = (String, Vec<u8>, Option<Expiry>);

#[derive(Debug, Clone)]
pub struct MemoryOptions {
  /// Most entries kept; the least recently used are evicted beyond it.
  pub max_entries: Option<usize>,
  /// Most bytes kept (see module docs for what counts).
  pub max_bytes: Option<usize>,
  /// How often the sweeper reclaims expired entries. `None`: no sweeper thread
  /// (expired entries are still invisible, and reclaimed when touched).
  pub sweep_interval: Option<Duration>,
}

impl Default for MemoryOptions {
  fn default() -> Self {
    MemoryOptions { max_entries: None, max_bytes: None, sweep_interval: Some(Duration::from_secs(1)) }
  }
}

struct Entry {
  value: Box<[u8]>,
  expires: Option<Expiry>,
}

#[derive(Default)]
struct State {
  /// Front = least recently used.
  map: LinkedHashMap<Arc<str>, Entry>,
  /// (slot(expires), id) of every entry that has an expiry (see [`slot`]).
  index: BTreeSet<(Expiry, Arc<str>)>,
  bytes: usize,
  closed: bool,
  /// In-process locks: id → (token, expires).
  locks: std::collections::HashMap<String, (String, Expiry)>,
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
    crate::engine::runtime::outlive_environments();
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
}

impl MemoryBackend {
  /// `set`, or with a condition `set_if`; true when written.
  fn put(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, cond: Option<Cond>) -> Result<bool> {
    let size = charge(id, value.len());
    if let Some(max) = self.opts.max_bytes {
      if size > max {
        return Err(StoreError::new(Code::SessionTooLarge, format!("entry of {size} bytes exceeds the store's maxBytes ({max})")));
      }
    }
    let mut st = self.shared.state.lock();
    Self::check_open(&st)?;
    if let Some(cond) = cond {
      if st.live(id, now_ms()).is_some() != (cond == Cond::Present) {
        return Ok(false);
      }
    }
    let value = value.into_boxed_slice();
    let st = &mut *st;
    if let RawEntryMut::Occupied(mut o) = st.map.raw_entry_mut().from_key(id) {
      // An overwrite updates the entry in place (no new node, the key is
      // kept) and moves it to the back (most recently used).
      o.to_back();
      let (k, e) = o.get_key_value_mut();
      let old = std::mem::replace(e, Entry { value, expires });
      reslot(&mut st.index, k, old.expires, expires);
      st.bytes = st.bytes - charge(id, old.value.len()) + size;
    } else {
      let key: Arc<str> = Arc::from(id);
      reslot(&mut st.index, &key, None, expires);
      st.bytes += size;
      st.map.insert(key, Entry { value, expires });
    }
    // Evict least recently used beyond the bounds.
    let max_entries = self.opts.max_entries.unwrap_or(usize::MAX);
    let max_bytes = self.opts.max_bytes.unwrap_or(usize::MAX);
    while st.map.len() > max_entries || st.bytes > max_bytes {
      let Some((k, e)) = st.map.pop_front() else { break };
      st.unlink(&k, &e);
    }
    Ok(true)
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
    self.put(id, value, expires, None).map(|_| ())
  }

  /// Atomic: the check and the write happen under one lock.
  pub(crate) fn set_if(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, cond: Cond) -> Result<bool> {
    self.put(id, value, expires, Some(cond))
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
    if st.live(id, now_ms()).is_none() {
      return Ok(false);
    }
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
    Ok(match op {
      Op::Get(id) => Reply::Value(self.get(&id)?),
      Op::Set(id, v, at) => {
        self.set(&id, v, at)?;
        Reply::Done
      }
      Op::SetIf(id, v, at, cond) => Reply::Bool(self.set_if(&id, v, at, cond)?),
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
    })
  }

  fn close(&self) -> Result<()> {
    {
      let mut st = self.shared.state.lock();
      st.closed = true;
      st.map.clear();
      st.index.clear();
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
mod tests {
  use super::*;
  use crate::expiry::after_ms;

  fn store(max_entries: Option<usize>, max_bytes: Option<usize>) -> MemoryBackend {
    MemoryBackend::new(MemoryOptions { max_entries, max_bytes, sweep_interval: None }).unwrap()
  }

  #[test]
  fn add_only_when_absent() {
    let m = store(None, None);
    assert!(m.set_if("a", b"1".to_vec(), None, Cond::Absent).unwrap());
    assert!(!m.set_if("a", b"2".to_vec(), None, Cond::Absent).unwrap());
    assert_eq!(m.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    m.set("old", b"x".to_vec(), Some(now_ms() - 1)).unwrap();
    assert!(m.set_if("old", b"y".to_vec(), None, Cond::Absent).unwrap(), "an expired entry is not in the way");
    assert_eq!(m.get("old").unwrap().as_deref(), Some(&b"y"[..]));
  }

  #[test]
  fn replace_only_when_present() {
    let m = store(None, None);
    assert!(!m.set_if("a", b"1".to_vec(), None, Cond::Present).unwrap());
    assert_eq!(m.get("a").unwrap(), None, "nothing created");
    m.set("a", b"1".to_vec(), None).unwrap();
    assert!(m.set_if("a", b"2".to_vec(), None, Cond::Present).unwrap());
    assert_eq!(m.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    m.set("old", b"x".to_vec(), Some(now_ms() - 1)).unwrap();
    assert!(!m.set_if("old", b"y".to_vec(), None, Cond::Present).unwrap(), "an expired entry does not count");
  }

  #[test]
  fn set_get_remove() {
    let m = store(None, None);
    m.set("a", b"{\"n\":1}".to_vec(), None).unwrap();
    assert_eq!(m.get("a").unwrap().as_deref(), Some(&b"{\"n\":1}"[..]));
    assert!(m.exists("a").unwrap());
    assert_eq!(m.ttl("a").unwrap(), Ttl::Persistent);
    assert_eq!(m.len().unwrap(), 1);
    assert!(m.remove("a").unwrap());
    assert!(!m.remove("a").unwrap());
    assert_eq!(m.get("a").unwrap(), None);
    assert_eq!(m.bytes(), 0);
  }

  #[test]
  fn touch_never_resurrects() {
    let m = store(None, None);
    assert!(!m.touch("gone", Some(after_ms(1000))).unwrap());
    assert!(!m.exists("gone").unwrap());
    m.set("a", b"1".to_vec(), Some(after_ms(1000))).unwrap();
    let t = after_ms(50_000);
    assert!(m.touch("a", Some(t)).unwrap());
    assert_eq!(m.ttl("a").unwrap(), Ttl::At(t));
    m.remove("a").unwrap();
    assert!(!m.touch("a", Some(t)).unwrap());
    assert_eq!(m.len().unwrap(), 0);
  }

  #[test]
  fn expired_entries_are_invisible_and_swept() {
    let m = store(None, None);
    let past = now_ms() - 1;
    m.set("old", b"x".to_vec(), Some(past)).unwrap();
    m.set("new", b"y".to_vec(), Some(after_ms(60_000))).unwrap();
    assert_eq!(m.get("old").unwrap(), None);
    m.set("old2", b"x".to_vec(), Some(past)).unwrap();
    assert!(!m.exists("old2").unwrap());
    assert_eq!(m.len().unwrap(), 1);
    assert_eq!(m.keys().unwrap(), vec!["new".to_string()]);
    assert_eq!(m.sweep_now(), 1);
    assert_eq!(m.shared.state.lock().map.len(), 1);
    assert_eq!(m.bytes(), charge("new", 1));
  }

  #[test]
  fn background_sweeper_reclaims_without_reads() {
    let m = MemoryBackend::new(MemoryOptions { sweep_interval: Some(Duration::from_millis(20)), ..Default::default() }).unwrap();
    for i in 0..3000 {
      m.set(&format!("s{i}"), vec![b'x'; 10], Some(after_ms(30))).unwrap();
    }
    m.set("keep", b"k".to_vec(), None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let st = m.shared.state.lock();
    assert_eq!(st.map.len(), 1, "sweeper reclaimed expired entries");
    assert!(st.index.is_empty());
  }

  #[test]
  fn lru_eviction_by_entries_and_bytes() {
    let m = store(Some(3), None);
    for id in ["a", "b", "c"] {
      m.set(id, b"v".to_vec(), None).unwrap();
    }
    m.get("a").unwrap(); // a becomes most recently used
    m.set("d", b"v".to_vec(), None).unwrap();
    assert!(!m.exists("b").unwrap(), "b was least recently used");
    assert!(m.exists("a").unwrap() && m.exists("c").unwrap() && m.exists("d").unwrap());

    let per = charge("a", 100);
    let m = store(None, Some(per * 2));
    m.set("a", vec![0; 100], Some(after_ms(10_000))).unwrap();
    m.set("b", vec![0; 100], None).unwrap();
    m.set("c", vec![0; 100], None).unwrap();
    assert!(!m.exists("a").unwrap());
    assert!(m.bytes() <= per * 2);
    assert!(m.shared.state.lock().index.is_empty(), "evicted entry left the expiry index");
    let err = m.set("big", vec![0; per * 3], None).unwrap_err();
    assert_eq!(err.code, Code::SessionTooLarge);
    assert!(m.exists("b").unwrap() && m.exists("c").unwrap(), "a refused write leaves data intact");
  }

  #[test]
  fn overwrite_keeps_accounting() {
    let m = store(None, None);
    m.set("a", vec![0; 10], Some(after_ms(1000))).unwrap();
    m.set("a", vec![0; 20], Some(after_ms(2000))).unwrap();
    assert_eq!(m.bytes(), charge("a", 20));
    assert_eq!(m.shared.state.lock().index.len(), 1);
    assert_eq!(m.clear().unwrap(), 1);
    assert_eq!(m.bytes(), 0);
  }

  #[test]
  fn closed_store_refuses_calls() {
    let m = MemoryBackend::new(MemoryOptions::default()).unwrap();
    m.set("a", b"1".to_vec(), None).unwrap();
    SyncBackend::close(&m).unwrap();
    assert_eq!(m.get("a").unwrap_err().code, Code::StoreClosed);
    SyncBackend::close(&m).unwrap(); // idempotent
  }

  #[test]
  fn locks_are_exclusive_and_expire() {
    let m = store(None, None);
    assert!(m.lock("s", "t1", 60_000).unwrap());
    assert!(!m.lock("s", "t2", 60_000).unwrap(), "held");
    assert!(!m.unlock("s", "t2").unwrap(), "not the holder");
    assert!(m.renew("s", "t1", 60_000).unwrap());
    assert!(m.unlock("s", "t1").unwrap());
    assert!(m.lock("s", "t2", 1).unwrap());
    std::thread::sleep(Duration::from_millis(5));
    assert!(m.lock("s", "t3", 60_000).unwrap(), "a dead holder's lock expires");
    assert!(!m.renew("s", "t2", 60_000).unwrap());
  }

  #[test]
  fn dead_locks_are_swept_and_close_frees_every_lock() {
    let m = store(None, None);
    for i in 0..100 {
      assert!(m.lock(&format!("gone{i}"), "t", 1).unwrap());
    }
    assert!(m.lock("held", "t", 60_000).unwrap());
    std::thread::sleep(Duration::from_millis(5));
    m.sweep_now();
    assert_eq!(m.shared.state.lock().locks.len(), 1, "only the live lock is kept");
    SyncBackend::close(&m).unwrap();
    assert!(m.shared.state.lock().locks.is_empty());
  }

  #[test]
  fn bad_options() {
    assert!(MemoryBackend::new(MemoryOptions { max_entries: Some(0), ..Default::default() }).is_err());
    assert!(MemoryBackend::new(MemoryOptions { max_bytes: Some(1), ..Default::default() }).is_err());
  }
}
