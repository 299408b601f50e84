//! The file store's unit tests (the module docs of `file` say what each part does).

use super::read::{read_in_place, same_file};
use super::write::exchange;
use super::*;
use crate::expiry::after_ms;

/// Options for a test store on `dir`: fast reads, no cache, no sweeper.
fn options(dir: &Path) -> FileOptions {
  FileOptions {
    dir: dir.to_path_buf(),
    fast_reads: true,
    durable: false,
    sweep_interval: None,
    report: None,
    read_cache_bytes: 0,
    inline_small_batches: false,
    rules: UserRules::default(),
  }
}

fn store(dir: &Path) -> FileBackend {
  FileBackend::new(options(dir)).unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
  let d = std::env::temp_dir().join(format!("rs-store-file-{name}-{}-{}", std::process::id(), now_ms()));
  let _ = fs::remove_dir_all(&d);
  d
}

/// A reader that opened the session file just before it was swapped out
/// can read the next version written into that recycled inode before it is
/// in place; `same_file` tells, so the read is done again.
#[cfg(target_os = "linux")]
#[test]
fn a_read_of_an_inode_swapped_out_meanwhile_does_not_count() {
  use std::io::Read as _;
  let d = tmpdir("swapped");
  fs::create_dir_all(&d).unwrap();
  let path = d.join("s");
  let tmp = d.join(".tmp-x");
  fs::write(&path, b"v1").unwrap();
  let mut reader = File::open(&path).unwrap(); // opens v1's inode
  assert!(same_file(&reader, &path));
  fs::write(&tmp, b"v2").unwrap();
  exchange(&tmp, &path).unwrap(); // v2 in place; v1's inode now at tmp
  fs::write(&tmp, b"v3").unwrap(); // v1's inode recycled: the next version, not in place
  let mut got = String::new();
  reader.read_to_string(&mut got).unwrap();
  assert_eq!(got, "v3", "the reader sees a version that is not in place");
  assert!(!same_file(&reader, &path), "so its read must not count, nor may the sweep delete what is at the path now");
  assert_eq!(read_in_place(&path).unwrap().as_deref(), Some(&b"v2"[..]));
  let _ = fs::remove_dir_all(&d);
}

#[test]
#[cfg(target_os = "linux")]
fn fast_reads_answer_from_the_kernel_caches_and_defer_the_unusual() {
  let d = tmpdir("now");
  let s = store(&d);
  let i = &s.inner;
  assert!(i.read_live("nobody").unwrap().is_none());
  assert_eq!(i.get_now("nobody"), Some(None), "a missing file (its lookup cached) is answered at once");
  i.write("a", b"{\"n\":1}", Some(after_ms(60_000))).unwrap();
  // just written: path and data are in the kernel's caches
  assert_eq!(i.get_now("a"), Some(Some(b"{\"n\":1}".to_vec())));
  i.write("a", &vec![b'x'; 100_000], None).unwrap();
  assert_eq!(i.get_now("a").unwrap().unwrap().len(), 100_000, "reads past the first buffer");
  i.write("old", b"{}", Some(now_ms() - 1)).unwrap();
  assert_eq!(i.get_now("old"), None, "expired: left to the normal path, which deletes it");
  fs::write(i.path_for("bad"), b"not a session file").unwrap();
  assert_eq!(i.get_now("bad"), None, "corrupt: left to the normal path, which reports it");
  i.fast_reads.store(false, Ordering::Relaxed);
  assert_eq!(i.get_now("a"), None, "off");
  fs::remove_dir_all(&d).unwrap();
}

fn cached_store(dir: &Path) -> FileBackend {
  FileBackend::new(FileOptions { read_cache_bytes: 1 << 20, ..options(dir) }).unwrap()
}

/// Rewrites the file of `id` the way no rs-store would (in place, without
/// telling the read caches): what a read then returns tells whether it
/// came from the cache.
fn edit_by_hand(i: &Inner, id: &str, payload: &[u8]) {
  fs::write(i.path_for(id), record::encode(id, None, payload).unwrap()).unwrap();
}

