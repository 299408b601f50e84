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
//!   metadata write per session write: measured +60% per write on ext4.)
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
//!   saves the two thread hops of a normal read (~100 µs on small VMs) for a
//!   few µs of syscalls.
//! * Before that, the read cache ([`super::file_cache`]) may answer with no
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

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::file_cache::{slot_of, ReadCache};
use super::record::{self, Record, EXT};
use super::{shard_of, Backend, Cond, Cursors, Op, Reply, Report, Ttl};
use crate::error::{Code, Result, StoreError};
use crate::expiry::{is_expired, now_ms, Expiry};
use async_trait::async_trait;
use parking_lot::{Condvar, Mutex};

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
  /// [`super::file_cache`]); 0: no cache.
  pub read_cache_bytes: usize,
  /// Run a batch of at most `INLINE_MAX` calls on the thread that asks for
  /// it instead of the blocking pool: for a caller whose thread is the
  /// store's own (it may block), saving two thread hops per batch.
  pub inline_small_batches: bool,
}

struct Inner {
  /// Fast reads wanted and (as far as we know) supported by this kernel.
  fast_reads: AtomicBool,
  dir: PathBuf,
  durable: bool,
  closed: AtomicBool,
  report: Option<Report>,
  stop: Mutex<bool>,
  wake: Condvar,
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
  sweeper: Mutex<Option<JoinHandle<()>>>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
  StoreError::new(Code::Io, format!("{what} {}: {e}", path.display()))
}

fn corrupt(path: &Path, why: &str) -> StoreError {
  StoreError::new(Code::Corrupt, format!("{} is not an rs-store session file: {why}", path.display()))
}

type Stored = Record;

fn parse(path: &Path, bytes: Vec<u8>) -> Result<Stored> {
  record::decode(&path.display(), bytes)
}

