//! Storage backends. Every backend satisfies one async trait, [`Backend`],
//! and knows nothing about hosts: it stores opaque bytes under a string id
//! with an absolute expiry (epoch ms, see [`crate::expiry`]).
//!
//! Backends that never block (memory, dummy) implement [`SyncBackend`]
//! instead; a blanket impl makes every `SyncBackend` a `Backend`, and the
//! `#[napi]` layer calls the sync methods directly on the JS thread (no
//! thread hop on the hot path).

use async_trait::async_trait;

use crate::error::{Result, StoreError};
use crate::expiry::Expiry;

pub mod dummy;
pub mod file;
pub mod file_cache;
pub mod memory;
pub mod object;
pub mod record;
pub mod redis;
pub mod snapshot;

/// Listings a `page` walk continues (a directory or object listing held
/// open between pages): a cursor is a number naming one; one nobody
/// continued for 5 minutes is dropped.
pub(crate) struct Cursors<T> {
  open: parking_lot::Mutex<(u64, std::collections::HashMap<u64, (T, std::time::Instant)>)>,
}

impl<T> Cursors<T> {
  const IDLE: std::time::Duration = std::time::Duration::from_secs(300);

  pub fn new() -> Self {
    Cursors { open: parking_lot::Mutex::new((0, std::collections::HashMap::new())) }
  }

  /// The listing `cursor` names; `None` for `""` (start a new one).
  pub fn take(&self, cursor: &str) -> Result<Option<T>> {
    if cursor.is_empty() {
      return Ok(None);
    }
    let bad = || StoreError::new(crate::error::Code::InvalidOption, format!("cursor {cursor:?} is unknown or expired"));
    let n: u64 = cursor.parse().map_err(|_| bad())?;
    let mut open = self.open.lock();
    open.1.retain(|_, (_, at)| at.elapsed() < Self::IDLE);
    open.1.remove(&n).map(|(t, _)| Some(t)).ok_or_else(bad)
  }

  /// Keeps `listing` for the next page; returns its cursor.
  pub fn park(&self, listing: T) -> String {
    let mut open = self.open.lock();
    open.0 += 1;
    let n = open.0;
    open.1.insert(n, (listing, std::time::Instant::now()));
    n.to_string()
  }
}

/// Options for a new file that holds session ids or sessions: readable by
/// its owner only (ids are bearer credentials, even with a secret set).
pub(crate) fn private_file() -> std::fs::OpenOptions {
  let mut o = std::fs::OpenOptions::new();
  #[cfg(unix)]
  std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
  o
}

/// Called with a problem a backend found on its own (a corrupt file met by a
/// sweep, …), as opposed to the answer to a call.
pub type Report = std::sync::Arc<dyn Fn(StoreError) + Send + Sync>;

/// What `ttl` reports for one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
  /// No such (live) entry.
  Missing,
  /// The entry never expires.
  Persistent,
  /// The entry expires at this absolute time (epoch ms).
  At(Expiry),
}

impl Ttl {
  /// As Redis's PTTL answers: `-2` missing, `-1` no expiry, else ms left.
  pub fn pttl(self) -> i64 {
    match self {
      Ttl::Missing => -2,
      Ttl::Persistent => -1,
      Ttl::At(at) => at.saturating_sub(crate::expiry::now_ms()) as i64,
    }
  }
}

/// When a conditional set writes: Redis's `SET … NX` and `SET … XX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
  /// Only when no live entry has the id (`add`).
  Absent,
  /// Only when a live entry has the id (`replace`): never recreates a
  /// session removed meanwhile.
  Present,
}

/// One operation of a batch (see [`Backend::exec_batch`]).
#[derive(Debug, Clone)]
pub enum Op {
  Get(String),
  Set(String, Vec<u8>, Option<Expiry>),
  /// Set only when `Cond` holds; answers `Bool(true)` when written.
  SetIf(String, Vec<u8>, Option<Expiry>, Cond),
  Remove(String),
  Touch(String, Option<Expiry>),
  Ttl(String),
  Exists(String),
  Len,
  Clear,
  Keys,
  Entries,
  /// Up to `count` live sessions after `cursor` (`""`: from the start), for
  /// walking a store of any size with bounded memory (the CLI).
  Page(String, u32),
  /// Take the lock of an id if it is free: (id, token, ttl ms).
  Lock(String, String, u64),
  /// Release the lock if `token` still holds it.
  Unlock(String, String),
  /// Extend the lock to `ttl ms` from now if `token` still holds it.
  Renew(String, String, u64),
}