/// Two stores on one directory stand for two processes: separate caches,
/// one table of counters (two mappings of one file).
#[test]
#[cfg(target_os = "linux")]
fn the_read_cache_serves_until_any_store_on_the_directory_changes_the_file() {
  let d = tmpdir("cache");
  let (a, b) = (cached_store(&d), cached_store(&d));
  let (a, b) = (&a.inner, &b.inner);
  a.write("x", b"1", None).unwrap();
  assert_eq!(b.get_now("x"), Some(Some(b"1".to_vec())), "read from the file, then cached");
  edit_by_hand(b, "x", b"hand");
  assert_eq!(b.get_now("x"), Some(Some(b"1".to_vec())), "served from the cache");
  assert_eq!(b.get("x").unwrap().as_deref(), Some(&b"1"[..]), "the normal path serves it too");
  a.write("x", b"2", None).unwrap();
  assert_eq!(b.get_now("x"), Some(Some(b"2".to_vec())), "another store's write is seen at once");
  assert_eq!(a.get_now("x"), Some(Some(b"2".to_vec())));
  edit_by_hand(a, "x", b"hand");
  assert_eq!(a.get_now("x"), Some(Some(b"2".to_vec())), "the writer cached what it wrote");
  b.remove("x").unwrap();
  assert_eq!(a.get_now("x"), Some(None), "a removal is seen at once");
  assert_eq!(a.get("x").unwrap(), None);
  // expiry is checked on every hit
  a.write("e", b"e", Some(now_ms() + 150)).unwrap();
  assert_eq!(b.get_now("e"), Some(Some(b"e".to_vec())));
  std::thread::sleep(Duration::from_millis(200));
  assert_eq!(b.get_now("e"), None, "expired: not served, left to the normal path");
  assert_eq!(b.get("e").unwrap(), None);
  // clear() tells the others too
  a.write("c", b"c", None).unwrap();
  assert_eq!(b.get_now("c"), Some(Some(b"c".to_vec())));
  FileBackend::run_sync(a, &Op::Clear).unwrap();
  assert_eq!(b.get_now("c"), Some(None));
  fs::remove_dir_all(&d).unwrap();
}

#[test]
#[cfg(target_os = "linux")]
fn a_change_in_progress_or_cut_short_keeps_its_slot_uncached() {
  let d = tmpdir("cache-cut");
  let s = cached_store(&d);
  let i = &s.inner;
  i.write("x", b"1", None).unwrap();
  let c = i.cache.as_ref().unwrap();
  // a writer that began and was killed before it ended
  let _killed = c.begin(None, slot_of(&record::name_for("x")));
  assert_eq!(i.get_now("x"), Some(Some(b"1".to_vec())), "read from the file");
  edit_by_hand(i, "x", b"hand");
  assert_eq!(i.get_now("x"), Some(Some(b"hand".to_vec())), "not cached: every read goes to the file");
  i.write("x", b"2", None).unwrap();
  edit_by_hand(i, "x", b"hand2");
  assert_eq!(i.get_now("x"), Some(Some(b"hand2".to_vec())), "nor is a write overlapping the unfinished change cached");
  // other slots are unaffected
  let y = (0..).map(|n| format!("y{n}")).find(|y| slot_of(&record::name_for(y)) != slot_of(&record::name_for("x"))).unwrap();
  i.write(&y, b"y", None).unwrap();
  edit_by_hand(i, &y, b"hand");
  assert_eq!(i.get_now(&y), Some(Some(b"y".to_vec())));
  fs::remove_dir_all(&d).unwrap();
}

