//! How the store opens the files of its directory: never through a symbolic
//! link, never waiting on a FIFO, and (where it writes into a file it did not
//! just create) only a regular file of its own with no other name. The
//! directory itself must be its own and writable by nobody else
//! ([`check_dir`]), so nobody else can plant anything there; these checks
//! hold even so (a link planted earlier, a directory made private later).

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use crate::error::{Code, Result, StoreError};

/// Flags of every open here: `O_NOFOLLOW` (a link at the name fails with
/// `ELOOP` instead of opening its target) and `O_NONBLOCK` (a FIFO at the
/// name opens at once instead of waiting for a peer; no effect on regular
/// files). Flags only: no system call of their own.
#[cfg(unix)]
const NO_LINKS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

fn options() -> OpenOptions {
  let mut o = crate::backend::private_file();
  #[cfg(unix)]
  std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, NO_LINKS);
  o
}

/// Opens `path` for reading.
pub(super) fn open_read(path: &Path) -> io::Result<File> {
  options().read(true).open(path)
}

/// Opens (or, with `create`, creates) `path` for reading and writing,
/// checked with [`check_ours`] before anything is written.
pub(super) fn open_rw(path: &Path, create: bool) -> io::Result<(File, Metadata)> {
  let f = options().read(true).write(true).create(create).truncate(false).open(path)?;
  let meta = f.metadata()?;
  check_ours(&meta)?;
  Ok((f, meta))
}

/// Opens an existing file to write it over (a recycled temp file); see
/// [`open_rw`].
pub(super) fn open_existing(path: &Path) -> io::Result<(File, Metadata)> {
  let f = options().write(true).open(path)?;
  let meta = f.metadata()?;
  check_ours(&meta)?;
  Ok((f, meta))
}

/// Creates `path`, which must not exist (a link at it fails too).
pub(super) fn create_new(path: &Path) -> io::Result<File> {
  options().write(true).create_new(true).open(path)
}

/// Whether an open file is one rs-store may write into: a regular file of
/// this user with no other name (a hard link would let a write reach
/// another file).
pub(super) fn check_ours(meta: &Metadata) -> io::Result<()> {
  if !meta.file_type().is_file() {
    return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
  }
  #[cfg(unix)]
  {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
      return Err(io::Error::new(io::ErrorKind::InvalidData, format!("owned by uid {}, not by this process's uid {me}", meta.uid())));
    }
    if meta.nlink() > 1 {
      return Err(io::Error::new(io::ErrorKind::InvalidData, "it has other names (hard links)"));
    }
  }
  Ok(())
}

/// Why an open or read of `path` failed because what is there is not a file
/// of ours (a link, a FIFO or device, another user's file), if that is why.
pub(super) fn not_ours(e: &io::Error) -> Option<String> {
  #[cfg(unix)]
  if e.raw_os_error() == Some(libc::ELOOP) {
    return Some("it is a symbolic link, which rs-store never follows".into());
  }
  #[cfg(unix)]
  if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::EISDIR)) {
    return Some("it is not a regular file".into());
  }
  (e.kind() == io::ErrorKind::InvalidData).then(|| e.to_string())
}

/// The whole file at `path` (see [`read_open`]).
pub(super) fn read(path: &Path) -> io::Result<Vec<u8>> {
  read_open(&open_read(path)?)
}

/// The whole of an open file, which must be a regular file of this user.
/// One `fstat` (which also sizes the buffer) and, usually, one `read`: a
/// short read of a regular file is its end. (The checksum of a session
/// record catches a file rewritten meanwhile.)
pub(super) fn read_open(mut f: &File) -> io::Result<Vec<u8>> {
  let meta = f.metadata()?;
  if !meta.file_type().is_file() {
    return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
  }
  #[cfg(unix)]
  {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
      return Err(io::Error::new(io::ErrorKind::InvalidData, format!("owned by uid {}, another user", meta.uid())));
    }
  }
  let mut bytes = vec![0; meta.len() as usize + 1];
  let mut filled = 0;
  loop {
    let n = f.read(&mut bytes[filled..])?;
    filled += n;
    if n == 0 || filled < bytes.len() {
      bytes.truncate(filled);
      return Ok(bytes);
    }
    bytes.resize(bytes.len() * 2, 0); // grew since the fstat
  }
}

/// Refuses a directory that another user owns or may write into (a group-
/// or world-writable one, sticky or not): they could plant links there, for
/// the store to write through, or session files of their own making.
pub(super) fn check_dir(dir: &Path, meta: &Metadata) -> Result<()> {
  #[cfg(unix)]
  {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
      return Err(StoreError::new(
        Code::InvalidOption,
        format!(
          "{} belongs to another user (uid {}; this process runs as uid {me}), who could plant links or sessions in it: use a directory of this user's own (rs-store creates a missing one with mode 0700)",
          dir.display(),
          meta.uid()
        ),
      ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
      return Err(StoreError::new(
        Code::InvalidOption,
        format!(
          "{} is writable by other users (mode {mode:04o}), who could plant links or sessions in it: make it private (chmod 700 {}) or use a directory of its own",
          dir.display(),
          dir.display()
        ),
      ));
    }
  }
  #[cfg(not(unix))]
  let _ = (dir, meta);
  Ok(())
}
