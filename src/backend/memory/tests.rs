//! The memory backend's tests.

use super::*;
use crate::expiry::after_ms;

fn store(max_entries: Option<usize>, max_bytes: Option<usize>) -> MemoryBackend {
  MemoryBackend::new(MemoryOptions { max_entries, max_bytes, sweep_interval: None, ..Default::default() }).unwrap()
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