#[test]
#[cfg(target_os = "linux")]
fn changes_made_outside_rs_store_show_after_the_max_age_or_when_the_table_is_replaced() {
  let d = tmpdir("cache-age");
  let s = cached_store(&d);
  let i = &s.inner;
  i.write("x", b"1", None).unwrap();
  edit_by_hand(i, "x", b"hand");
  assert_eq!(i.get_now("x"), Some(Some(b"1".to_vec())));
  std::thread::sleep(Duration::from_millis(super::cache::MAX_AGE_MS + 50));
  assert_eq!(i.get_now("x"), Some(Some(b"hand".to_vec())), "read again once older than the max age");
  assert_eq!(i.get_now("x"), Some(Some(b"hand".to_vec())));
  edit_by_hand(i, "x", b"hand2");
  assert_eq!(i.get_now("x"), Some(Some(b"hand".to_vec())), "and cached again");
  fs::remove_file(d.join(super::cache::GENS_FILE)).unwrap();
  s.sweep_now();
  assert_eq!(i.get_now("x"), Some(Some(b"hand2".to_vec())), "table gone: the cache turned itself off");
  edit_by_hand(i, "x", b"hand3");
  assert_eq!(i.get_now("x"), Some(Some(b"hand3".to_vec())));
  fs::remove_dir_all(&d).unwrap();
}

#[test]
fn roundtrip_and_format() {
  let d = tmpdir("rt");
  let s = store(&d);
  let i = &s.inner;
  i.write("a", b"{\"n\":1}", Some(after_ms(60_000))).unwrap();
  let (path, st) = i.read_live("a").unwrap().unwrap();
  assert_eq!(st.payload, b"{\"n\":1}");
  let text = fs::read_to_string(&path).unwrap();
  assert!(text.starts_with("{\"rs-store\":1,\"id\":\"a\",\"expires\":"), "{text}");
  assert!(text.ends_with("\n{\"n\":1}"));
  #[cfg(unix)]
  {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
  }
  assert!(i.touch("a", None).unwrap());
  assert!(i.remove("a").unwrap());
  assert!(!i.touch("a", None).unwrap(), "touch never recreates");
  assert!(i.read_live("a").unwrap().is_none());
  fs::remove_dir_all(&d).unwrap();
}

#[test]
fn hostile_ids_stay_inside() {
  let d = tmpdir("hostile");
  let s = store(&d);
  for id in ["..", "../../etc/passwd", "a/b", "nul\0byte", &"x".repeat(1024)] {
    s.inner.write(id, b"{}", None).unwrap();
    let (path, st) = s.inner.read_live(id).unwrap().unwrap();
    assert_eq!(path.parent().unwrap(), d.as_path());
    assert_eq!(st.header.id, id);
  }
  assert_eq!(s.inner.files().unwrap().len(), 5);
  fs::remove_dir_all(&d).unwrap();
}

#[test]
fn sweep_removes_expired_and_leftovers_and_reports_corrupt() {
  let d = tmpdir("sweep");
  let seen = Arc::new(Mutex::new(Vec::new()));
  let seen2 = seen.clone();
  let s = FileBackend::new(FileOptions {
    durable: true,
    report: Some(Arc::new(move |e: StoreError| seen2.lock().push(e.code))),
    read_cache_bytes: 1 << 20,
    ..options(&d)
  })
  .unwrap();
  s.inner.write("old", b"{}", Some(now_ms() - 10)).unwrap();
  s.inner.write("new", b"{}", Some(after_ms(60_000))).unwrap();
  fs::write(d.join(format!("{TMP_PREFIX}1-2-3")), b"partial").unwrap();
  fs::write(d.join("garbage.sess"), b"not a session").unwrap();
  assert!(s.inner.read_live("old").unwrap().is_none(), "expired is invisible before the sweep");
  s.inner.write("old2", b"{}", Some(now_ms() - 10)).unwrap();
  assert!(s.inner.lock("dead-holder", "t", 1).unwrap());
  assert!(s.inner.lock("live-holder", "t", 60_000).unwrap());
  std::thread::sleep(Duration::from_millis(5));
  assert_eq!(s.sweep_now(), 3, "old2, the leftover temp file and the stale lock");
  assert!(!s.inner.lock_path("dead-holder").exists());
  assert!(s.inner.lock_path("live-holder").exists(), "a live lock stays");
  assert!(seen.lock().contains(&Code::Corrupt));
  assert_eq!(s.inner.live_files().unwrap().len(), 1);
  fs::remove_dir_all(&d).unwrap();
}

