//! Synchro's `FileSessionStore`: sessions live in memory (the memory backend,
//! so reads and writes stay on the JS thread) and are persisted to one JSON
//! object `{ "<id>": <session>, … }` (`sessionStateFile`, e.g.
//! `sessions.json`, readable with `jq`), loaded at start.
//!
//! * A writer thread persists changes: a burst of changes within
//!   `coalesce` becomes one write. Writes are atomic (temp file + rename).
//! * Expiries are kept beside it in `<file>.expires` (`{ "<id>": epoch ms }`)
//!   so the main file keeps Synchro's exact shape. A session found without an
//!   expiry there (e.g. a file written by Synchro) gets `default_ttl`.
//! * A store with per-user sessions (`userOf`, `maxSessionsPerUser`,
//!   `maxLifetime`) keeps each session's user, absolute end and place in
//!   the write order in `<file>.users` (`{ "<id>": { "user", "end", "seq" } }`),
//!   written with the other two from one snapshot and reloaded with them,
//!   so the index, the cap and the end hold across a restart. A session
//!   found without an entry there is anonymous and starts its lifetime at
//!   the load. A store without these options neither reads nor writes it.
//! * `flush()` waits until everything changed so far is on disk; `close()`
//!   flushes, then stops the writer.
//! * A main file that is not a JSON object is refused at start
//!   (`ERR_CORRUPT_DATA`) rather than overwritten; one session in it that
//!   cannot be loaded is reported and left out. Files are created 0600, and
//!   the temp files of writers that died mid-write are removed at start.
//! * One store per file: `<file>.lock` is held (`flock`) for the store's
//!   life, so a second store on the file, in this process or another, is
//!   refused (`ERR_STORE_IN_USE`) instead of each overwriting the other's
//!   sessions with its own. `close()` releases it, and the OS does when the
//!   process dies. (The main file cannot carry the lock: every write replaces
//!   it with a new inode.)

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use base64::Engine;
use serde_json::value::RawValue;

use super::memory::{MemoryBackend, MemoryOptions, SavedMeta};
use super::{Changes, Op, Reply, Report, SyncBackend};
use crate::backend::worker::{Shared, Worker};
use crate::error::{Code, Result, StoreError};
use crate::expiry::{after_ms, now_ms, Expiry};

pub struct SnapshotOptions {
  pub file: PathBuf,
  /// Values are codec output (binary): kept as base64 strings in the file.
  pub binary: bool,
  pub memory: MemoryOptions,
  /// Lifetime of loaded sessions that have no recorded expiry; `None` = none.
  pub default_ttl: Option<Duration>,
  /// How long a burst of changes is gathered before one write.
  pub coalesce: Duration,
  pub report: Option<Report>,
}

#[derive(Default)]
struct WriterState {
  /// Bumped by every change.
  changed: u64,
  /// The `changed` value the file reflects.
  written: u64,
  /// A flush() is waiting: write now, do not wait out the coalescing window.
  flush_wanted: bool,
  last_error: Option<StoreError>,
}

pub struct SnapshotBackend {
  mem: Arc<MemoryBackend>,
  writer: Worker<WriterState>,
  /// The open `<file>.lock`, holding the flock; `None` once closed.
  lock: parking_lot::Mutex<Option<fs::File>>,
}

fn expires_path(file: &Path) -> PathBuf {
  let mut name = file.as_os_str().to_owned();
  name.push(".expires");
  PathBuf::from(name)
}

fn users_path(file: &Path) -> PathBuf {
  let mut name = file.as_os_str().to_owned();
  name.push(".users");
  PathBuf::from(name)
}

fn lock_path(file: &Path) -> PathBuf {
  let mut name = file.as_os_str().to_owned();
  name.push(".lock");
  PathBuf::from(name)
}

/// Takes `<file>.lock` for this store (see the module doc), or refuses with
/// `ERR_STORE_IN_USE` naming the process that holds it. The lock file is
/// never removed: a process could be locking the inode that a remove would
/// take away from under the next one.
fn take_lock(file: &Path) -> Result<fs::File> {
  let path = lock_path(file);
  let mut o = super::private_file();
  o.read(true).write(true).create(true);
  #[cfg(unix)]
  std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
  let mut f = o.open(&path).map_err(|e| StoreError::io("cannot open the lock file", &path, e))?;
  #[cfg(unix)]
  {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
      let e = std::io::Error::last_os_error();
      if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(StoreError::io("cannot lock", &path, e));
      }
      let holder = fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u32>().ok());
      let who = match holder {
        Some(pid) if pid == std::process::id() => "another store in this process".to_string(),
        Some(pid) => format!("process {pid}"),
        None => "another process".to_string(),
      };
      return Err(StoreError::new(
        Code::InUse,
        format!(
          "{} is open in {who} (it holds {}); one store per file: close that one first, or give each its own file",
          file.display(),
          path.display()
        ),
      ));
    }
    // Who holds it, for the error the next one gets.
    let _ = f.set_len(0).and_then(|()| f.write_all(format!("{}\n", std::process::id()).as_bytes()));
  }
  Ok(f)
}

fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
  let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
  let tmp =
    dir.join(format!(".{}.tmp-{}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
  let r = (|| -> std::io::Result<()> {
    let mut f = super::private_file().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
  })();
  r.map_err(|e| {
    let _ = fs::remove_file(&tmp);
    StoreError::io("cannot write", path, e)
  })
}

/// `{ "<id>": <json>, … }` from stored JSON texts, without re-parsing them
/// (binary values, i.e. encrypted or compressed ones, as base64 strings).
fn render(entries: &[(String, Vec<u8>, Option<Expiry>)], binary: bool) -> (Vec<u8>, Vec<u8>) {
  let mut main = Vec::with_capacity(entries.iter().map(|(k, v, _)| k.len() + v.len() + 8).sum::<usize>() + 2);
  let mut exp = serde_json::Map::new();
  main.push(b'{');
  for (i, (id, value, at)) in entries.iter().enumerate() {
    if i > 0 {
      main.push(b',');
    }
    main.extend_from_slice(serde_json::to_string(id).expect("a string serializes").as_bytes());
    main.push(b':');
    if binary {
      main.push(b'"');
      main.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(value).as_bytes());
      main.push(b'"');
    } else {
      main.extend_from_slice(value);
    }
    if let Some(t) = at {
      exp.insert(id.clone(), (*t).into());
    }
  }
  main.push(b'}');
  (main, serde_json::to_vec(&exp).expect("a map serializes"))
}

/// `<file>.users` from the per-user meta of a snapshot.
fn render_users(metas: Vec<(String, SavedMeta)>) -> Vec<u8> {
  let map: serde_json::Map<String, serde_json::Value> =
    metas.into_iter().map(|(id, m)| (id, serde_json::to_value(m).expect("meta serializes"))).collect();
  serde_json::to_vec(&map).expect("a map serializes")
}

/// The per-user meta of `<file>.users` (none when it is missing). One that
/// cannot be read is reported and its sessions load as anonymous: it costs
/// the index, not the sessions.
fn load_users(file: &Path, report: Option<&Report>) -> HashMap<String, SavedMeta> {
  let path = users_path(file);
  let bad = |what: String| {
    if let Some(r) = report {
      r(StoreError::new(Code::Corrupt, format!("{}: {what}; its sessions load as anonymous", path.display())));
    }
  };
  let text = match fs::read(&path) {
    Ok(t) => t,
    Err(e) if e.kind() == ErrorKind::NotFound => return HashMap::new(),
    Err(e) => {
      bad(format!("cannot be read ({e})"));
      return HashMap::new();
    }
  };
  let map: HashMap<String, SavedMeta> = match serde_json::from_slice(&text) {
    Ok(m) => m,
    Err(e) => {
      bad(format!("is not a JSON object of {{ user, end, seq }} ({e})"));
      return HashMap::new();
    }
  };
  map
    .into_iter()
    .map(|(id, mut m)| {
      if let Some(u) = &m.user {
        if let Err(e) = super::check_user(u) {
          bad(format!("session {id:?}: {}", e.message));
          m.user = None;
        }
      }
      (id, m)
    })
    .collect()
}