impl Op {
  /// The session id the op is about, or `None` for whole-store ops.
  pub fn id(&self) -> Option<&str> {
    match self {
      Op::Get(id)
      | Op::Set(id, ..)
      | Op::SetIf(id, ..)
      | Op::Remove(id)
      | Op::Touch(id, _)
      | Op::Ttl(id)
      | Op::Exists(id)
      | Op::Lock(id, ..)
      | Op::Unlock(id, _)
      | Op::Renew(id, ..) => Some(id),
      Op::Len | Op::Clear | Op::Keys | Op::Entries | Op::Page(..) => None,
    }
  }
}

/// The answer to one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
  Value(Option<Vec<u8>>),
  Bool(bool),
  Ttl(Ttl),
  Count(u64),
  Keys(Vec<String>),
  Entries(Vec<(String, Vec<u8>)>),
  /// A page of sessions with their ttl, and the cursor of the next page
  /// (`""` when this was the last).
  Page(String, Vec<(String, Vec<u8>, Ttl)>),
  /// A decoded session (binding layer, after the codec).
  Text(Option<String>),
  /// Decoded entries (binding layer, after the codec).
  TextEntries(Vec<(String, String)>),
  /// A decoded page (binding layer): the next cursor, and per session its
  /// id, its text (`None`: it does not decode), its ttl and stored size.
  TextPage(String, Vec<(String, Option<String>, Ttl, usize)>),
  Done,
}

impl Reply {
  fn unexpected(self) -> StoreError {
    StoreError::new(crate::error::Code::Internal, format!("unexpected reply {self:?}"))
  }
  pub fn into_value(self) -> Result<Option<Vec<u8>>> {
    if let Reply::Value(v) = self {
      Ok(v)
    } else {
      Err(self.unexpected())
    }
  }
  pub fn into_bool(self) -> Result<bool> {
    if let Reply::Bool(b) = self {
      Ok(b)
    } else {
      Err(self.unexpected())
    }
  }
  pub fn into_ttl(self) -> Result<Ttl> {
    if let Reply::Ttl(t) = self {
      Ok(t)
    } else {
      Err(self.unexpected())
    }
  }
  pub fn into_count(self) -> Result<u64> {
    if let Reply::Count(n) = self {
      Ok(n)
    } else {
      Err(self.unexpected())
    }
  }
  pub fn into_keys(self) -> Result<Vec<String>> {
    if let Reply::Keys(k) = self {
      Ok(k)
    } else {
      Err(self.unexpected())
    }
  }
  pub fn into_entries(self) -> Result<Vec<(String, Vec<u8>)>> {
    if let Reply::Entries(e) = self {
      Ok(e)
    } else {
      Err(self.unexpected())
    }
  }
}

/// One op through a backend's own `exec_batch`. For backends that override
/// `exec_batch` (the default one calls the per-op methods back).
pub(crate) async fn single<B: Backend + ?Sized>(b: &B, op: Op) -> Result<Reply> {
  b.exec_batch(vec![op]).await.pop().unwrap_or_else(|| Err(StoreError::new(crate::error::Code::Internal, "no reply")))
}

