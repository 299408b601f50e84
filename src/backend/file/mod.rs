//! One file per session in a directory (HTTP Sessions' FileStorage, without
//! its defects).
//!
//! * File names never come from ids: a session lives in
//!   `<dir>/<sha256(id) hex>.sess`, so `..`, `/`, NUL or 1 KiB ids can neither
//!   escape the directory nor collide. The id is kept inside the file.
//! * A file is one header line, then the payload (the session's JSON text when
//!   not encrypted): `{"rs-store":1,"id":"…","expires":1763800000000,
//!   "sum":<crc32c>}\n{…}`. `tail -n +2 FILE | jq` shows the session.
//! * Writes are atomic: a temp file in the same directory (`.tmp-…`), then it
//!   takes the session file's name in one step, so a reader (in this or
//!   another process) sees the old or the new session, never a torn one;
//!   with `durable` the file and the directory are fsynced. A writer killed
//!   mid-write leaves only a temp file, which the sweep removes later. On
//!   Linux the step is an exchange and temp files are recycled (see
//!   [`Inner::write`]); readers check each record's checksum and id and read
//!   again when a recycled inode was reused under them ([`Inner::load`]).
//! * Expired sessions are invisible at once (every read checks the header)
//!   and deleted by a sweeper thread that reads the header of one file at a
//!   time (bounded open files), off the event loop. (Setting each file's mtime
//!   to its expiry would let the sweep skip live files, but costs a second
//!   metadata write per session write, which costs writes far more than the
//!   sweep saves.)
//! * Corrupt or foreign files are skipped and reported through the report
//!   hook, never a crash.
//!
//! * Locks (HTTP Sessions' file lock manager): `<hash>.lock` holds
//!   `<token> <expires ms>`, created with `O_EXCL`. A lock whose expiry has
//!   passed is stale (its holder died or stopped renewing) and is taken over.
//!   Taking over, releasing and renewing run under a short `flock` on
//!   `<dir>/.locks` and re-read the lock file first, so a fresh lock is never
//!   removed by mistake; the flock itself is only held for those few steps.
//!   The sweep removes stale lock files the same way, so locks of dead
//!   holders on ids nobody locks again do not pile up.
//!
//! * Reads that need no disk (Linux 5.12+): [`Backend::get_now`] reads the
//!   file on the calling (JS) thread only when its path lookup and its data
//!   can be served from the kernel's caches: `openat2(RESOLVE_CACHED)` and
//!   `preadv2(RWF_NOWAIT)` fail with `EAGAIN` instead of waiting on the disk,
//!   and the read then takes the normal path through the blocking pool. This
//!   saves the two thread hops of a normal read for two cheap syscalls.
//! * Before that, the read cache (`cache.rs`) may answer with no
//!   system call at all: a session read or written recently by this store,
//!   served only while no process has changed its file since, so writes by
//!   other processes still show at once.
//!
//! All methods block: the async [`Backend`] impl runs them on tokio's blocking
//! pool, except small batches when the caller's thread may block
//! ([`FileOptions::inline_small_batches`]). A larger batch is split by id
//! into up to `SHARDS` groups that run in parallel (file systems overlap
//! metadata writes well); one id always lands in one group, so its calls
//! apply in call order.
//!
//! * Changes of one session are atomic against each other across processes
//!   (touch, add/replace and remove read, then act): each holds its id's
//!   write lock, a byte-range lock on `.rs-store-writers` (`writers.rs`).
//!   Reads take none.
//! * The directory must be this user's and writable by nobody else, and no
//!   file is opened through a link (`files.rs`).
//!
//! Here: the options, the store and its ops; `read.rs` (one file, no-wait
//! reads, walks), `write.rs` (atomic writes, recycled inodes, remove,
//! touch), `writers.rs` (the write locks), `files.rs` (how files are
//! opened), `locks.rs`, `sweep.rs` (the store's thread), `cache.rs` (the
//! read cache shared by the processes on one directory), `users.rs`
//! (per-user sessions: an index file per user, under a per-user lock).

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod cache;
mod files;
mod locks;
mod read;
mod sweep;
mod users;
mod write;
mod writers;

use super::record::{self, Record, EXT};
use super::{in_order, shards, shards_joined, Backend, Cond, Cursors, Op, Reply, Report, Ttl, UserRules};
use crate::backend::worker::{Shared, Worker};
use crate::error::{Code, Result, StoreError};
use crate::expiry::{is_expired, now_ms, Expiry};
use async_trait::async_trait;
use cache::{slot_of, ReadCache};
use parking_lot::Mutex;