/// A number no other temp file of this process has: one counter for every
/// store of the process (two stores on one directory must not pick the same
/// temp name; the pid tells processes apart).
fn next_tmp() -> u64 {
  static COUNTER: AtomicU64 = AtomicU64::new(0);
  COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Whether the open `file` is (still) the file at `path`. A recycled inode
/// (see [`Inner::write`]) can be rewritten, with the next version of some
/// session, after it left its session file's name: what a reader got from it
/// then may be a version not yet in place, and a later read could go back to
/// the older one in place. Only a read of the inode still at the path counts;
/// otherwise the reader reads again. Writers wait `REUSE_QUIET` before
/// rewriting such an inode, so a read that took less than that from its open
/// needs no check (the usual case: a few µs).
fn same_file(file: &File, path: &Path) -> bool {
  #[cfg(unix)]
  {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
      (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
      _ => false,
    }
  }
  #[cfg(not(unix))]
  {
    let _ = (file, path);
    true
  }
}

/// The bytes of the file at `path`, or `None` when the inode read is no
/// longer the one at `path` by the end of the read (checked only when the
/// read took `REUSE_QUIET` or more; see [`same_file`]).
fn read_in_place(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
  let opened = std::time::Instant::now();
  let mut f = File::open(path)?;
  let mut bytes = Vec::new();
  f.read_to_end(&mut bytes)?;
  if opened.elapsed() >= REUSE_QUIET && !same_file(&f, path) {
    fs::metadata(path)?; // removed meanwhile: NotFound
    return Ok(None);
  }
  Ok(Some(bytes))
}

/// The read-cache slot of a session file's path.
fn slot_of_path(path: &Path) -> usize {
  path.file_name().and_then(|n| n.to_str()).map_or(0, slot_of)
}

/// Whether `path` is the file of session `id`.
fn names(path: &Path, id: &str) -> bool {
  path.file_name().is_some_and(|n| *n == *record::name_for(id))
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: swaps two names in one step.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
  use std::os::unix::ffi::OsStrExt;
  let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
  let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
  // SAFETY: two valid NUL-terminated paths; no memory is handed over.
  let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
  if r == 0 {
    Ok(())
  } else {
    Err(std::io::Error::last_os_error())
  }
}

impl Inner {
  fn path_for(&self, id: &str) -> PathBuf {
    self.dir.join(record::name_for(id))
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

  /// The stored file of `id`, if present and really holding `id`.
  fn read(&self, id: &str) -> Result<Option<(PathBuf, Stored)>> {
    self.check_open()?;
    let path = self.path_for(id);
    match self.load(&path) {
      Ok(s) => Ok(s.map(|s| (path, s))),
      // A corrupt session file reads as missing and is reported, as a
      // session the codec cannot decode is.
      Err(e) if e.code == Code::Corrupt => {
        self.report(e);
        Ok(None)
      }
      Err(e) => Err(e),
    }
  }

  /// Reads and parses the session file at `path`; `None` when absent. A read
  /// that does not parse, fails its checksum or holds a record whose id does
  /// not name this file may have met a write in progress (a recycled inode,
  /// see [`Inner::write`]): it is read again, up to `READ_TRIES` times, before
  /// it counts as corrupt. A torn read is never returned.
  fn load(&self, path: &Path) -> Result<Option<Stored>> {
    let mut last = None;
    for _ in 0..READ_TRIES {
      let bytes = match read_in_place(path) {
        Ok(Some(b)) => b,
        // The inode read left `path` meanwhile (see same_file).
        Ok(None) => {
          last = Some(corrupt(path, "it was replaced while being read"));
          continue;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot read", path, e)),
      };
      match parse(path, bytes) {
        Ok(s) if names(path, &s.header.id) => return Ok(Some(s)),
        Ok(_) => last = Some(corrupt(path, "it holds another id")),
        Err(e) => last = Some(e),
      }
    }
    Err(last.unwrap_or_else(|| corrupt(path, "unreadable")))
  }

  /// [`Backend::get_now`]: the live session of `id` read without waiting on
  /// the disk, or `None` when that cannot be done.
  fn get_now(&self, id: &str) -> Option<Option<Vec<u8>>> {
    if self.closed.load(Ordering::Acquire) {
      return None;
    }
    let now = now_ms();
    if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(id, now)) {
      return Some(Some(hit));
    }
    if !self.fast_reads.load(Ordering::Relaxed) {
      return None;
    }
    let name = record::name_for(id);
    let seen = self.cache.as_ref().map(|c| c.before_read(slot_of(&name)));
    let path = self.dir.join(name);
    let bytes = match nowait::read(&path) {
      nowait::Read::Done(b) => b,
      nowait::Read::Missing => return Some(None),
      nowait::Read::WouldBlock => return None,
      nowait::Read::Unsupported => {
        self.fast_reads.store(false, Ordering::Relaxed);
        return None;
      }
    };
    // Anything unusual (corrupt, foreign, expired: deleted by the normal
    // path or the sweep) goes the normal way, which reports and cleans up.
    match parse(&path, bytes) {
      Ok(s) if s.header.id == id && !is_expired(s.header.expires, now) => {
        if let (Some(c), Some(seen)) = (&self.cache, seen) {
          c.after_read(seen, id, s.header.expires, &s.payload, now);
        }
        Some(Some(s.payload))
      }
      _ => None,
    }
  }

  /// `get` the normal way (off the JS thread): from the read cache, else
  /// from the file (then cached).
  fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
    self.check_open()?;
    let cache = self.cache.as_ref();
    if let Some(hit) = cache.and_then(|c| c.get(id, now_ms())) {
      return Ok(Some(hit));
    }
    let seen = cache.map(|c| (c, c.before_read(slot_of(&record::name_for(id)))));
    Ok(self.read_live(id)?.map(|(_, s)| {
      if let Some((c, seen)) = seen {
        c.after_read(seen, id, s.header.expires, &s.payload, now_ms());
      }
      s.payload
    }))
  }

  /// Runs `f`, a change of the session file at `path` (of `id` when known),
  /// announced to the read caches of every process (see
  /// [`super::file_cache`]).
  fn changing<T>(&self, id: Option<&str>, path: &Path, f: impl FnOnce() -> T) -> T {
    let Some(c) = &self.cache else { return f() };
    let change = c.begin(id, slot_of_path(path));
    let r = f();
    c.end(change, None);
    r
  }

  /// The live file of `id`; an expired one is deleted on the way.
  fn read_live(&self, id: &str) -> Result<Option<(PathBuf, Stored)>> {
    match self.read(id)? {
      Some((path, s)) if is_expired(s.header.expires, now_ms()) => {
        let _ = self.changing(Some(id), &path, || fs::remove_file(&path));
        Ok(None)
      }
      other => Ok(other),
    }
  }

  /// Writes the session file atomically: the new record goes into a temp
  /// file, which then takes the session file's name in one step, so readers
  /// see the old or the new record, never a torn one.
  ///
  /// Linux: the temp file and the session file are swapped with
  /// `renameat2(RENAME_EXCHANGE)`, and the temp name, now holding the old
  /// inode, is recycled as the temp file of a later write (overwritten in
  /// place). A write then creates and frees no inode and allocates no blocks:
  /// on this project's ext4 VM that is ~0.03 ms instead of 0.3-0.9 ms for a
  /// new temp file renamed over the old one. A reader that opened the old
  /// inode just before the swap may read it while it is being reused: the
  /// record's checksum and id catch a torn read, [`same_file`] a whole next
  /// version not yet in place, and [`Inner::load`] reads again. Elsewhere
  /// (or where the file system refuses the exchange) the temp file is new
  /// and renamed over the session file.
  fn write(&self, id: &str, payload: &[u8], expires: Option<Expiry>) -> Result<()> {
    self.check_open()?;
    let path = self.path_for(id);
    let buf = record::encode(id, expires, payload)?;
    let Some(c) = &self.cache else { return self.write_file(&path, &buf) };
    // The session written is cached (the file holds it) unless another
    // change of the slot overlapped this one.
    let change = c.begin(Some(id), slot_of_path(&path));
    let r = self.write_file(&path, &buf);
    c.end(change, r.is_ok().then_some((id, expires, payload, now_ms())));
    r
  }

  /// [`Inner::write`]'s file work: `buf` (a whole record) becomes the file
  /// at `path`.
  fn write_file(&self, path: &Path, buf: &[u8]) -> Result<()> {
    loop {
      let (tmp, born, reused) = match self.take_recycled() {
        Some((tmp, born)) => (tmp, born, true),
        None => {
          let born = now_ms();
          (self.tmp_path(born), born, false)
        }
      };
      let file = super::private_file().write(true).create_new(!reused).open(&tmp);
      match file.and_then(|f| self.commit(f, &tmp, buf, path, reused)) {
        Ok(placed) => {
          self.recycle(placed, tmp, born);
          return Ok(());
        }
        // A recycled one removed under us (a sweep): the next one, or a new file.
        Err(e) if reused && e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
          let _ = fs::remove_file(&tmp);
          return Err(io_err("cannot write", path, e));
        }
      }
    }
  }

  /// A new temp file name; the birth time in it lets any process's sweep
  /// remove the leftovers of a killed writer.
  fn tmp_path(&self, born: u64) -> PathBuf {
    self.dir.join(format!("{TMP_PREFIX}{born}-{}-{}", std::process::id(), next_tmp()))
  }

  /// Fills the temp file `f` (at `tmp`; `reused`: it holds an old record)
  /// and puts it in place at `path`.
  fn commit(&self, mut f: File, tmp: &Path, buf: &[u8], path: &Path, reused: bool) -> std::io::Result<Placed> {
    // Just opened: written from its start.
    f.write_all(buf)?;
    if reused && f.metadata()?.len() > buf.len() as u64 {
      f.set_len(buf.len() as u64)?;
    }
    if self.durable {
      f.sync_all()?;
    }
    drop(f);
    let placed = self.place(tmp, path)?;
    if self.durable {
      File::open(&self.dir)?.sync_all()?;
    }
    Ok(placed)
  }

  /// Swaps `tmp` and `path` where the system can, else renames.
  fn place(&self, tmp: &Path, path: &Path) -> std::io::Result<Placed> {
    #[cfg(target_os = "linux")]
    if self.exchange.load(Ordering::Relaxed) {
      match exchange(tmp, path) {
        Ok(()) => return Ok(Placed::Swapped),
        // No session file yet (or no temp file: the rename below says so).
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
          self.exchange.store(false, Ordering::Relaxed);
        }
        Err(e) => return Err(e),
      }
    }
    fs::rename(tmp, path)?;
    Ok(Placed::Renamed)
  }

  /// After a swap, keeps the temp name (it holds the old inode) for a later
  /// write, up to `RECYCLED` of them.
  fn recycle(&self, placed: Placed, tmp: PathBuf, born: u64) {
    if let Placed::Swapped = placed {
      let mut r = self.recycled.lock();
      if r.len() < RECYCLED {
        r.push_back((tmp, born, std::time::Instant::now()));
        return;
      }
      drop(r);
      let _ = fs::remove_file(&tmp);
    }
  }

  /// The oldest recycled temp file that has been out of place for
  /// `REUSE_QUIET` (else `None`: the write takes a new file); ones old
  /// enough for a sweep to count as leftovers are removed on the way.
  fn take_recycled(&self) -> Option<(PathBuf, u64)> {
    loop {
      let mut r = self.recycled.lock();
      let (_, born, left) = r.front()?;
      if *born + RECYCLED_MAX_AGE_MS <= now_ms() {
        let (tmp, ..) = r.pop_front()?;
        drop(r);
        let _ = fs::remove_file(&tmp);
        continue;
      }
      if left.elapsed() < REUSE_QUIET {
        return None;
      }
      let (tmp, born, _) = r.pop_front()?;
      return Some((tmp, born));
    }
  }

  /// Removes every recycled temp file (they hold old records).
  fn drop_recycled(&self) {
    let all: Vec<_> = self.recycled.lock().drain(..).collect();
    for (tmp, ..) in all {
      let _ = fs::remove_file(&tmp);
    }
  }

  fn lock_path(&self, id: &str) -> PathBuf {
    let name = record::name_for(id);
    self.dir.join(format!("{}.lock", name.trim_end_matches(&format!(".{EXT}"))))
  }

  /// Runs `f` holding the directory's short lock-maintenance flock.
  fn guarded<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let guard_path = self.dir.join(".locks");
    let guard = super::private_file()
      .create(true)
      .truncate(false)
      .write(true)
      .open(&guard_path)
      .map_err(|e| io_err("cannot open", &guard_path, e))?;
    guard.lock().map_err(|e| io_err("cannot lock", &guard_path, e))?;
    let r = f();
    let _ = guard.unlock();
    r
  }

  /// (token, expires) of the lock file, `None` when absent or unreadable.
  fn read_lock(path: &Path) -> Option<(String, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let (token, exp) = text.trim().split_once(' ')?;
    Some((token.to_string(), exp.parse().ok()?))
  }

  fn try_create_lock(&self, path: &Path, token: &str, ttl_ms: u64) -> Result<bool> {
    match super::private_file().write(true).create_new(true).open(path) {
      Ok(mut f) => {
        f.write_all(format!("{token} {}", now_ms().saturating_add(ttl_ms)).as_bytes()).map_err(|e| io_err("cannot write", path, e))?;
        Ok(true)
      }
      Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
      Err(e) => Err(io_err("cannot create", path, e)),
    }
  }

  fn lock(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    self.check_open()?;
    let path = self.lock_path(id);
    if self.try_create_lock(&path, token, ttl_ms)? {
      return Ok(true);
    }
    let Some((stale, exp)) = Self::read_lock(&path) else { return Ok(false) };
    if exp > now_ms() {
      return Ok(false);
    }
    // Stale: remove it if it is still the same lock, then compete again.
    self.guarded(|| {
      if Self::read_lock(&path).is_some_and(|(t, e)| t == stale && e <= now_ms()) {
        let _ = fs::remove_file(&path);
      }
      Ok(())
    })?;
    self.try_create_lock(&path, token, ttl_ms)
  }

  fn unlock(&self, id: &str, token: &str) -> Result<bool> {
    let path = self.lock_path(id);
    self.guarded(|| {
      if Self::read_lock(&path).is_some_and(|(t, _)| t == token) {
        fs::remove_file(&path).map_err(|e| io_err("cannot delete", &path, e))?;
        return Ok(true);
      }
      Ok(false)
    })
  }

  fn renew(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    let path = self.lock_path(id);
    self.guarded(|| match Self::read_lock(&path) {
      Some((t, exp)) if t == token && exp > now_ms() => {
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}-{}-lock-{}", now_ms(), std::process::id(), next_tmp()));
        super::private_file()
          .write(true)
          .create_new(true)
          .open(&tmp)
          .and_then(|mut f| f.write_all(format!("{token} {}", now_ms().saturating_add(ttl_ms)).as_bytes()))
          .and_then(|_| fs::rename(&tmp, &path))
          .map_err(|e| io_err("cannot renew", &path, e))?;
        Ok(true)
      }
      _ => Ok(false),
    })
  }

  fn remove(&self, id: &str) -> Result<bool> {
    let live = self.read_live(id).unwrap_or(None).is_some();
    let path = self.path_for(id);
    match self.changing(Some(id), &path, || fs::remove_file(&path)) {
      Ok(()) => Ok(live),
      Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
      Err(e) => Err(io_err("cannot delete", &path, e)),
    }
  }

  fn touch(&self, id: &str, expires: Option<Expiry>) -> Result<bool> {
    match self.read_live(id)? {
      None => Ok(false),
      Some((_, s)) => {
        self.write(id, &s.payload, expires)?;
        Ok(true)
      }
    }
  }

  /// Every session file name in the directory.
  fn files(&self) -> Result<Vec<PathBuf>> {
    self.check_open()?;
    let rd = fs::read_dir(&self.dir).map_err(|e| io_err("cannot list", &self.dir, e))?;
    let mut out = Vec::new();
    for ent in rd.flatten() {
      let p = ent.path();
      if p.extension().is_some_and(|x| x == EXT) {
        out.push(p);
      }
    }
    Ok(out)
  }

  /// Up to `count` live sessions of the directory listing `cursor` names
  /// (`""`: a new one), and the cursor to continue it (`""`: done).
  fn page(&self, cursor: &str, count: u32) -> Result<super::Page> {
    self.check_open()?;
    let mut rd = match self.pages.take(cursor)? {
      Some(rd) => rd,
      None => fs::read_dir(&self.dir).map_err(|e| io_err("cannot list", &self.dir, e))?,
    };
    let now = now_ms();
    let mut out = Vec::new();
    while out.len() < count as usize {
      let Some(ent) = rd.next() else { return Ok((String::new(), out)) };
      let Ok(ent) = ent else { continue };
      let p = ent.path();
      if !p.extension().is_some_and(|x| x == EXT) {
        continue;
      }
      match self.load(&p) {
        Ok(Some(s)) if !is_expired(s.header.expires, now) => {
          let ttl = s.header.expires.map_or(Ttl::Persistent, Ttl::At);
          out.push((s.header.id, s.payload, ttl));
        }
        Ok(_) => {}
        Err(e) => self.report(e),
      }
    }
    Ok((self.pages.park(rd), out))
  }

  /// How many live sessions, reading one file at a time (a count holds no
  /// session in memory).
  fn live_count(&self) -> Result<u64> {
    let now = now_ms();
    let mut n = 0;
    for p in self.files()? {
      match self.load(&p) {
        Ok(Some(s)) if !is_expired(s.header.expires, now) => n += 1,
        Ok(_) => {}
        Err(e) => self.report(e),
      }
    }
    Ok(n)
  }

  /// Every live session; corrupt files are reported and skipped.
  fn live_files(&self) -> Result<Vec<(PathBuf, Stored)>> {
    let now = now_ms();
    let mut out = Vec::new();
    for p in self.files()? {
      match self.load(&p) {
        Ok(None) => {}
        Err(e) => self.report(e),
        Ok(Some(s)) if is_expired(s.header.expires, now) => {}
        Ok(Some(s)) => out.push((p, s)),
      }
    }
    Ok(out)
  }

  /// Deletes expired session files and a killed writer's leftovers.
  fn sweep(&self) -> usize {
    if let Some(c) = &self.cache {
      c.check_shared();
    }
    let Ok(rd) = fs::read_dir(&self.dir) else { return 0 };
    let now = now_ms();
    let mut removed = 0;
    for ent in rd.flatten() {
      if *self.stop.lock() {
        break;
      }
      let p = ent.path();
      let name = ent.file_name();
      let name = name.to_string_lossy();
      if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
        let born: u64 = rest.split('-').next().and_then(|t| t.parse().ok()).unwrap_or(0);
        if born + TMP_MAX_AGE_MS < now && fs::remove_file(&p).is_ok() {
          removed += 1;
        }
        continue;
      }
      if p.extension().is_some_and(|x| x == "lock") {
        // A lock whose holder died and nobody asked for again: removed as a
        // takeover would, re-checked under the maintenance flock.
        if let Some((token, exp)) = Self::read_lock(&p).filter(|(_, exp)| *exp <= now) {
          let gone = self.guarded(|| {
            let same = Self::read_lock(&p).is_some_and(|(t, e)| t == token && e == exp);
            Ok(same && fs::remove_file(&p).is_ok())
          });
          removed += usize::from(gone.unwrap_or(false));
        }
        continue;
      }
      if !p.extension().is_some_and(|x| x == EXT) {
        continue;
      }
      let mut head = Vec::with_capacity(2048);
      let Ok(f) = File::open(&p) else { continue };
      if (&f).take(4096).read_to_end(&mut head).is_err() {
        continue;
      }
      // Only the header is read (the payload may be cut off); one whose id
      // does not name this file was read while a write swapped it: skipped.
      // The file is deleted only if it is still the one read: a session set
      // again since then is a new file at the same name.
      match record::decode_header(&p.display(), &head) {
        Ok((h, _)) if names(&p, &h.id) && is_expired(h.expires, now) => {
          if same_file(&f, &p) && self.changing(Some(&h.id), &p, || fs::remove_file(&p)).is_ok() {
            removed += 1;
          }
        }
        Ok(_) => {}
        Err(e) => self.report(e),
      }
    }
    removed
  }
}