#[test]
fn lock_files_exclusive_stale_takeover() {
  let d = tmpdir("locks");
  let s = store(&d);
  let i = &s.inner;
  assert!(i.lock("x", "t1", 60_000).unwrap());
  assert!(!i.lock("x", "t2", 60_000).unwrap());
  assert!(!i.unlock("x", "t2").unwrap(), "only the holder releases");
  assert!(i.renew("x", "t1", 60_000).unwrap());
  assert!(i.unlock("x", "t1").unwrap());
  assert!(i.lock("x", "t2", 1).unwrap());
  std::thread::sleep(Duration::from_millis(5));
  assert!(i.lock("x", "t3", 60_000).unwrap(), "stale lock taken over");
  assert!(!i.renew("x", "t2", 60_000).unwrap(), "the old holder lost it");
  assert!(!i.unlock("x", "t2").unwrap());
  assert!(i.live_files().unwrap().is_empty(), "lock files are not sessions");
  fs::remove_dir_all(&d).unwrap();
}

/// Readers beside writers (two stores on one directory, as two
/// processes): a read that keeps meeting swapped, recycled inodes (each
/// slow read does: sessions of up to 900 kB, or a busy machine) reads
/// under the write lock at last; it never answers missing and never
/// reports corruption.
#[test]
#[cfg(target_os = "linux")]
fn a_read_racing_writes_never_answers_missing_nor_reports() {
  let d = tmpdir("racing");
  let reported = Arc::new(AtomicU64::new(0));
  let r2 = reported.clone();
  let writer = Arc::new(store(&d));
  let reader = FileBackend::new(FileOptions {
    report: Some(Arc::new(move |_| {
      r2.fetch_add(1, Ordering::Relaxed);
    })),
    ..options(&d)
  })
  .unwrap();
  let ids: Vec<String> = (0..4).map(|i| format!("r{i}")).collect();
  for id in &ids {
    writer.inner.write(id, b"{}", None).unwrap();
  }
  // A count of reads, not a time: on a busy machine a timed loop read too few to tell.
  let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
  let writers: Vec<_> = ids
    .iter()
    .cloned()
    .map(|id| {
      let w = writer.clone();
      let stop = stop.clone();
      std::thread::spawn(move || {
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
          n += 1;
          let _held = w.inner.hold(&id).unwrap();
          w.inner.write(&id, &vec![b'x'; (n * 37) % 3000 * 300], None).unwrap();
        }
      })
    })
    .collect();
  let (mut reads, mut missing) = (0, 0);
  for _ in 0..200 {
    for id in &ids {
      reads += 1;
      if reader.inner.read_live(id).unwrap().is_none() {
        missing += 1;
      }
    }
  }
  stop.store(true, Ordering::Relaxed);
  for w in writers {
    w.join().unwrap();
  }
  assert_eq!((missing, reported.load(Ordering::Relaxed)), (0, 0), "of {reads} reads");
  fs::remove_dir_all(&d).unwrap();
}

#[test]
fn not_a_directory() {
  let d = tmpdir("notdir");
  fs::write(&d, b"file").unwrap();
  let e = FileBackend::new(FileOptions { fast_reads: false, ..options(&d) }).err().unwrap();
  assert_eq!(e.code, Code::InvalidOption);
  fs::remove_file(&d).unwrap();
}

fn user_store(dir: &Path, max: Option<u32>) -> FileBackend {
  FileBackend::new(FileOptions { rules: UserRules { users: true, max_per_user: max, max_lifetime_ms: None }, ..options(dir) }).unwrap()
}

fn write_for(i: &Inner, id: &str, user: Option<&str>) -> bool {
  FileBackend::run_sync(i, &Op::Write(id.into(), b"{}".to_vec(), None, None, user.map(str::to_string))).is_ok()
}

