//! One change of a session at a time, across every process on the directory.
//!
//! A set is one rename and needs no lock against another set, but touch,
//! add/replace and remove read the file and then act on what they read: a
//! touch that read the old session and rewrites it after another process's
//! set undoes that set, and one that rewrites it after a remove brings the
//! session back. So every change of a session file (set, add, replace,
//! touch, remove, the removal of an expired file, clear) runs holding its
//! id's write lock; reads take none.
//!
//! The locks are byte-range locks on one empty file, `.rs-store-writers`:
//! byte `k` stands for the sessions of cache slot `k` (16 bits of the file
//! name's hash, see `cache.rs`), so two ids share a lock once in 65,536.
//! Linux's open-file-description locks (`F_OFD_SETLKW`) belong to the
//! store's descriptor, not to the process, so two stores of one process
//! exclude each other as two processes do, and a lock ends with its holder:
//! a process that dies holding one (kill -9) releases it as its descriptors
//! close. Threads of one store share that descriptor, so a stripe of
//! in-process mutexes orders them first. Cost per change: two `fcntl` calls
//! (lock, unlock), no file created or removed; a lock file per id would
//! cost an open, a close and an unlink per write, and a compare-and-swap
//! on the inode after an exchange would let readers see the undone write.
//! Elsewhere (other Unixes) one `flock` on the whole file serves every id.

use std::fs::File;
use std::path::Path;

use parking_lot::{Mutex, MutexGuard};

use super::files;
use crate::error::{Result, StoreError};

/// The lock table's file name in the store's directory.
pub const WRITERS_FILE: &str = ".rs-store-writers";
/// The users' lock table (per-user sessions, `users.rs`): the same kind of
/// table, byte `k` for the users whose index file's hash starts with `k`.
/// A file of its own, opened only by stores that need it, so that a store
/// without `userOf` has no extra file, and so that a thread may hold a
/// user's lock and then a session's (the stripes of the two differ).
pub const USERS_FILE: &str = ".rs-store-users";
/// In-process mutexes ordering the store's own threads (a slot's mutex is
/// `slot % STRIPES`); elsewhere than Linux one lock serves every slot.
#[cfg(target_os = "linux")]
pub(super) const STRIPES: usize = 64;
#[cfg(not(target_os = "linux"))]
pub(super) const STRIPES: usize = 1;

pub struct Writers {
  file: File,
  name: &'static str,
  stripes: Box<[Mutex<()>]>,
}

/// A held write lock (or two, [`Writers::hold_pair`]); released when dropped.
pub struct Held<'a> {
  writers: &'a Writers,
  slot: usize,
  /// The second range of a pair, locked after `slot`.
  then: Option<usize>,
  _order: MutexGuard<'a, ()>,
  _then_order: Option<MutexGuard<'a, ()>>,
}

impl Writers {
  /// The lock table `name` (`WRITERS_FILE`, `USERS_FILE`) of `dir`.
  pub fn open(dir: &Path, name: &'static str) -> Result<Writers> {
    let path = dir.join(name);
    let (file, _) = files::open_rw(&path, true).map_err(|e| StoreError::io("cannot open", &path, e))?;
    Ok(Writers { file, name, stripes: (0..STRIPES).map(|_| Mutex::new(())).collect() })
  }

  /// Takes the write lock of the sessions of `slot`, waiting for another
  /// holder (in this store, another store or another process) to finish.
  pub fn hold(&self, slot: usize) -> Result<Held<'_>> {
    let slot = slot & 0xffff;
    let order = self.stripes[slot % STRIPES].lock();
    self.range(slot, true).map_err(|e| StoreError::io("cannot lock", Path::new(self.name), e))?;
    Ok(Held { writers: self, slot, then: None, _order: order, _then_order: None })
  }

  /// Takes the write locks of two slots (a rotation's two ids). The
  /// mutexes are non-reentrant and shared by slots: they are taken in
  /// stripe order, once when both slots share one, then the ranges in
  /// slot order (once when they are one range). Every holder of a pair
  /// takes all its mutexes before any range, and ranges only upward, so no
  /// two pairs, in this process or another, wait on each other.
  pub fn hold_pair(&self, a: usize, b: usize) -> Result<Held<'_>> {
    let (a, b) = (a & 0xffff, b & 0xffff);
    let (sa, sb) = (a % STRIPES, b % STRIPES);
    let order = self.stripes[sa.min(sb)].lock();
    let then_order = (sa != sb).then(|| self.stripes[sa.max(sb)].lock());
    let lock = |slot| self.range(slot, true).map_err(|e| StoreError::io("cannot lock", Path::new(self.name), e));
    let (first, second) = (a.min(b), a.max(b));
    lock(first)?;
    // Elsewhere than Linux one lock is the whole file: taken once.
    let then = (cfg!(target_os = "linux") && second != first).then_some(second);
    if let Some(s) = then {
      if let Err(e) = lock(s) {
        let _ = self.range(first, false);
        return Err(e);
      }
    }
    Ok(Held { writers: self, slot: first, then, _order: order, _then_order: then_order })
  }

  #[cfg(target_os = "linux")]
  fn range(&self, slot: usize, lock: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock is plain data; zeroed is valid (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if lock { libc::F_WRLCK } else { libc::F_UNLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = slot as libc::off_t;
    fl.l_len = 1;
    let cmd = if lock { libc::F_OFD_SETLKW } else { libc::F_OFD_SETLK };
    loop {
      // SAFETY: a valid descriptor and a flock struct that outlives the call.
      if unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &fl as *const libc::flock) } == 0 {
        return Ok(());
      }
      let e = std::io::Error::last_os_error();
      if e.kind() != std::io::ErrorKind::Interrupted {
        return Err(e);
      }
    }
  }

  #[cfg(not(target_os = "linux"))]
  fn range(&self, _slot: usize, lock: bool) -> std::io::Result<()> {
    if lock {
      self.file.lock()
    } else {
      self.file.unlock()
    }
  }
}

impl Drop for Held<'_> {
  fn drop(&mut self) {
    // Unlocking a range we hold cannot fail on a valid descriptor.
    if let Some(s) = self.then {
      let _ = self.writers.range(s, false);
    }
    let _ = self.writers.range(self.slot, false);
  }
}
