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
      // Opened with no budget too: a store that caches nothing must still
      // tell the other processes' caches of its changes.
      cache: ReadCache::new(dir, opts.read_cache_bytes),
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
  #[cfg(test)]
  fn run_sync(inner: &Inner, op: &Op) -> Result<Reply> {
    Self::run_under(inner, op, &inner.rules)
  }

  /// [`FileBackend::run_sync`], its writes under `rules` (the store's own,
  /// or a daemon client's).
  fn run_under(inner: &Inner, op: &Op, rules: &UserRules) -> Result<Reply> {
    Ok(match op {
      Op::Get(id) => Reply::Value(inner.get(id)?),
      // A store with per-user rules reads the session first (its user and
      // absolute end): users.rs.
      Op::Set(id, v, exp) if rules.any() => {
        inner.put(id, v, *exp, None, users::Whose::Keep, rules)?;
        Reply::Done
      }
      Op::SetIf(id, v, exp, cond) if rules.any() => Reply::Bool(inner.put(id, v, *exp, Some(*cond), users::Whose::Keep, rules)?),
      Op::Write(id, v, exp, cond, user) => match (inner.put(id, v, *exp, *cond, users::Whose::User(user.as_deref()), rules)?, cond) {
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

  async fn exec_with(&self, rules: UserRules, ops: Vec<Op>) -> Vec<Result<Reply>> {
    let n = ops.len();
    if self.inline_small_batches && n <= INLINE_MAX {
      return ops.iter().map(|op| Self::run_under(&self.inner, op, &rules)).collect();
    }
    // With per-user sessions the writes of one user stay in one group too,
    // in call order (the order of the cap).
    let groups = if rules.users { shards_joined(ops, SHARDS, Op::user) } else { shards(ops, SHARDS) };
    let tasks = groups.into_iter().map(|group| {
      let places: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
      let run = self.blocking(move |inner| group.into_iter().map(|(i, op)| (i, Self::run_under(inner, &op, &rules))).collect::<Vec<_>>());
      async move { run.await.unwrap_or_else(|e| places.into_iter().map(|i| (i, Err(e.clone()))).collect()) }
    });
    in_order(n, futures::future::join_all(tasks).await.into_iter().flatten())
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
    self.exec_with(self.inner.rules, ops).await
  }

  /// The daemon's storage: each client's rules come with its ops.
  async fn exec_under(&self, rules: UserRules, ops: Vec<Op>) -> Vec<Result<Reply>> {
    self.exec_with(rules, ops).await
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
mod tests;