/// A cheap, stable hash of an id (FNV-1a), to split a batch into groups that
/// may run concurrently while one id always lands in one group.
pub(crate) fn shard_of(id: &str) -> u64 {
  id.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// Runs one op through the per-op methods of `b`.
pub async fn run_one<B: Backend + ?Sized>(b: &B, op: &Op) -> Result<Reply> {
  Ok(match op {
    Op::Get(id) => Reply::Value(b.get(id).await?),
    Op::Set(id, v, exp) => {
      b.set(id, v.clone(), *exp).await?;
      Reply::Done
    }
    Op::SetIf(id, v, exp, cond) => Reply::Bool(b.set_if(id, v.clone(), *exp, *cond).await?),
    Op::Remove(id) => Reply::Bool(b.remove(id).await?),
    Op::Touch(id, exp) => Reply::Bool(b.touch(id, *exp).await?),
    Op::Ttl(id) => Reply::Ttl(b.ttl(id).await?),
    Op::Exists(id) => Reply::Bool(b.exists(id).await?),
    Op::Len => Reply::Count(b.len().await?),
    Op::Clear => Reply::Count(b.clear().await?),
    Op::Keys => Reply::Keys(b.keys().await?),
    Op::Entries => Reply::Entries(b.entries().await?),
    Op::Page(cursor, count) => {
      let (next, page) = b.page(cursor, *count).await?;
      Reply::Page(next, page)
    }
    Op::Lock(id, token, ttl) => Reply::Bool(b.lock(id, token, *ttl).await?),
    Op::Unlock(id, token) => Reply::Bool(b.unlock(id, token).await?),
    Op::Renew(id, token, ttl) => Reply::Bool(b.renew(id, token, *ttl).await?),
  })
}

pub(crate) fn no_locks() -> StoreError {
  StoreError::new(crate::error::Code::InvalidOption, "this store has no lock manager")
}

/// The one storage contract. `expires: None` means "never expires".
/// Expired entries must be invisible to every method at once, whether or not
/// a sweep has reclaimed them yet.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
  async fn get(&self, id: &str) -> Result<Option<Vec<u8>>>;
  async fn set(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>) -> Result<()>;
  /// Sets only when `cond` holds (no live entry has `id`, or one has); true
  /// when written. Memory: one lock; Redis and the daemon: `SET … NX|XX`;
  /// object storage: a create-only or a conditional write; files: among
  /// conditional sets, by a flock; other [`SyncBackend`]s: checked, then
  /// written (all on the JS thread).
  async fn set_if(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, cond: Cond) -> Result<bool>;
  /// Returns whether a live entry was removed.
  async fn remove(&self, id: &str) -> Result<bool>;
  /// Moves the expiry of a live entry; returns false (and creates nothing)
  /// when it is missing, so a touch can never resurrect a removed session.
  async fn touch(&self, id: &str, expires: Option<Expiry>) -> Result<bool>;
  async fn ttl(&self, id: &str) -> Result<Ttl>;
  async fn exists(&self, id: &str) -> Result<bool>;
  /// Number of live entries.
  async fn len(&self) -> Result<u64>;
  /// Removes every entry; returns how many were removed.
  async fn clear(&self) -> Result<u64>;
  /// Ids of all live entries (no order promised).
  async fn keys(&self) -> Result<Vec<String>>;
  /// All live entries. Backends with a batch read override this.
  async fn entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for id in self.keys().await? {
      if let Some(v) = self.get(&id).await? {
        out.push((id, v));
      }
    }
    Ok(out)
  }
  /// Up to `count` live sessions after `cursor` and the next cursor (`""`
  /// when done). Backends walk their own listings (SCAN, a directory, an
  /// object listing); those in memory page through their sorted ids
  /// ([`SyncBackend::page_sync`]).
  async fn page(&self, _cursor: &str, _count: u32) -> Result<(String, Vec<(String, Vec<u8>, Ttl)>)> {
    Err(StoreError::new(crate::error::Code::Internal, "this store cannot be walked page by page"))
  }
  /// Runs a batch of ops, answering each in order. The default runs them one
  /// after another; backends with pipelining (Redis) override it.
  async fn exec_batch(&self, ops: Vec<Op>) -> Vec<Result<Reply>> {
    let mut out = Vec::with_capacity(ops.len());
    for op in &ops {
      out.push(run_one(self, op).await);
    }
    out
  }
  /// Takes the lock of `id` for `token` if it is free (or its holder's ttl has
  /// run out): a lock dies with its holder. Never waits.
  async fn lock(&self, _id: &str, _token: &str, _ttl_ms: u64) -> Result<bool> {
    Err(no_locks())
  }
  /// Releases the lock if `token` still holds it.
  async fn unlock(&self, _id: &str, _token: &str) -> Result<bool> {
    Err(no_locks())
  }
  /// Extends the lock if `token` still holds it.
  async fn renew(&self, _id: &str, _token: &str, _ttl_ms: u64) -> Result<bool> {
    Err(no_locks())
  }
  /// A get answered at once on the calling thread, without waiting on any
  /// I/O, or `None` when the backend must be asked the normal way.
  /// `Some(None)`: missing. Only called when no change to `id` by this
  /// process is still pending. Default: `None` (no such fast path).
  fn get_now(&self, _id: &str) -> Option<Option<Vec<u8>>> {
    None
  }
  /// Whether batches may overlap: true when a batch started after another is
  /// guaranteed to be applied after it (e.g. each batch is one pipeline on
  /// one connection). The dispatcher otherwise runs batches one at a time.
  fn overlapping_batches_keep_order(&self) -> bool {
    false
  }
  /// Stops background work and releases connections. Idempotent.
  async fn close(&self) -> Result<()>;
}