const TMP_PREFIX: &str = ".tmp-";
/// Temp files older than this are leftovers of a killed writer.
const TMP_MAX_AGE_MS: u64 = 10 * 60 * 1000;
/// Most parallel groups a batch is split into.
const SHARDS: usize = 8;
/// How many times a read that looks torn is read again (see [`Inner::load`]).
const READ_TRIES: usize = 3;
/// Most recycled temp files kept per store (see [`Inner::write`]): enough
/// for `REUSE_QUIET` at ~250k writes/s.
const RECYCLED: usize = 64;
/// A recycled inode is rewritten only this long after it left its session
/// file's name, and a read that took less than this from its open to its
/// last byte cannot have met such a rewrite: it needs no further check
/// (see [`same_file`]). Both sides use the system's monotonic clock.
const REUSE_QUIET: Duration = Duration::from_micros(250);
/// A recycled temp file is dropped well before any process's sweep counts
/// it as a leftover (`TMP_MAX_AGE_MS`, from the birth time in its name).
const RECYCLED_MAX_AGE_MS: u64 = TMP_MAX_AGE_MS / 2;
/// See [`FileOptions::inline_small_batches`]; larger batches run in parallel
/// groups on the blocking pool.
const INLINE_MAX: usize = 2;

#[derive(Clone)]
pub struct FileOptions {
  pub dir: PathBuf,
  /// Answer reads on the calling thread when no disk access is needed (see
  /// the module docs).
  pub fast_reads: bool,
  /// fsync the file and the directory on every write.
  pub durable: bool,
  /// How often expired files are deleted; `None`: no sweeper thread.
  pub sweep_interval: Option<Duration>,
  pub report: Option<Report>,
  /// Bytes of sessions kept by the read cache (see
  /// `cache.rs`); 0: no cache.
  pub read_cache_bytes: usize,
  /// Run a batch of at most `INLINE_MAX` calls on the thread that asks for
  /// it instead of the blocking pool: for a caller whose thread is the
  /// store's own (it may block), saving two thread hops per batch.
  pub inline_small_batches: bool,
  /// Per-user sessions (`users.rs`); none: the store pays nothing for them.
  pub rules: UserRules,
}

struct Inner {
  /// Fast reads wanted and (as far as we know) supported by this kernel.
  fast_reads: AtomicBool,
  dir: PathBuf,
  durable: bool,
  closed: AtomicBool,
  report: Option<Report>,
  /// Temp files holding a replaced file's old inode, oldest first, with the
  /// birth time in their names and when they left the session file's name
  /// (see [`Inner::write`]).
  recycled: Mutex<std::collections::VecDeque<(PathBuf, u64, std::time::Instant)>>,
  /// `renameat2(RENAME_EXCHANGE)` works in this directory (Linux).
  exchange: AtomicBool,
  /// Recently read sessions, coherent across processes.
  cache: Option<ReadCache>,
  /// Directory listings `page` walks continue: a walk holds one listing,
  /// not every name.
  pages: Cursors<fs::ReadDir>,
  /// The sessions' write locks, shared with every process on the directory.
  writers: writers::Writers,
  rules: UserRules,
  /// The users' locks (`users.rs`), opened when first needed.
  user_locks: std::sync::OnceLock<writers::Writers>,
}

/// How [`Inner::commit`] put the new file in place.
enum Placed {
  /// Swapped with the old file, whose inode now sits at the temp name.
  Swapped,
  /// Renamed: there was no old file, or no exchange on this system.
  Renamed,
}

pub struct FileBackend {
  inner: Arc<Inner>,
  inline_small_batches: bool,
  sweeper: Mutex<Option<Worker<()>>>,
}

fn corrupt(path: &Path, why: &str) -> StoreError {
  StoreError::new(Code::Corrupt, format!("{} is not an rs-store session file: {why}", path.display()))
}

type Stored = Record;

fn parse(path: &Path, bytes: Vec<u8>) -> Result<Stored> {
  record::decode(&path.display(), bytes)
}

/// The read-cache slot of a session file's path.
fn slot_of_path(path: &Path) -> usize {
  path.file_name().and_then(|n| n.to_str()).map_or(0, slot_of)
}

impl Inner {
  fn path_for(&self, id: &str) -> PathBuf {
    self.dir.join(record::name_for(id))
  }

