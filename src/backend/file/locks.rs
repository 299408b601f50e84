//! Locks: `<hash>.lock` files holding `<token> <expires ms>` (see the
//! module docs of `file`).

use super::write::next_tmp;
use super::*;

impl Inner {
  pub(super) fn lock_path(&self, id: &str) -> PathBuf {
    let name = record::name_for(id);
    self.dir.join(format!("{}.lock", name.trim_end_matches(&format!(".{EXT}"))))
  }

  /// Runs `f` holding the directory's short lock-maintenance flock.
  pub(super) fn guarded<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let guard_path = self.dir.join(".locks");
    let (guard, _) = files::open_rw(&guard_path, true).map_err(|e| StoreError::io("cannot open", &guard_path, e))?;
    guard.lock().map_err(|e| StoreError::io("cannot lock", &guard_path, e))?;
    let r = f();
    let _ = guard.unlock();
    r
  }

  /// (token, expires) of the lock file, `None` when absent or unreadable.
  pub(super) fn read_lock(path: &Path) -> Option<(String, u64)> {
    let text = String::from_utf8(files::read(path).ok()?).ok()?;
    let (token, exp) = text.trim().split_once(' ')?;
    Some((token.to_string(), exp.parse().ok()?))
  }

  pub(super) fn try_create_lock(&self, path: &Path, token: &str, ttl_ms: u64) -> Result<bool> {
    match files::create_new(path) {
      Ok(mut f) => {
        f.write_all(format!("{token} {}", now_ms().saturating_add(ttl_ms)).as_bytes())
          .map_err(|e| StoreError::io("cannot write", path, e))?;
        Ok(true)
      }
      Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
      Err(e) => Err(StoreError::io("cannot create", path, e)),
    }
  }

  pub(super) fn lock(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
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

  pub(super) fn unlock(&self, id: &str, token: &str) -> Result<bool> {
    let path = self.lock_path(id);
    self.guarded(|| {
      if Self::read_lock(&path).is_some_and(|(t, _)| t == token) {
        fs::remove_file(&path).map_err(|e| StoreError::io("cannot delete", &path, e))?;
        return Ok(true);
      }
      Ok(false)
    })
  }

  pub(super) fn renew(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    let path = self.lock_path(id);
    self.guarded(|| match Self::read_lock(&path) {
      Some((t, exp)) if t == token && exp > now_ms() => {
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}-{}-lock-{}", now_ms(), std::process::id(), next_tmp()));
        files::create_new(&tmp)
          .and_then(|mut f| f.write_all(format!("{token} {}", now_ms().saturating_add(ttl_ms)).as_bytes()))
          .and_then(|_| fs::rename(&tmp, &path))
          .map_err(|e| StoreError::io("cannot renew", &path, e))?;
        Ok(true)
      }
      _ => Ok(false),
    })
  }
}