/// A store without per-user rules opens no users' lock table and writes
/// the header it always wrote.
#[test]
fn a_store_without_users_makes_no_file_of_them() {
  let d = tmpdir("plain-users");
  let s = store(&d);
  s.inner.write("a", b"{}", None).unwrap();
  assert!(s.inner.touch("a", None).unwrap());
  FileBackend::run_sync(&s.inner, &Op::Rotate("a".into(), "b".into(), None)).unwrap();
  assert!(s.inner.user_locks.get().is_none());
  assert!(!d.join(writers::USERS_FILE).exists());
  let text = fs::read_to_string(s.inner.path_for("b")).unwrap();
  assert!(text.starts_with("{\"rs-store\":1,\"id\":\"b\",\"expires\":null,\"sum\":") && !text.contains("\"user\""), "{text}");
  fs::remove_dir_all(&d).unwrap();
}

/// A user's writes of one batch land in one group, in call order, and an
/// id's ops stay with them.
#[test]
fn a_users_writes_share_a_group() {
  let w = |id: &str, u: &str| Op::Write(id.into(), vec![], None, None, Some(u.into()));
  let mut ops: Vec<Op> = vec![Op::Get("s0".into())];
  ops.extend((0..20).map(|i| w(&format!("s{i}"), "ada")));
  ops.push(Op::Get("s0".into()));
  ops.extend((0..20).map(|i| w(&format!("b{i}"), &format!("u{i}"))));
  let groups = crate::backend::shards_joined(ops, 8, Op::user);
  let of = |i: usize| groups.iter().position(|g| g.iter().any(|(k, _)| *k == i)).unwrap();
  assert!((0..22).all(|i| of(i) == of(0)), "ada's writes and the reads of her session");
  assert!(groups.iter().all(|g| g.windows(2).all(|p| p[0].0 < p[1].0)), "call order within each group");
  assert!(groups.len() > 1, "other users' writes run beside them");
}

/// Writes moving sessions between two users, rotations, listings and
/// revocations from threads of two stores (two processes' worth of locks)
/// at once: no step waits on another for good, and at the end every live
/// session is listed under the user its record names.
#[test]
fn concurrent_per_user_steps_never_deadlock_and_keep_the_index_whole() {
  let d = tmpdir("users-race");
  let stores = [Arc::new(user_store(&d, Some(6))), Arc::new(user_store(&d, Some(6)))];
  let threads: Vec<_> = (0..6)
    .map(|t| {
      let s = stores[t % 2].clone();
      std::thread::spawn(move || {
        let i = &s.inner;
        for n in 0..150 {
          let id = format!("s{}", (n * 7 + t) % 12);
          match (n + t) % 6 {
            0..=2 => assert!(write_for(i, &id, Some(if n % 2 == 0 { "ada" } else { "bob" }))),
            3 => {
              FileBackend::run_sync(i, &Op::Rotate(id.clone(), format!("s{}", (n * 5 + t) % 12), None)).unwrap();
            }
            4 => {
              FileBackend::run_sync(i, &Op::RevokeUser(if t % 2 == 0 { "ada" } else { "bob" }.into(), vec![id])).unwrap();
            }
            _ => {
              FileBackend::run_sync(i, &Op::SessionsOf("ada".into())).unwrap();
              let _ = i.touch(&id, None);
            }
          }
        }
      })
    })
    .collect();
  for t in threads {
    t.join().unwrap();
  }
  let i = &stores[0].inner;
  for user in ["ada", "bob"] {
    let listed: Vec<String> = i.sessions_of(user).unwrap().into_iter().map(|(id, ..)| id).collect();
    let mut owned: Vec<String> =
      i.live_files().unwrap().into_iter().filter(|(_, s)| s.header.user.as_deref() == Some(user)).map(|(_, s)| s.header.id).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    owned.sort();
    assert_eq!(sorted, owned, "{user}: every session of theirs is listed, and only those");
    assert!(listed.len() <= 6, "{user}: the cap holds");
  }
  fs::remove_dir_all(&d).unwrap();
}

/// The write-lock slot of `id` (as `Inner::hold` computes it).
fn slot(id: &str) -> usize {
  slot_of(&record::name_for(id)) & 0xffff
}