/// The same contract for backends that never block; see the module docs.
pub trait SyncBackend: Send + Sync + 'static {
  fn get(&self, id: &str) -> Result<Option<Vec<u8>>>;
  fn set(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>) -> Result<()>;
  /// See [`Backend::set_if`]; the default checks, then writes.
  fn set_if(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, cond: Cond) -> Result<bool> {
    if self.exists(id)? != (cond == Cond::Present) {
      return Ok(false);
    }
    self.set(id, value, expires)?;
    Ok(true)
  }
  fn remove(&self, id: &str) -> Result<bool>;
  fn touch(&self, id: &str, expires: Option<Expiry>) -> Result<bool>;
  fn ttl(&self, id: &str) -> Result<Ttl>;
  fn exists(&self, id: &str) -> Result<bool>;
  fn len(&self) -> Result<u64>;
  fn clear(&self) -> Result<u64>;
  fn keys(&self) -> Result<Vec<String>>;
  fn entries(&self) -> Result<Vec<(String, Vec<u8>)>>;
  fn lock(&self, _id: &str, _token: &str, _ttl_ms: u64) -> Result<bool> {
    Err(no_locks())
  }
  fn unlock(&self, _id: &str, _token: &str) -> Result<bool> {
    Err(no_locks())
  }
  fn renew(&self, _id: &str, _token: &str, _ttl_ms: u64) -> Result<bool> {
    Err(no_locks())
  }
  /// [`Backend::page`] for stores that hold their sessions in memory: the
  /// sorted ids after `cursor`.
  fn page_sync(&self, cursor: &str, count: u32) -> Result<(String, Vec<(String, Vec<u8>, Ttl)>)> {
    let mut ids: Vec<String> = self.keys()?.into_iter().filter(|id| id.as_str() > cursor).collect();
    ids.sort_unstable();
    let more = ids.len() > count as usize;
    ids.truncate(count as usize);
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
      if let (Some(v), ttl) = (self.get(&id)?, self.ttl(&id)?) {
        out.push((id, v, ttl));
      }
    }
    let next = if more { out.last().map(|(id, ..)| id.clone()).unwrap_or_default() } else { String::new() };
    Ok((next, out))
  }
  /// Waits until writes made so far are durable (may block: call it off the
  /// JS thread). Nothing to do for purely in-memory backends.
  fn flush(&self) -> Result<()> {
    Ok(())
  }
  fn close(&self) -> Result<()>;
}

#[async_trait]
impl<T: SyncBackend> Backend for T {
  async fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
    SyncBackend::get(self, id)
  }
  async fn set(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>) -> Result<()> {
    SyncBackend::set(self, id, value, expires)
  }
  async fn set_if(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, cond: Cond) -> Result<bool> {
    SyncBackend::set_if(self, id, value, expires, cond)
  }
  async fn remove(&self, id: &str) -> Result<bool> {
    SyncBackend::remove(self, id)
  }
  async fn touch(&self, id: &str, expires: Option<Expiry>) -> Result<bool> {
    SyncBackend::touch(self, id, expires)
  }
  async fn ttl(&self, id: &str) -> Result<Ttl> {
    SyncBackend::ttl(self, id)
  }
  async fn exists(&self, id: &str) -> Result<bool> {
    SyncBackend::exists(self, id)
  }
  async fn len(&self) -> Result<u64> {
    SyncBackend::len(self)
  }
  async fn clear(&self) -> Result<u64> {
    SyncBackend::clear(self)
  }
  async fn keys(&self) -> Result<Vec<String>> {
    SyncBackend::keys(self)
  }
  async fn entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
    SyncBackend::entries(self)
  }
  async fn page(&self, cursor: &str, count: u32) -> Result<(String, Vec<(String, Vec<u8>, Ttl)>)> {
    SyncBackend::page_sync(self, cursor, count)
  }
  async fn lock(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    SyncBackend::lock(self, id, token, ttl_ms)
  }
  async fn unlock(&self, id: &str, token: &str) -> Result<bool> {
    SyncBackend::unlock(self, id, token)
  }
  async fn renew(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    SyncBackend::renew(self, id, token, ttl_ms)
  }
  async fn close(&self) -> Result<()> {
    SyncBackend::close(self)
  }
}