/// Loads the sessions of `file`. Each session's text is taken as it is in
/// the file (not parsed into values, so any depth the store accepted loads
/// again). A session that cannot be loaded (an encrypted entry that is not
/// base64) is reported and left out: it costs that session, not the store.
/// Answers whether the store dropped any (the cap, the bounds): the files
/// then want rewriting.
fn load(mem: &MemoryBackend, file: &Path, default_ttl: Option<Duration>, binary: bool, report: Option<&Report>) -> Result<bool> {
  let text = match fs::read(file) {
    Ok(t) => t,
    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
    Err(e) => return Err(StoreError::io("cannot read", file, e)),
  };
  let sessions: HashMap<String, &RawValue> = serde_json::from_slice(&text)
    .map_err(|e| StoreError::new(Code::Corrupt, format!("{} is not a JSON object of sessions ({e}); fix or move it", file.display())))?;
  let expires: HashMap<String, u64> = fs::read(expires_path(file))
    .ok()
    .and_then(|t| serde_json::from_slice::<HashMap<String, serde_json::Value>>(&t).ok())
    .map(|m| m.into_iter().filter_map(|(k, v)| v.as_u64().map(|t| (k, t))).collect())
    .unwrap_or_default();
  let mut metas = if mem.has_users() { load_users(file, report) } else { HashMap::new() };
  // In write order, those without a recorded place last: the cap keeps the
  // most recently written, as it did before the restart.
  let mut sessions: Vec<(String, &RawValue, Option<SavedMeta>)> = sessions
    .into_iter()
    .map(|(id, raw)| {
      let m = metas.remove(&id);
      (id, raw, m)
    })
    .collect();
  sessions.sort_by_key(|(_, _, m)| m.as_ref().map_or(u64::MAX, |m| m.seq));
  let now = now_ms();
  let mut dropped = false;
  for (id, raw, meta) in sessions {
    let at = match expires.get(&id) {
      Some(&t) if t <= now => continue,
      Some(&t) => Some(t),
      None => default_ttl.map(|d| after_ms(d.as_millis() as u64)),
    };
    // Encrypted/compressed values are base64 strings; a JSON session left
    // from before the codec was turned on is kept as is (the codec then
    // refuses or accepts it on read, and reports).
    let stored = match serde_json::from_str::<String>(raw.get()) {
      Ok(b64) if binary => match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(b) => b,
        Err(e) => {
          if let Some(r) = report {
            r(StoreError::new(Code::Corrupt, format!("{}: session {id:?} is not base64 ({e}); left out", file.display())));
          }
          continue;
        }
      },
      _ => raw.get().as_bytes().to_vec(),
    };
    dropped |= mem.restore(&id, stored, at, meta)?;
  }
  Ok(dropped)
}

/// Removes the temp files of writers that died mid-write (`.<name>.tmp-<pid>`
/// of a process that is gone): they hold a copy of every session.
fn remove_stale_temps(file: &Path) {
  let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
  let Some(name) = file.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
  let Ok(list) = fs::read_dir(dir) else { return };
  for ent in list.flatten() {
    let entry = ent.file_name().to_string_lossy().into_owned();
    let pid = [format!(".{name}.tmp-"), format!(".{name}.expires.tmp-"), format!(".{name}.users.tmp-")]
      .iter()
      .find_map(|p| entry.strip_prefix(p.as_str()).and_then(|pid| pid.parse::<u32>().ok()));
    if let Some(pid) = pid {
      if pid != std::process::id() && !alive(pid) {
        let _ = fs::remove_file(ent.path());
      }
    }
  }
}

/// Whether process `pid` exists (signal 0 checks without sending).
fn alive(pid: u32) -> bool {
  #[cfg(unix)]
  {
    // SAFETY: kill with signal 0 only checks for the process.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
  }
  #[cfg(not(unix))]
  {
    let _ = pid;
    true
  }
}

fn writer_loop(
  mem: Arc<MemoryBackend>,
  shared: &Shared<WriterState>,
  file: PathBuf,
  coalesce: Duration,
  report: Option<Report>,
  binary: bool,
) {
  loop {
    {
      let mut st = shared.lock();
      while st.changed == st.written && !st.stop {
        shared.wait(&mut st, None);
      }
      if st.changed == st.written && st.stop {
        return;
      }
      // Gather the rest of the burst: later changes notify too, so wait for
      // the deadline; only a stop or a flush cuts the wait short.
      let deadline = std::time::Instant::now() + coalesce;
      while !st.stop && !st.flush_wanted {
        if shared.wait(&mut st, Some(deadline)) {
          break;
        }
      }
      st.flush_wanted = false;
    }
    let target = shared.lock().changed;
    // The side files first: a crash between the writes leaves entries
    // there for sessions the main file lacks, which a load ignores.
    let result = if mem.has_users() {
      mem.snapshot_users().and_then(|(entries, metas)| {
        let (main, exp) = render(&entries, binary);
        atomic_write(&expires_path(&file), &exp)?;
        atomic_write(&users_path(&file), &render_users(metas))?;
        atomic_write(&file, &main)
      })
    } else {
      mem.snapshot().and_then(|entries| {
        let (main, exp) = render(&entries, binary);
        atomic_write(&expires_path(&file), &exp)?;
        atomic_write(&file, &main)
      })
    };
    let mut st = shared.lock();
    match result {
      Ok(()) => {
        st.written = target;
        st.last_error = None;
      }
      Err(e) => {
        if let Some(r) = &report {
          r(e.clone());
        }
        st.last_error = Some(e);
        // Treat as written so flush() returns (with the error) instead of
        // hanging; the next change tries again.
        st.written = target;
      }
    }
    shared.notify();
  }
}