fn sweep_loop(inner: Arc<Inner>, every: Duration) {
  loop {
    {
      let mut stop = inner.stop.lock();
      if !*stop {
        inner.wake.wait_for(&mut stop, every);
      }
      if *stop {
        return;
      }
    }
    inner.sweep();
  }
}

impl FileBackend {
  /// Creates `dir` (mode 0700) if needed and checks that it is a writable
  /// directory.
  pub fn new(opts: FileOptions) -> Result<Self> {
    let dir = &opts.dir;
    match fs::metadata(dir) {
      Ok(m) if !m.is_dir() => return Err(StoreError::new(Code::InvalidOption, format!("{} exists and is not a directory", dir.display()))),
      Ok(_) => {}
      Err(e) if e.kind() == ErrorKind::NotFound => {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| io_err("cannot create directory", dir, e))?;
      }
      Err(e) => return Err(io_err("cannot use directory", dir, e)),
    }
    let probe = dir.join(format!("{TMP_PREFIX}{}-probe-{}", now_ms(), std::process::id()));
    File::create(&probe).and_then(|_| fs::remove_file(&probe)).map_err(|e| io_err("cannot write in", dir, e))?;
    let inner = Arc::new(Inner {
      fast_reads: AtomicBool::new(opts.fast_reads),
      dir: dir.clone(),
      durable: opts.durable,
      closed: AtomicBool::new(false),
      report: opts.report,
      stop: Mutex::new(false),
      wake: Condvar::new(),
      recycled: Mutex::new(std::collections::VecDeque::new()),
      exchange: AtomicBool::new(cfg!(target_os = "linux")),
      cache: if opts.read_cache_bytes > 0 { ReadCache::new(dir, opts.read_cache_bytes) } else { None },
      pages: Cursors::new(),
    });
    let sweeper = match opts.sweep_interval {
      Some(every) => {
        let i = inner.clone();
        Some(
          std::thread::Builder::new()
            .name("rs-store-file-sweep".into())
            .spawn(move || sweep_loop(i, every))
            .map_err(|e| StoreError::new(Code::Internal, format!("cannot start sweeper: {e}")))?,
        )
      }
      None => None,
    };
    Ok(FileBackend { inner, inline_small_batches: opts.inline_small_batches, sweeper: Mutex::new(sweeper) })
  }

  /// Deletes expired files now; returns how many files were removed.
  pub fn sweep_now(&self) -> usize {
    self.inner.sweep()
  }

  /// Runs one op synchronously (on the calling thread).
  fn run_sync(inner: &Inner, op: &Op) -> Result<Reply> {
    Ok(match op {
      Op::Get(id) => Reply::Value(inner.get(id)?),
      Op::Set(id, v, exp) => {
        inner.write(id, v, *exp)?;
        Reply::Done
      }
      // Checked, then written under the directory's flock: atomic among
      // conditional sets of every process (a plain set does not take it).
      Op::SetIf(id, v, exp, cond) => Reply::Bool(inner.guarded(|| {
        if inner.read_live(id)?.is_some() != (*cond == Cond::Present) {
          return Ok(false);
        }
        inner.write(id, v, *exp)?;
        Ok(true)
      })?),
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
      Op::Clear => {
        inner.drop_recycled();
        let mut n = 0;
        for (p, s) in inner.live_files()? {
          if inner.changing(Some(&s.header.id), &p, || fs::remove_file(&p)).is_ok() {
            n += 1;
          }
        }
        Reply::Count(n)
      }
    })
  }

  async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> T + Send + 'static) -> Result<T> {
    let inner = self.inner.clone();
    tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| StoreError::new(Code::Internal, format!("file task failed: {e}")))
  }
}