/// Runs `f` on a thread of its own; fails (instead of hanging the run)
/// when it has not finished in a minute.
fn within_a_minute(what: &str, f: impl FnOnce() + Send + 'static) {
  let (tx, rx) = std::sync::mpsc::channel();
  std::thread::spawn(move || {
    f();
    let _ = tx.send(());
  });
  rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what}: still waiting after a minute (a deadlock)"));
}

/// A rotation holds both ids' write locks: ids whose slots share an
/// in-process mutex (one in 64; every pair elsewhere than Linux), and two
/// threads rotating pairs whose slot order crosses their mutexes' order,
/// finish.
#[test]
fn rotations_of_ids_sharing_a_mutex_or_crossing_their_order_finish() {
  let d = tmpdir("rotate-stripes");
  let s = Arc::new(store(&d));
  let ids: Vec<(String, usize)> = (0..300).map(|n| format!("s{n}")).map(|id| (id.clone(), slot(&id))).collect();
  let pairs = || ids.iter().flat_map(|a| ids.iter().map(move |b| (a, b)));
  // Two ids with different slots in one stripe.
  let (x, y) =
    pairs().find(|(a, b)| a.1 != b.1 && a.1 % writers::STRIPES == b.1 % writers::STRIPES).map(|(a, b)| (a.0.clone(), b.0.clone())).unwrap();
  s.inner.write(&x, b"{}", None).unwrap();
  let i = s.clone();
  within_a_minute("a rotation within one stripe", move || {
    assert!(i.inner.rotate(&x, &y, None).unwrap());
    assert!(i.inner.rotate(&y, &x, None).unwrap());
  });
  // (a, b) with slot(a) < slot(b) and stripes (p, q); (c, e) with
  // slot(c) < slot(e) and stripes (q, p).
  if writers::STRIPES > 1 {
    let pick = |p: usize, q: usize, not: &[&String]| {
      pairs()
        .find(|(a, b)| {
          a.1 < b.1 && a.1 % writers::STRIPES == p && b.1 % writers::STRIPES == q && !not.contains(&&a.0) && !not.contains(&&b.0)
        })
        .map(|(a, b)| (&a.0, &b.0))
    };
    let (a, b) = pick(1, 2, &[]).unwrap();
    let (c, e) = pick(2, 1, &[a, b]).unwrap();
    let pairs = [(a.clone(), b.clone()), (c.clone(), e.clone())];
    let i = s.clone();
    within_a_minute("crossed rotations on two threads", move || {
      let threads: Vec<_> = pairs
        .into_iter()
        .map(|(from, to)| {
          let i = i.clone();
          i.inner.write(&from, b"{}", None).unwrap();
          std::thread::spawn(move || {
            for _ in 0..2000 {
              assert!(i.inner.rotate(&from, &to, None).unwrap());
              assert!(i.inner.rotate(&to, &from, None).unwrap());
            }
          })
        })
        .collect();
      for t in threads {
        t.join().unwrap();
      }
    });
  }
  fs::remove_dir_all(&d).unwrap();
}

/// A store with `userOf` (and `rules`' other fields) whose reports land in
/// the list it answers.
fn reporting_user_store(dir: &Path, rules: UserRules) -> (FileBackend, Arc<Mutex<Vec<StoreError>>>) {
  let seen = Arc::new(Mutex::new(Vec::new()));
  let seen2 = seen.clone();
  let report: Report = Arc::new(move |e: StoreError| seen2.lock().push(e));
  (FileBackend::new(FileOptions { rules: UserRules { users: true, ..rules }, report: Some(report), ..options(dir) }).unwrap(), seen)
}