impl SnapshotBackend {
  pub fn new(opts: SnapshotOptions) -> Result<Self> {
    // Check the file can be written now, not at the first change.
    let dir = opts.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
      return Err(StoreError::new(Code::InvalidOption, format!("{} is not a directory", dir.display())));
    }
    // Before anything is read: what another store is writing is not ours to load.
    let lock = take_lock(&opts.file)?;
    let mem = Arc::new(MemoryBackend::new(opts.memory)?);
    remove_stale_temps(&opts.file);
    let dropped = load(&mem, &opts.file, opts.default_ttl, opts.binary, opts.report.as_ref())?;
    let (m, f, c, r, b) = (mem.clone(), opts.file.clone(), opts.coalesce, opts.report.clone(), opts.binary);
    let writer = Worker::spawn("rs-store-snapshot", WriterState::default(), move |w| writer_loop(m, w, f, c, r, b))?;
    let store = SnapshotBackend { mem, writer, lock: parking_lot::Mutex::new(Some(lock)) };
    if dropped {
      store.changed();
    }
    Ok(store)
  }

  fn changed(&self) {
    self.writer.lock().changed += 1;
    self.writer.notify();
  }
}

impl SyncBackend for SnapshotBackend {
  fn run(&self, op: Op) -> Result<Reply> {
    let changes = op.changes() != Changes::Nothing;
    let r = self.mem.run(op)?;
    // A refused add or a touch of nothing changed nothing to write.
    if changes && r != Reply::Bool(false) {
      self.changed();
    }
    Ok(r)
  }
  fn held(&self) -> Option<super::Holding> {
    self.mem.held()
  }
  /// Blocks until every change made before the call is on disk.
  fn flush(&self) -> Result<()> {
    let mut st = self.writer.lock();
    let target = st.changed;
    if st.written < target {
      st.flush_wanted = true;
      self.writer.notify();
    }
    while st.written < target {
      self.writer.wait(&mut st, None);
    }
    match &st.last_error {
      Some(e) => Err(e.clone()),
      None => Ok(()),
    }
  }
  fn close(&self) -> Result<()> {
    let flushed = self.flush();
    self.writer.stop();
    // Released once nothing more will be written.
    drop(self.lock.lock().take());
    SyncBackend::close(&*self.mem)?;
    flushed
  }
}