/// Reads that never wait on the disk (Linux: `openat2(RESOLVE_CACHED)` +
/// `preadv2(RWF_NOWAIT)`).
mod nowait {
  use std::path::Path;

  /// Larger files are left to the normal path.
  #[cfg(target_os = "linux")]
  const MAX_NOW_BYTES: usize = 4 * 1024 * 1024;

  pub enum Read {
    Done(Vec<u8>),
    Missing,
    /// Path or data not in the kernel's caches: read the normal way.
    WouldBlock,
    /// This kernel or file system cannot do it: stop trying.
    Unsupported,
  }

  #[cfg(target_os = "linux")]
  pub fn read(path: &Path) -> Read {
    use std::ffi::CString;
    use std::fs::File;
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;

    let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else { return Read::Unsupported };
    let opened = std::time::Instant::now();
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: open_how is plain data; zeroed is a valid value for every field.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // O_NOATIME: a read must not dirty the inode (an atime update is a
    // journal write); allowed on files we own, which ours are.
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOATIME) as u64;
    how.resolve = libc::RESOLVE_CACHED;
    // SAFETY: valid NUL-terminated path and open_how of the size we pass.
    let fd = unsafe {
      libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, cpath.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
      return match errno() {
        libc::ENOENT => Read::Missing,
        libc::EAGAIN => Read::WouldBlock,
        libc::ENOSYS | libc::EINVAL | libc::E2BIG => Read::Unsupported,
        // EPERM: O_NOATIME on a file we do not own (or a sandbox): normal path
        _ => Read::WouldBlock, // the normal path reports real errors
      };
    }
    // SAFETY: fd is a fresh descriptor we own; File closes it.
    let file = unsafe { File::from_raw_fd(fd as i32) };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
      if buf.len() > MAX_NOW_BYTES {
        return Read::WouldBlock; // not a session this thread should copy
      }
      if buf.capacity() - buf.len() < 1024 {
        buf.reserve(buf.capacity());
      }
      let spare = buf.capacity() - buf.len();
      let iov = libc::iovec { iov_base: unsafe { buf.as_mut_ptr().add(buf.len()) } as *mut libc::c_void, iov_len: spare };
      // SAFETY: iov points into buf's spare capacity; the fd is open.
      let n = unsafe { libc::preadv2(std::os::fd::AsRawFd::as_raw_fd(&file), &iov, 1, buf.len() as libc::off_t, libc::RWF_NOWAIT) };
      if n < 0 {
        return match errno() {
          libc::EAGAIN => Read::WouldBlock,
          libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL => Read::Unsupported,
          _ => Read::WouldBlock,
        };
      }
      // SAFETY: the kernel initialized n more bytes.
      unsafe { buf.set_len(buf.len() + n as usize) };
      // A short read of a regular file is its end: no second call to learn
      // it. (A file rewritten meanwhile is caught by the record's checksum.)
      if n == 0 || (n as usize) < spare {
        // See `Inner::write`: a slow read may have met a recycled inode's reuse.
        let quick = opened.elapsed() < super::REUSE_QUIET;
        return if quick || super::same_file(&file, path) { Read::Done(buf) } else { Read::WouldBlock };
      }
    }
  }

  #[cfg(not(target_os = "linux"))]
  pub fn read(_: &Path) -> Read {
    Read::Unsupported
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
    let shards = if ops.iter().any(|op| op.id().is_none()) { 1 } else { SHARDS.min(n) };
    let mut groups: Vec<Vec<(usize, Op)>> = (0..shards).map(|_| Vec::new()).collect();
    for (i, op) in ops.into_iter().enumerate() {
      let g = op.id().map_or(0, |id| (shard_of(id) % shards as u64) as usize);
      groups[g].push((i, op));
    }
    let tasks = groups
      .into_iter()
      .filter(|g| !g.is_empty())
      .map(|group| self.blocking(move |inner| group.into_iter().map(|(i, op)| (i, Self::run_sync(inner, &op))).collect::<Vec<_>>()));
    let mut out: Vec<Option<Result<Reply>>> = (0..n).map(|_| None).collect();
    for r in futures::future::join_all(tasks).await {
      match r {
        Ok(pairs) => pairs.into_iter().for_each(|(i, r)| out[i] = Some(r)),
        Err(e) => out.iter_mut().filter(|o| o.is_none()).for_each(|o| *o = Some(Err(e.clone()))),
      }
    }
    out.into_iter().map(|r| r.unwrap_or_else(|| Err(StoreError::new(Code::Internal, "no reply")))).collect()
  }

  async fn close(&self) -> Result<()> {
    self.inner.closed.store(true, Ordering::Release);
    *self.inner.stop.lock() = true;
    self.inner.wake.notify_all();
    let handle = self.sweeper.lock().take();
    if let Some(h) = handle {
      let _ = tokio::task::spawn_blocking(move || h.join()).await;
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

impl Drop for FileBackend {
  fn drop(&mut self) {
    *self.inner.stop.lock() = true;
    self.inner.wake.notify_all();
  }
}

#[cfg(test)]
mod tests {
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
    std::thread::sleep(Duration::from_millis(super::super::file_cache::MAX_AGE_MS + 50));
    assert_eq!(i.get_now("x"), Some(Some(b"hand".to_vec())), "read again once older than the max age");
    assert_eq!(i.get_now("x"), Some(Some(b"hand".to_vec())));
    edit_by_hand(i, "x", b"hand2");
    assert_eq!(i.get_now("x"), Some(Some(b"hand".to_vec())), "and cached again");
    fs::remove_file(d.join(super::super::file_cache::GENS_FILE)).unwrap();
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

  #[test]
  fn not_a_directory() {
    let d = tmpdir("notdir");
    fs::write(&d, b"file").unwrap();
    let e = FileBackend::new(FileOptions { fast_reads: false, ..options(&d) }).err().unwrap();
    assert_eq!(e.code, Code::InvalidOption);
    fs::remove_file(&d).unwrap();
  }
}