  /// The write lock of `id`'s session file (see `writers.rs`).
  fn hold(&self, id: &str) -> Result<writers::Held<'_>> {
    self.writers.hold(slot_of(&record::name_for(id)))
  }

  fn check_open(&self) -> Result<()> {
    if self.closed.load(Ordering::Acquire) {
      return Err(StoreError::closed());
    }
    Ok(())
  }

  fn report(&self, e: StoreError) {
    if let Some(r) = &self.report {
      r(e);
    }
  }
}

impl FileBackend {
  /// Creates `dir` (mode 0700) if needed and checks that it is a writable
  /// directory of this user's that nobody else can write into.
  pub fn new(opts: FileOptions) -> Result<Self> {
    let dir = &opts.dir;
    match fs::metadata(dir) {
      Ok(m) if !m.is_dir() => return Err(StoreError::new(Code::InvalidOption, format!("{} exists and is not a directory", dir.display()))),
      Ok(m) => files::check_dir(dir, &m)?,
      Err(e) if e.kind() == ErrorKind::NotFound => {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| StoreError::io("cannot create directory", dir, e))?;
      }
      Err(e) => return Err(StoreError::io("cannot use directory", dir, e)),
    }
    // Unique in this process too: stores of several worker threads may open at once.
    let probe = dir.join(format!("{TMP_PREFIX}{}-probe-{}-{}", now_ms(), std::process::id(), write::next_tmp()));
    files::create_new(&probe).and_then(|_| fs::remove_file(&probe)).map_err(|e| StoreError::io("cannot write in", dir, e))?;
    let inner = Arc::new(Inner {
      fast_reads: AtomicBool::new(opts.fast_reads),
      dir: dir.clone(),
      durable: opts.durable,
      closed: AtomicBool::new(false),
      report: opts.report,
      recycled: Mutex::new(std::collections::VecDeque::new()),
      exchange: AtomicBool::new(cfg!(target_os = "linux")),
      cache: if opts.read_cache_bytes > 0 { ReadCache::new(dir, opts.read_cache_bytes) } else { None },
      pages: Cursors::new(),
      writers: writers::Writers::open(dir, writers::WRITERS_FILE)?,
      rules: opts.rules,
      user_locks: std::sync::OnceLock::new(),
    });
    if opts.rules.users {
      inner.user_locks()?;
    }
    let sweeper = match opts.sweep_interval {
      Some(every) => {
        let i = inner.clone();
        Some(Worker::spawn("rs-store-file-sweep", (), move |w| sweep::sweep_loop(i, every, w))?)
      }
      None => None,
    };
    Ok(FileBackend { inner, inline_small_batches: opts.inline_small_batches, sweeper: Mutex::new(sweeper) })
  }

  /// Deletes expired files now; returns how many files were removed.
  pub fn sweep_now(&self) -> usize {
    self.inner.sweep(&|| false)
  }

  /// Runs one op synchronously (on the calling thread).
  fn run_sync(inner: &Inner, op: &Op) -> Result<Reply> {
    Ok(match op {
      Op::Get(id) => Reply::Value(inner.get(id)?),
      // A store with per-user rules reads the session first (its user and
      // absolute end): users.rs.
      Op::Set(id, v, exp) if inner.rules.any() => {
        inner.put(id, v, *exp, None, users::Whose::Keep)?;
        Reply::Done
      }
      Op::SetIf(id, v, exp, cond) if inner.rules.any() => Reply::Bool(inner.put(id, v, *exp, Some(*cond), users::Whose::Keep)?),
      Op::Write(id, v, exp, cond, user) => match (inner.put(id, v, *exp, *cond, users::Whose::User(user.as_deref()))?, cond) {
        (written, Some(_)) => Reply::Bool(written),
        (_, None) => Reply::Done,
      },
      Op::SessionsOf(user) => Reply::Page(String::new(), inner.sessions_of(user)?),
      Op::RevokeUser(user, except) => Reply::Count(inner.revoke_user(user, except)?),
      Op::Rotate(old, new, recode) => Reply::Bool(inner.rotate(old, new, recode.as_ref())?),
      Op::Set(id, v, exp) => {
        let _held = inner.hold(id)?;
        inner.write(id, v, *exp)?;
        Reply::Done
      }
      // Checked, then written, holding the id's write lock: atomic against
      // every change of that session by any process.
      Op::SetIf(id, v, exp, cond) => Reply::Bool({
        let _held = inner.hold(id)?;
        let go = inner.read_live_held(id)?.is_some() == (*cond == Cond::Present);
        if go {
          inner.write(id, v, *exp)?;
        }
        go
      }),
      Op::Remove(id) => Reply::Bool(inner.remove(id)?),
      Op::Touch(id, exp) => Reply::Bool(inner.touch(id, *exp)?),
      Op::Ttl(id) => Reply::Ttl(match inner.read_live(id)? {
        None => Ttl::Missing,
        Some((_, s)) => s.header.expires.map_or(Ttl::Persistent, Ttl::At),
      }),
      Op::Exists(id) => Reply::Bool(inner.read_live(id)?.is_some()),
      Op::Len => Reply::Count(inner.live_count()?),
      Op::Keys => Reply::Keys(inner.live_files()?.into_iter().map(|(_, s)| s.header.id).collect()),
      Op::Entries => Reply::Entries(inner.live_files()?.into_iter().map(|(_, s)| (s.header.id, s.payload)).collect()),
      Op::Page(cursor, count) => {
        let (next, page) = inner.page(cursor, *count)?;
        Reply::Page(next, page)
      }
      Op::Lock(id, token, ttl) => Reply::Bool(inner.lock(id, token, *ttl)?),
      Op::Unlock(id, token) => Reply::Bool(inner.unlock(id, token)?),
      Op::Renew(id, token, ttl) => Reply::Bool(inner.renew(id, token, *ttl)?),
      // The directory is still there and a directory (a volume unmounted,
      // a directory removed under a running app).
      Op::Ping => match fs::metadata(&inner.dir) {
        Ok(m) if m.is_dir() => Reply::Done,
        Ok(_) => return Err(StoreError::new(Code::StoreUnavailable, format!("{} is no longer a directory", inner.dir.display()))),
        Err(e) => return Err(StoreError::io("cannot use directory", &inner.dir, e)),
      },
      Op::Clear => {
        inner.drop_recycled();
        let mut n = 0;
        for (p, s) in inner.live_files()? {
          // Under the write lock: a touch in flight must not write it back.
          let _held = inner.writers.hold(slot_of_path(&p))?;
          if inner.changing(Some(&s.header.id), &p, || fs::remove_file(&p)).is_ok() {
            n += 1;
          }
        }
        // The users' indexes then name no live session: removed.
        inner.prune_indexes(inner.index_files(), &|| false);
        Reply::Count(n)
      }
    })
  }

  async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> T + Send + 'static) -> Result<T> {
    let inner = self.inner.clone();
    tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| StoreError::new(Code::Internal, format!("file task failed: {e}")))
  }
}

