//! Writing sessions: a temp file that takes the session's name in one step
//! (an exchange on Linux, recycling the old inode), removal and touch;
//! every change is announced to the read cache first.

use super::*;

/// A number no other temp file of this process has: one counter for every
/// store of the process (two stores on one directory must not pick the same
/// temp name; the pid tells processes apart).
pub(super) fn next_tmp() -> u64 {
  static COUNTER: AtomicU64 = AtomicU64::new(0);
  COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: swaps two names in one step.
#[cfg(target_os = "linux")]
pub(super) fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
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
  /// Runs `f`, a change of the session file at `path` (of `id` when known),
  /// announced to the read caches of every process (see
  /// `cache.rs`).
  pub(super) fn changing<T>(&self, id: Option<&str>, path: &Path, f: impl FnOnce() -> T) -> T {
    let Some(c) = &self.cache else { return f() };
    let change = c.begin(id, slot_of_path(path));
    let r = f();
    c.end(change, None);
    r
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
  pub(super) fn write(&self, id: &str, payload: &[u8], expires: Option<Expiry>) -> Result<()> {
    self.write_owned(id, payload, expires, record::Owner::default())
  }

  /// [`Inner::write`] of a record with its user and absolute end (`users.rs`).
  pub(super) fn write_owned(&self, id: &str, payload: &[u8], expires: Option<Expiry>, owner: record::Owner) -> Result<()> {
    self.check_open()?;
    let path = self.path_for(id);
    let buf = record::encode_owned(id, expires, payload, owner)?;
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
  pub(super) fn write_file(&self, path: &Path, buf: &[u8]) -> Result<()> {
    loop {
      let (tmp, born, reused) = match self.take_recycled() {
        Some((tmp, born)) => (tmp, born, true),
        None => {
          let born = now_ms();
          (self.tmp_path(born), born, false)
        }
      };
      // A recycled name is opened without following a link and checked to
      // be a regular file of ours with no other name: an exchange moves
      // whatever was at the session file's name (a link someone planted
      // there) to the temp name. The fstat also gives the old length.
      let file =
        if reused { files::open_existing(&tmp).map(|(f, m)| (f, Some(m.len()))) } else { files::create_new(&tmp).map(|f| (f, None)) };
      match file.and_then(|(f, old_len)| self.commit(f, &tmp, buf, path, old_len)) {
        Ok(placed) => {
          self.recycle(placed, tmp, born);
          return Ok(());
        }
        // A recycled one removed under us (a sweep): the next one, or a new file.
        Err(e) if reused && e.kind() == ErrorKind::NotFound => {}
        // Not a file of ours (see above): its name goes, never its target.
        Err(e) if reused && files::not_ours(&e).is_some() => {
          let _ = fs::remove_file(&tmp);
        }
        Err(e) => {
          let _ = fs::remove_file(&tmp);
          return Err(StoreError::io("cannot write", path, e));
        }
      }
    }
  }

  /// A new temp file name; the birth time in it lets any process's sweep
  /// remove the leftovers of a killed writer.
  pub(super) fn tmp_path(&self, born: u64) -> PathBuf {
    self.dir.join(format!("{TMP_PREFIX}{born}-{}-{}", std::process::id(), next_tmp()))
  }

  /// Fills the temp file `f` (at `tmp`; `old_len`: the length of the old
  /// record it holds, when recycled) and puts it in place at `path`.
  pub(super) fn commit(&self, mut f: File, tmp: &Path, buf: &[u8], path: &Path, old_len: Option<u64>) -> std::io::Result<Placed> {
    // Just opened: written from its start.
    f.write_all(buf)?;
    if old_len.is_some_and(|n| n > buf.len() as u64) {
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
  pub(super) fn place(&self, tmp: &Path, path: &Path) -> std::io::Result<Placed> {
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
  pub(super) fn recycle(&self, placed: Placed, tmp: PathBuf, born: u64) {
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
  pub(super) fn take_recycled(&self) -> Option<(PathBuf, u64)> {
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
  pub(super) fn drop_recycled(&self) {
    let all: Vec<_> = self.recycled.lock().drain(..).collect();
    for (tmp, ..) in all {
      let _ = fs::remove_file(&tmp);
    }
  }

  /// Removes the session file of `id`, holding its write lock (see
  /// `writers.rs`): a touch or replace in flight cannot bring it back.
  pub(super) fn remove(&self, id: &str) -> Result<bool> {
    let _held = self.hold(id)?;
    let live = self.read_live_held(id).unwrap_or(None).is_some();
    let path = self.path_for(id);
    match self.changing(Some(id), &path, || fs::remove_file(&path)) {
      Ok(()) => Ok(live),
      Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
      Err(e) => Err(StoreError::io("cannot delete", &path, e)),
    }
  }

  /// Rewrites the session of `id` with a new expiry, read and written
  /// holding its write lock: it never undoes another process's write or
  /// removal, and never recreates a session. Its user and absolute end
  /// stay, and the expiry never goes past that end (per-user sessions; the
  /// header is parsed anyway, so a plain store pays nothing for it).
  pub(super) fn touch(&self, id: &str, expires: Option<Expiry>) -> Result<bool> {
    let _held = self.hold(id)?;
    match self.read_live_held(id)? {
      None => Ok(false),
      Some((_, s)) => {
        let record::Header { user, end, .. } = s.header;
        self.write_owned(id, &s.payload, crate::backend::UserRules::clamp(end, expires), record::Owner { user, end })?;
        Ok(true)
      }
    }
  }
}
