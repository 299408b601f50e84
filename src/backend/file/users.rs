//! Per-user sessions in the file store (`userOf`, `maxSessionsPerUser`,
//! `maxLifetime`, `rotate`), correct across every process on the directory.
//!
//! * A session's user and absolute end are in its record's header
//!   (`"user"`, `"end"`): they change with the session, in its one atomic
//!   write, and a touch keeps them.
//! * Each user has an index file, `<sha256(user)>.user`: a record (the user
//!   as its id, a checksum) whose payload is `{"seq":N,"ids":[["<id>",
//!   <place>],…]}`, the user's sessions in write order. `place` comes from
//!   `seq`, the index's own counter, so every process agrees on the order
//!   whatever its clock.
//! * An index is read and written only under its user's lock, a byte-range
//!   lock of `.rs-store-users` (`writers.rs`). Locks are taken user first,
//!   then sessions, and at most one user at a time. A step holds one
//!   session's lock at a time, but a rotation holds two: it takes both
//!   ids' in-process mutexes in stripe order (once when they share one),
//!   then both byte ranges in slot order (`Writers::hold_pair`). As every
//!   holder takes its mutexes before any range, and ranges only upward, no
//!   two steps, of this process or another, can wait on each other.
//! * An index names every session whose record names its user (a write
//!   files the session in the index before it writes the record: a crash
//!   in between leaves one entry too many, never one too few), and an
//!   entry counts only while its record is live and names the user. So a
//!   session removed, expired, or rewritten as anonymous or for another
//!   user (none of which takes the user's lock) is never listed, counted
//!   or revoked; its entry goes at the next step on the user that reads it
//!   (the cap, a listing, a revocation) or at the sweep.

use serde::{Deserialize, Serialize};

use super::writers::{Held, Writers, USERS_FILE};
use super::*;
use crate::backend::{Recode, UserRules};
use record::Owner;

/// Extension of the users' index files.
pub(super) const USER_EXT: &str = "user";

/// A user's index (see the module docs).
#[derive(Serialize, Deserialize, Default)]
pub(super) struct Index {
  /// The last place given in this user's write order.
  seq: u64,
  /// (id, place), least recently written first.
  ids: Vec<(String, u64)>,
  /// Rebuilt from the records (the file did not read back): to be written.
  #[serde(skip)]
  rebuilt: bool,
}

/// Whose a written session is.
pub(super) enum Whose<'a> {
  /// As it was (a plain `set`/`add`/`replace`): its user and its place in
  /// the user's order stay.
  Keep,
  /// This user's (`None`: anonymous).
  User(Option<&'a str>),
}

/// A user's live session as read: its id, its place, its record.
type Live = (String, u64, Stored);

impl Inner {
  /// The users' lock table, opened on first use.
  pub(super) fn user_locks(&self) -> Result<&Writers> {
    if let Some(w) = self.user_locks.get() {
      return Ok(w);
    }
    let w = Writers::open(&self.dir, USERS_FILE)?;
    Ok(self.user_locks.get_or_init(|| w))
  }

  pub(super) fn index_path(&self, user: &str) -> PathBuf {
    self.dir.join(record::hashed_name(user, USER_EXT))
  }