#[async_trait]
impl Backend for FileBackend {
  fn get_now(&self, id: &str) -> Option<Option<Vec<u8>>> {
    self.inner.get_now(id)
  }

  /// Splits the batch by id into parallel groups (see the module docs); a
  /// batch with a whole-directory op runs as one group.
  async fn exec(&self, ops: Vec<Op>) -> Vec<Result<Reply>> {
    let n = ops.len();
    if self.inline_small_batches && n <= INLINE_MAX {
      return ops.iter().map(|op| Self::run_sync(&self.inner, op)).collect();
    }
    // With per-user sessions the writes of one user stay in one group too,
    // in call order (the order of the cap).
    let groups = if self.inner.rules.users { shards_joined(ops, SHARDS, Op::user) } else { shards(ops, SHARDS) };
    let tasks = groups.into_iter().map(|group| {
      let places: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
      let run = self.blocking(move |inner| group.into_iter().map(|(i, op)| (i, Self::run_sync(inner, &op))).collect::<Vec<_>>());
      async move { run.await.unwrap_or_else(|e| places.into_iter().map(|i| (i, Err(e.clone()))).collect()) }
    });
    in_order(n, futures::future::join_all(tasks).await.into_iter().flatten())
  }

  async fn close(&self) -> Result<()> {
    self.inner.closed.store(true, Ordering::Release);
    let sweeper = self.sweeper.lock().take();
    if let Some(w) = sweeper {
      let _ = tokio::task::spawn_blocking(move || w.stop()).await;
    }
    self.inner.drop_recycled();
    Ok(())
  }
}

impl Drop for Inner {
  fn drop(&mut self) {
    self.drop_recycled();
  }
}

#[cfg(test)]
mod tests {
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
}