impl Drop for SnapshotBackend {
  fn drop(&mut self) {
    let _ = SyncBackend::close(self);
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::{Ttl, UserRules};

  /// A fresh directory for one test (`rs-store-<tag>-…`) and its sessions.json.
  fn temp_file(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("rs-store-{tag}-{}-{}", std::process::id(), now_ms()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sessions.json");
    (dir, file)
  }

  fn opts(file: &Path) -> SnapshotOptions {
    SnapshotOptions {
      file: file.to_path_buf(),
      binary: false,
      memory: MemoryOptions { sweep_interval: None, ..Default::default() },
      default_ttl: None,
      coalesce: Duration::from_millis(20),
      report: None,
    }
  }

  #[test]
  fn persists_and_reloads_with_coalescing() {
    let (dir, file) = temp_file("snap");
    {
      let s = SnapshotBackend::new(opts(&file)).unwrap();
      for i in 0..100 {
        s.run(Op::Set(format!("id{i}"), format!("{{\"n\":{i}}}").into_bytes(), Some(after_ms(60_000)))).unwrap();
      }
      s.run(Op::Set("forever".into(), b"{\"p\":true}".to_vec(), None)).unwrap();
      s.flush().unwrap();
      let text: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
      assert_eq!(text["id7"]["n"], 7);
      assert_eq!(text.as_object().unwrap().len(), 101);
      s.close().unwrap();
    }
    let s = SnapshotBackend::new(opts(&file)).unwrap();
    assert_eq!(s.run(Op::Get("id42".into())).unwrap().into_value().unwrap().unwrap(), b"{\"n\":42}");
    assert!(matches!(s.run(Op::Ttl("id42".into())).unwrap(), Reply::Ttl(Ttl::At(_))));
    assert_eq!(s.run(Op::Ttl("forever".into())).unwrap(), Reply::Ttl(Ttl::Persistent));
    s.close().unwrap();
    fs::write(&file, b"[1,2]").unwrap();
    assert_eq!(SnapshotBackend::new(opts(&file)).err().unwrap().code, Code::Corrupt);
    fs::remove_dir_all(&dir).unwrap();
  }

  fn with_users(file: &Path, max_per_user: Option<u32>) -> SnapshotOptions {
    let rules = UserRules { users: true, max_per_user, max_lifetime_ms: Some(3_600_000) };
    SnapshotOptions { memory: MemoryOptions { sweep_interval: None, rules, ..Default::default() }, ..opts(file) }
  }

  fn user_ids(s: &SnapshotBackend, user: &str) -> Vec<String> {
    match s.run(Op::SessionsOf(user.into())).unwrap() {
      Reply::Page(_, list) => list.into_iter().map(|(id, ..)| id).collect(),
      r => panic!("{r:?}"),
    }
  }

  #[test]
  fn users_and_ends_survive_a_restart() {
    let (dir, file) = temp_file("snap-users");
    let end;
    {
      let s = SnapshotBackend::new(with_users(&file, None)).unwrap();
      for id in ["a3", "a1", "a2"] {
        s.run(Op::Write(id.into(), b"{}".to_vec(), Some(after_ms(60_000_000)), None, Some("ada".into()))).unwrap();
      }
      s.run(Op::Write("anon".into(), b"{}".to_vec(), Some(after_ms(60_000)), None, None)).unwrap();
      end = match s.run(Op::Ttl("a1".into())).unwrap() {
        Reply::Ttl(Ttl::At(t)) => t,
        r => panic!("{r:?}"),
      };
      s.close().unwrap();
    }
    // The main file keeps Synchro's shape: only sessions.
    let main: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(main["a1"], serde_json::json!({}));
    let side: serde_json::Value = serde_json::from_slice(&fs::read(users_path(&file)).unwrap()).unwrap();
    assert_eq!(side["a1"]["user"], "ada");
    assert!(side["anon"].get("user").is_none());
    {
      let s = SnapshotBackend::new(with_users(&file, None)).unwrap();
      assert_eq!(user_ids(&s, "ada"), ["a3", "a1", "a2"], "write order kept");
      // The end is the one of the first write, not a new hour from the load.
      s.run(Op::Touch("a1".into(), Some(after_ms(60_000_000)))).unwrap();
      assert_eq!(s.run(Op::Ttl("a1".into())).unwrap(), Reply::Ttl(Ttl::At(end)));
      s.close().unwrap();
    }
    // Reopened with a cap of 2: the least recently written goes, on disk too.
    {
      let s = SnapshotBackend::new(with_users(&file, Some(2))).unwrap();
      assert_eq!(user_ids(&s, "ada"), ["a1", "a2"]);
      s.flush().unwrap();
      s.close().unwrap();
    }
    let main: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert!(main.get("a3").is_none());
    // A corrupt side file costs the index, not the sessions.
    fs::write(users_path(&file), b"[").unwrap();
    let reported = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let r = reported.clone();
    let report: Report = Arc::new(move |e: StoreError| r.lock().push(e.code));
    let s = SnapshotBackend::new(SnapshotOptions { report: Some(report), ..with_users(&file, None) }).unwrap();
    assert_eq!(*reported.lock(), [Code::Corrupt]);
    assert!(user_ids(&s, "ada").is_empty());
    assert!(s.run(Op::Get("a1".into())).unwrap().into_value().unwrap().is_some());
    s.close().unwrap();
    fs::remove_dir_all(&dir).unwrap();
  }

  #[test]
  fn one_store_per_file() {
    let (dir, file) = temp_file("snap-lock");
    let first = SnapshotBackend::new(opts(&file)).unwrap();
    first.run(Op::Set("a".into(), b"{}".to_vec(), None)).unwrap();
    let refused = SnapshotBackend::new(opts(&file)).err().unwrap();
    assert_eq!(refused.code, Code::InUse);
    assert!(refused.message.contains("another store in this process"), "{}", refused.message);
    // Another file beside it is another store's.
    let other = SnapshotBackend::new(opts(&dir.join("other.json"))).unwrap();
    first.close().unwrap();
    let again = SnapshotBackend::new(opts(&file)).unwrap();
    assert!(again.run(Op::Get("a".into())).unwrap().into_value().unwrap().is_some());
    drop(again);
    // Dropped without close(): released too.
    SnapshotBackend::new(opts(&file)).unwrap().close().unwrap();
    other.close().unwrap();
    fs::remove_dir_all(&dir).unwrap();
  }
}
