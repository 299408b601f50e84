//! The sweep: expired sessions, stale lock files, leftover temp files and
//! the users' index entries of sessions gone, one file at a time, on the
//! store's own worker (stopped and joined on close).

use super::read::{names, same_file};
use super::*;

impl Inner {
  /// Deletes expired session files and a killed writer's leftovers.
  pub(super) fn sweep(&self, stopping: &dyn Fn() -> bool) -> usize {
    if let Some(c) = &self.cache {
      c.check_shared();
    }
    let Ok(rd) = fs::read_dir(&self.dir) else { return 0 };
    let now = now_ms();
    let mut removed = 0;
    let mut indexes = Vec::new();
    for ent in rd.flatten() {
      if stopping() {
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
      if p.extension().is_some_and(|x| x == users::USER_EXT) {
        indexes.push(p);
        continue;
      }
      if p.extension().is_none_or(|x| x != EXT) {
        continue;
      }
      let mut head = Vec::with_capacity(2048);
      let Ok(f) = files::open_read(&p) else { continue };
      if (&f).take(4096).read_to_end(&mut head).is_err() {
        continue;
      }
      // A header past 4 KiB (a long id or user, escaped): up to 16 KiB.
      if head.len() == 4096 && !head.contains(&b'\n') && (&f).take(12 * 1024).read_to_end(&mut head).is_err() {
        continue;
      }
      // Only the header is read (the payload may be cut off); one whose id
      // does not name this file was read while a write swapped it: skipped.
      // The file is deleted only if it is still the one read: a session set
      // again since then is a new file at the same name.
      match record::decode_header(&p.display(), &head) {
        Ok((h, _)) if names(&p, &h.id) && is_expired(h.expires, now) => {
          // Checked and removed holding its write lock: a session set again
          // meanwhile is a new file at the name, which must stay.
          let Ok(_held) = self.writers.hold(slot_of_path(&p)) else { continue };
          if same_file(&f, &p) && self.changing(Some(&h.id), &p, || fs::remove_file(&p)).is_ok() {
            removed += 1;
          }
        }
        Ok(_) => {}
        Err(e) => self.report(e),
      }
    }
    // After the sessions: entries of those just removed go too.
    removed + self.prune_indexes(indexes, stopping)
  }
}

pub(super) fn sweep_loop(inner: Arc<Inner>, every: Duration, w: &Shared<()>) {
  loop {
    {
      let mut st = w.lock();
      let at = std::time::Instant::now() + every;
      while !st.stop && !w.wait(&mut st, Some(at)) {}
      if st.stop {
        return;
      }
    }
    inner.sweep(&|| w.stopping());
  }
}