  fn hold_user(&self, user: &str) -> Result<Held<'_>> {
    self.user_locks()?.hold(slot_of(&record::hashed_name(user, USER_EXT)))
  }

  /// The index of `user` (its lock held). One that cannot be read is
  /// reported and rebuilt from the records, so a revocation still finds
  /// every session, and marked `rebuilt`: the step writes it back, so the
  /// next one neither reports it again nor walks the directory.
  fn read_index(&self, user: &str) -> Result<Index> {
    let path = self.index_path(user);
    let bytes = match files::read(&path) {
      Ok(b) => b,
      Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Index::default()),
      Err(e) => match files::not_ours(&e) {
        Some(why) => return Err(StoreError::io("cannot use", &path, std::io::Error::other(why))),
        None => return Err(StoreError::io("cannot read", &path, e)),
      },
    };
    let parsed = record::decode(&path.display(), bytes).and_then(|r| {
      if r.header.id != user {
        return Err(corrupt(&path, "it is the index of another user"));
      }
      serde_json::from_slice::<Index>(&r.payload).map_err(|e| corrupt(&path, &e.to_string()))
    });
    match parsed {
      Ok(index) => Ok(index),
      Err(e) => {
        self.report(e);
        self.rebuild_index(user)
      }
    }
  }

  /// The index of `user` from every live record naming it (their order
  /// lost: the listing's).
  fn rebuild_index(&self, user: &str) -> Result<Index> {
    let ids: Vec<(String, u64)> = self
      .live_files()?
      .into_iter()
      .filter(|(_, s)| s.header.user.as_deref() == Some(user))
      .enumerate()
      .map(|(i, (_, s))| (s.header.id, i as u64 + 1))
      .collect();
    Ok(Index { seq: ids.len() as u64, ids, rebuilt: true })
  }

  /// Writes the index of `user` (its lock held) atomically, as a session
  /// file is written; an empty one is removed.
  fn write_index(&self, user: &str, index: &Index) -> Result<()> {
    let path = self.index_path(user);
    if index.ids.is_empty() {
      return match fs::remove_file(&path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io("cannot delete", &path, e)),
        _ => Ok(()),
      };
    }
    let payload = serde_json::to_vec(index).map_err(|e| StoreError::new(Code::Internal, e.to_string()))?;
    self.write_file(&path, &record::encode(user, None, &payload)?)
  }

  /// The entries of `ids` whose record is live and names `user`, in order.
  fn live_of(&self, user: &str, ids: Vec<(String, u64)>) -> Result<Vec<Live>> {
    let mut out = Vec::with_capacity(ids.len());
    for (id, place) in ids {
      if let Some((_, s)) = self.read_live(&id)?.filter(|(_, s)| s.header.user.as_deref() == Some(user)) {
        out.push((id, place, s));
      }
    }
    Ok(out)
  }

  /// Removes the session `id` if it is live and `user`'s, holding its
  /// write lock; whether it was.
  fn remove_owned(&self, id: &str, user: &str) -> Result<bool> {
    let _held = self.hold(id)?;
    let Some((path, _)) = self.read_live_held(id)?.filter(|(_, s)| s.header.user.as_deref() == Some(user)) else { return Ok(false) };
    match self.changing(Some(id), &path, || fs::remove_file(&path)) {
      Ok(()) => Ok(true),
      Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
      Err(e) => Err(StoreError::io("cannot delete", &path, e)),
    }
  }

  /// A write of a store with per-user rules (`Set`, `SetIf`, `Write`):
  /// under the user's lock (when it names one) and the session's, the
  /// condition, the absolute end, the index, the record; then the cap,
  /// still under the user's lock. True when written. `rules`: the store's,
  /// or those of the daemon client that sent the write.
  pub(super) fn put(
    &self,
    id: &str,
    payload: &[u8],
    expires: Option<Expiry>,
    cond: Option<Cond>,
    whose: Whose,
    rules: &UserRules,
  ) -> Result<bool> {
    self.check_open()?;
    let user = match whose {
      Whose::User(Some(u)) => Some(u),
      Whose::User(None) | Whose::Keep => None,
    };
    let _user_held = user.map(|u| self.hold_user(u)).transpose()?;
    let mut index = user.map(|u| self.read_index(u)).transpose()?;
    let held = self.hold(id)?;
    let old = self.read_live_held(id)?.map(|(_, s)| s.header);
    if cond.is_some_and(|c| old.is_some() != (c == Cond::Present)) {
      return Ok(false);
    }
    // A session that is not live starts a new lifetime, and so does a
    // live one with none (written by a store without maxLifetime).
    let end = old.as_ref().and_then(|h| h.end).or_else(|| rules.end_from_now());
    let owner = match whose {
      Whose::Keep => old.and_then(|h| h.user),
      Whose::User(u) => u.map(str::to_string),
    };
    if let (Some(u), Some(index)) = (user, index.as_mut()) {
      index.seq += 1;
      index.ids.retain(|(i, _)| i != id);
      index.ids.push((id.to_string(), index.seq));
      self.write_index(u, index)?;
    }
    self.write_owned(id, payload, UserRules::clamp(end, expires), Owner { user: owner, end })?;
    drop(held);
    if let (Some(u), Some(n), Some(index)) = (user, rules.max_per_user, index) {
      // The write is done: a cap that fails is reported, not the write's
      // answer (the next write of the user caps again).
      if let Err(e) = self.cap(u, n as usize, index) {
        self.report(e);
      }
    }
    Ok(true)
  }

  /// Removes `user`'s least recently written live sessions beyond `n`
  /// (the user's lock held), and the entries of sessions no longer theirs.
  fn cap(&self, user: &str, n: usize, index: Index) -> Result<()> {
    let had = index.ids.len();
    if had <= n {
      return Ok(()); // at most n entries: at most n live sessions, nothing read
    }
    let live = self.live_of(user, index.ids)?;
    let excess = live.len().saturating_sub(n);
    for (id, ..) in &live[..excess] {
      self.remove_owned(id, user)?;
    }
    let ids: Vec<(String, u64)> = live.into_iter().skip(excess).map(|(id, place, _)| (id, place)).collect();
    if ids.len() != had {
      self.write_index(user, &Index { seq: index.seq, ids, rebuilt: false })?;
    }
    Ok(())
  }

  /// A user's live sessions with their ttl, least recently written first.
  pub(super) fn sessions_of(&self, user: &str) -> Result<Vec<(String, Vec<u8>, Ttl)>> {
    self.check_open()?;
    let _user_held = self.hold_user(user)?;
    let index = self.read_index(user)?;
    let (had, rebuilt) = (index.ids.len(), index.rebuilt);
    let live = self.live_of(user, index.ids)?;
    if live.len() != had || rebuilt {
      let ids = live.iter().map(|(id, place, _)| (id.clone(), *place)).collect();
      self.write_index(user, &Index { seq: index.seq, ids, rebuilt: false })?;
    }
    Ok(live.into_iter().map(|(id, _, s)| (id, s.payload, s.header.expires.map_or(Ttl::Persistent, Ttl::At))).collect())
  }

  /// Removes every live session of `user` but those in `except`; how many.
  /// Each removal holds the session's write lock, so a replace or touch
  /// that comes after it finds nothing; a write that files a session under
  /// `user` waits for the user's lock, held throughout.
  pub(super) fn revoke_user(&self, user: &str, except: &[String]) -> Result<u64> {
    self.check_open()?;
    // a set, built before the user's lock: a scan per index entry would be index × list
    let except: std::collections::HashSet<&str> = except.iter().map(String::as_str).collect();
    let _user_held = self.hold_user(user)?;
    let index = self.read_index(user)?;
    let (had, rebuilt) = (index.ids.len(), index.rebuilt);
    let mut keep = Vec::new();
    let mut n = 0;
    for (id, place) in index.ids {
      if except.contains(id.as_str()) {
        keep.push((id, place));
      } else if self.remove_owned(&id, user)? {
        n += 1;
      }
    }
    if keep.len() != had || rebuilt {
      self.write_index(user, &Index { seq: index.seq, ids: keep, rebuilt: false })?;
    }
    Ok(n)
  }

  /// Moves the live session `old` to the free id `new` with its data,
  /// expiry, user, absolute end and place in its user's order, holding the
  /// user's lock and both sessions' write locks.
  pub(super) fn rotate(&self, old: &str, new: &str, recode: Option<&Recode>) -> Result<bool> {
    self.check_open()?;
    if old == new {
      return Ok(false);
    }
    let (a, b) = (slot_of(&record::name_for(old)), slot_of(&record::name_for(new)));
    loop {
      // Whose it is, to take that user's lock first (lock order).
      let Some((_, peek)) = self.read_live(old)? else { return Ok(false) };
      let user = peek.header.user;
      let _user_held = user.as_deref().map(|u| self.hold_user(u)).transpose()?;
      // Read before the sessions' locks: rebuilding a corrupt one reads
      // sessions, which may take their locks.
      let index = user.as_deref().map(|u| self.read_index(u)).transpose()?;
      let _both = self.writers.hold_pair(a, b)?;
      let Some((path, s)) = self.read_live_held(old)? else { return Ok(false) };
      if s.header.user != user {
        continue; // moved to another user meanwhile: that user's lock
      }
      if self.read_live_held(new)?.is_some() {
        return Ok(false);
      }
      let recoded = recode.map(|r| (r.0)(old, new, s.payload.clone())).transpose()?;
      let payload = recoded.as_deref().unwrap_or(&s.payload);
      if let (Some(u), Some(mut index)) = (&user, index) {
        // The new id takes the old one's place; the old entry stays until
        // a later step drops it, so a crash leaves no live session unfiled.
        index.ids.retain(|(i, _)| i != new);
        let at = index.ids.iter().position(|(i, _)| i == old);
        let place = match at {
          Some(k) => index.ids[k].1,
          None => {
            index.seq += 1;
            index.seq
          }
        };
        index.ids.insert(at.map_or(index.ids.len(), |k| k + 1), (new.to_string(), place));
        self.write_index(u, &index)?;
      }
      // The old id goes first (no client knows the new one yet): a crash
      // in between leaves neither id live, never both.
      self.changing(Some(old), &path, || fs::remove_file(&path)).map_err(|e| StoreError::io("cannot delete", &path, e))?;
      let owner = Owner { user: user.clone(), end: s.header.end };
      if let Err(e) = self.write_owned(new, payload, s.header.expires, owner) {
        // Not moved: no new id (a write that failed after its rename, an
        // fsync), the old one back as it was, still under both locks.
        let new_path = self.path_for(new);
        match self.changing(Some(new), &new_path, || fs::remove_file(&new_path)) {
          Err(e) if e.kind() != ErrorKind::NotFound => self.report(StoreError::io("cannot delete", &new_path, e)),
          _ => {}
        }
        if let Err(back) = self.write_owned(old, &s.payload, s.header.expires, Owner { user, end: s.header.end }) {
          self.report(back);
        }
        return Err(e);
      }
      return Ok(true);
    }
  }

  /// Drops the entries of sessions no longer their user's from every index
  /// file (the sweep, and `clear`), removing the indexes left empty.
  pub(super) fn prune_indexes(&self, paths: Vec<PathBuf>, stopping: &dyn Fn() -> bool) -> usize {
    let mut removed = 0;
    for p in paths {
      if stopping() {
        break;
      }
      // Whose index it is, from its header; then read again under that
      // user's lock. Read without the lock, it may meet a rewrite (a
      // recycled inode): skipped, never reported (a corrupt index is, when
      // its user's next step reads it).
      let user = match files::read(&p).map(|b| record::decode_header(&p.display(), &b).map(|(h, _)| h.id)) {
        Ok(Ok(u)) if p.file_name().is_some_and(|n| *n == *record::hashed_name(&u, USER_EXT)) => u,
        _ => continue,
      };
      let pruned = (|| -> Result<bool> {
        let _user_held = self.hold_user(&user)?;
        let index = self.read_index(&user)?;
        let (had, rebuilt) = (index.ids.len(), index.rebuilt);
        let ids: Vec<(String, u64)> = self.live_of(&user, index.ids)?.into_iter().map(|(id, place, _)| (id, place)).collect();
        let gone = ids.is_empty();
        if ids.len() != had || rebuilt {
          self.write_index(&user, &Index { seq: index.seq, ids, rebuilt: false })?;
        }
        Ok(gone)
      })();
      match pruned {
        Ok(gone) => removed += usize::from(gone),
        Err(e) => self.report(e),
      }
    }
    removed
  }

  /// The index files of the directory.
  pub(super) fn index_files(&self) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(&self.dir) else { return Vec::new() };
    rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == USER_EXT)).collect()
  }
}
