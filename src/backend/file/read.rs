//! Reading sessions: one file, a no-wait read on the calling thread, the
//! read cache's fast path, and the walks over the directory.

use super::*;

/// Whether the open `file` is (still) the file at `path`. A recycled inode
/// (see [`Inner::write`]) can be rewritten, with the next version of some
/// session, after it left its session file's name: what a reader got from it
/// then may be a version not yet in place, and a later read could go back to
/// the older one in place. Only a read of the inode still at the path counts;
/// otherwise the reader reads again. Writers wait `REUSE_QUIET` before
/// rewriting such an inode, so a read that took less than that from its open
/// needs no check (the usual case: a few µs).
pub(super) fn same_file(file: &File, path: &Path) -> bool {
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
pub(super) fn read_in_place(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
  let opened = std::time::Instant::now();
  let f = files::open_read(path)?;
  let bytes = files::read_open(&f)?;
  if opened.elapsed() >= REUSE_QUIET && !same_file(&f, path) {
    fs::metadata(path)?; // removed meanwhile: NotFound
    return Ok(None);
  }
  Ok(Some(bytes))
}

/// What one read of a session file found.
enum Loaded {
  Done(Result<Option<Stored>>),
  /// Torn, foreign or moved meanwhile: maybe a write in progress.
  Raced(StoreError),
}

/// Whether `path` is the file of session `id`.
pub(super) fn names(path: &Path, id: &str) -> bool {
  path.file_name().is_some_and(|n| *n == *record::name_for(id))
}

impl Inner {
  /// The stored file of `id`, if present and really holding `id`; `held`:
  /// the caller holds its write lock (see `writers.rs`).
  pub(super) fn read(&self, id: &str, held: bool) -> Result<Option<(PathBuf, Stored)>> {
    self.check_open()?;
    let path = self.path_for(id);
    match self.load(&path, held) {
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
  /// that does not parse, fails its checksum, holds a record whose id does
  /// not name this file, or read an inode that left the name meanwhile may
  /// have met a write in progress (a recycled inode, see [`Inner::write`]):
  /// it is read again, up to `READ_TRIES` times, and then once more holding
  /// the file's write lock (`held`: the caller holds it already), where no
  /// write can move the file: only what fails then is corrupt. So a read
  /// that races writes (on a busy machine, each slow read does) never
  /// answers missing and never reports corruption; a torn read is never
  /// returned.
  pub(super) fn load(&self, path: &Path, held: bool) -> Result<Option<Stored>> {
    if !held {
      for _ in 0..READ_TRIES {
        match self.load_once(path) {
          Loaded::Raced(_) => {}
          Loaded::Done(r) => return r,
        }
      }
      let _held = self.writers.hold(slot_of_path(path))?;
      return self.load_locked(path);
    }
    self.load_locked(path)
  }

  /// One read, with the file's write lock held: nothing can race it.
  fn load_locked(&self, path: &Path) -> Result<Option<Stored>> {
    match self.load_once(path) {
      Loaded::Raced(e) => Err(e),
      Loaded::Done(r) => r,
    }
  }

  fn load_once(&self, path: &Path) -> Loaded {
    let bytes = match read_in_place(path) {
      Ok(Some(b)) => b,
      // The inode read left `path` meanwhile (see same_file).
      Ok(None) => return Loaded::Raced(corrupt(path, "it was replaced while being read")),
      Err(e) if e.kind() == ErrorKind::NotFound => return Loaded::Done(Ok(None)),
      Err(e) => {
        return Loaded::Done(Err(match files::not_ours(&e) {
          Some(why) => corrupt(path, &why),
          None => StoreError::io("cannot read", path, e),
        }))
      }
    };
    match parse(path, bytes) {
      Ok(s) if names(path, &s.header.id) => Loaded::Done(Ok(Some(s))),
      Ok(_) => Loaded::Raced(corrupt(path, "it holds another id")),
      Err(e) => Loaded::Raced(e),
    }
  }

  /// [`Backend::get_now`]: the live session of `id` read without waiting on
  /// the disk, or `None` when that cannot be done.
  pub(super) fn get_now(&self, id: &str) -> Option<Option<Vec<u8>>> {
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
  pub(super) fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
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

  /// The live file of `id`; an expired one is deleted on the way (holding
  /// its write lock, and only if it is still expired then).
  pub(super) fn read_live(&self, id: &str) -> Result<Option<(PathBuf, Stored)>> {
    match self.read(id, false)? {
      Some((_, s)) if is_expired(s.header.expires, now_ms()) => {
        let _held = self.hold(id)?;
        self.read_live_held(id)?;
        Ok(None)
      }
      other => Ok(other),
    }
  }

  /// [`Inner::read_live`] for a caller that holds the write lock of `id`.
  pub(super) fn read_live_held(&self, id: &str) -> Result<Option<(PathBuf, Stored)>> {
    match self.read(id, true)? {
      Some((path, s)) if is_expired(s.header.expires, now_ms()) => {
        let _ = self.changing(Some(id), &path, || fs::remove_file(&path));
        Ok(None)
      }
      other => Ok(other),
    }
  }

  /// Every session file name in the directory.
  pub(super) fn files(&self) -> Result<Vec<PathBuf>> {
    self.check_open()?;
    let rd = fs::read_dir(&self.dir).map_err(|e| StoreError::io("cannot list", &self.dir, e))?;
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
  pub(super) fn page(&self, cursor: &str, count: u32) -> Result<crate::backend::Page> {
    self.check_open()?;
    let mut rd = match self.pages.take(cursor)? {
      Some(rd) => rd,
      None => fs::read_dir(&self.dir).map_err(|e| StoreError::io("cannot list", &self.dir, e))?,
    };
    let now = now_ms();
    let mut out = Vec::new();
    while out.len() < count as usize {
      let Some(ent) = rd.next() else { return Ok((String::new(), out)) };
      let Ok(ent) = ent else { continue };
      let p = ent.path();
      if p.extension().is_none_or(|x| x != EXT) {
        continue;
      }
      match self.load(&p, false) {
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
  pub(super) fn live_count(&self) -> Result<u64> {
    let now = now_ms();
    let mut n = 0;
    for p in self.files()? {
      match self.load(&p, false) {
        Ok(Some(s)) if !is_expired(s.header.expires, now) => n += 1,
        Ok(_) => {}
        Err(e) => self.report(e),
      }
    }
    Ok(n)
  }

  /// Every live session; corrupt files are reported and skipped.
  pub(super) fn live_files(&self) -> Result<Vec<(PathBuf, Stored)>> {
    let now = now_ms();
    let mut out = Vec::new();
    for p in self.files()? {
      match self.load(&p, false) {
        Ok(None) => {}
        Err(e) => self.report(e),
        Ok(Some(s)) if is_expired(s.header.expires, now) => {}
        Ok(Some(s)) => out.push((p, s)),
      }
    }
    Ok(out)
  }
}

/// Reads that never wait on the disk (Linux: `openat2(RESOLVE_CACHED)` +
/// `preadv2(RWF_NOWAIT)`).
pub(super) mod nowait {
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
    // O_NOFOLLOW | O_NONBLOCK: never through a link, never waiting on a
    // FIFO (see files.rs); flags, no system call of their own.
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOATIME | libc::O_NOFOLLOW | libc::O_NONBLOCK) as u64;
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
      // SAFETY: buf.len() <= capacity, so the pointer stays within (or one past) buf's allocation.
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