/// An index that does not read back is rebuilt, reported once and written
/// back: the next listing and sweep read it as it is.
#[test]
fn a_rebuilt_index_is_written_back() {
  let d = tmpdir("rebuilt-index");
  let (s, seen) = reporting_user_store(&d, UserRules::default());
  let i = &s.inner;
  assert!(write_for(i, "a", Some("ada")) && write_for(i, "b", Some("ada")));
  fs::write(i.index_path("ada"), b"not an index").unwrap();
  assert_eq!(i.sessions_of("ada").unwrap().len(), 2);
  assert_eq!(seen.lock().iter().filter(|e| e.code == Code::Corrupt).count(), 1);
  assert_eq!(i.sessions_of("ada").unwrap().len(), 2);
  i.prune_indexes(i.index_files(), &|| false);
  assert_eq!(seen.lock().iter().filter(|e| e.code == Code::Corrupt).count(), 1, "read back after the rebuild");
  fs::write(i.index_path("ada"), b"not an index").unwrap();
  i.prune_indexes(i.index_files(), &|| false);
  assert_eq!(i.sessions_of("ada").unwrap().len(), 2);
  assert_eq!(seen.lock().iter().filter(|e| e.code == Code::Corrupt).count(), 2, "the sweep writes it back too");
  fs::remove_dir_all(&d).unwrap();
}

/// A cap that fails after the write is reported; the write answers its
/// own result (it happened).
#[test]
fn a_failed_cap_is_reported_and_the_write_answers_done() {
  let d = tmpdir("cap-fails");
  // The store closes when the cap meets ada's corrupt session: its next
  // read fails.
  let store_of: Arc<Mutex<std::sync::Weak<Inner>>> = Arc::new(Mutex::new(std::sync::Weak::new()));
  let (seen, at_report) = (Arc::new(Mutex::new(Vec::new())), store_of.clone());
  let seen2 = seen.clone();
  let report: Report = Arc::new(move |e: StoreError| {
    seen2.lock().push(e.code);
    if let Some(i) = at_report.lock().upgrade() {
      i.closed.store(true, Ordering::Release);
    }
  });
  let rules = UserRules { users: true, max_per_user: Some(1), max_lifetime_ms: None };
  let s = FileBackend::new(FileOptions { rules, report: Some(report), ..options(&d) }).unwrap();
  let i = &s.inner;
  let uncapped = user_store(&d, None);
  assert!(write_for(&uncapped.inner, "c", Some("ada")) && write_for(&uncapped.inner, "a", Some("ada")));
  fs::write(i.path_for("c"), b"not a session").unwrap();
  *store_of.lock() = Arc::downgrade(&s.inner);
  let r = FileBackend::run_sync(i, &Op::Write("b".into(), b"{}".to_vec(), None, Some(Cond::Absent), Some("ada".into())));
  assert!(matches!(r, Ok(Reply::Bool(true))), "{:?}", r.err());
  assert_eq!(*seen.lock(), [Code::Corrupt, Code::StoreClosed], "the cap's error, reported");
  i.closed.store(false, Ordering::Release);
  assert!(i.read_live("b").unwrap().is_some());
  fs::remove_dir_all(&d).unwrap();
}

/// A live session with no absolute end (written by a store without
/// maxLifetime) gets one from the first write of a store with it, and no
/// later write moves it.
#[test]
fn a_session_without_an_end_gets_one_from_a_store_with_max_lifetime() {
  let d = tmpdir("no-end");
  let (plain, _) = reporting_user_store(&d, UserRules::default());
  let (timed, _) = reporting_user_store(&d, UserRules { max_lifetime_ms: Some(60_000), ..UserRules::default() });
  assert!(write_for(&plain.inner, "a", Some("ada")));
  assert_eq!(plain.inner.read_live("a").unwrap().unwrap().1.header.end, None);
  let before = now_ms();
  assert!(write_for(&timed.inner, "a", Some("ada")));
  let end = timed.inner.read_live("a").unwrap().unwrap().1.header.end.expect("an end");
  assert!(end >= before + 60_000 && end <= now_ms() + 60_000, "{end}");
  std::thread::sleep(Duration::from_millis(5));
  assert!(write_for(&timed.inner, "a", Some("ada")));
  assert_eq!(timed.inner.read_live("a").unwrap().unwrap().1.header.end, Some(end), "kept");
  fs::remove_dir_all(&d).unwrap();
}
