//! Storage backends. Every backend meets one contract, [`Backend::exec`]:
//! a batch of [`Op`]s in, a [`Reply`] per op out. A backend knows nothing
//! about hosts: it stores opaque bytes under a string id with an absolute
//! expiry (epoch ms, see [`crate::expiry`]).
//!
//! Backends that never block (memory, dummy, sessions.json) implement
//! [`SyncBackend::run`] instead; a blanket impl makes each a `Backend`, and
//! the `#[napi]` layer runs their ops on the JS thread (no thread hop).

use async_trait::async_trait;

use crate::error::{Result, StoreError};
use crate::expiry::Expiry;

pub use op::{check_user, Changes, Cond, Kind, Op, Owner, Page, Put, Recode, Reply, Ttl, UserRules, Whole, MAX_ID_BYTES};

pub mod dummy;
pub mod file;
pub mod memory;
pub mod object;
mod op;
pub mod postgres;
pub mod record;
pub mod redis;
pub mod snapshot;
pub mod worker;

/// Listings a `page` walk continues (a directory or object listing held
/// open between pages): a cursor is a number naming one; one nobody
/// continued for 5 minutes is dropped.
pub(crate) struct Cursors<T> {
  /// The last number given, and the listings open under their numbers.
  open: parking_lot::Mutex<(u64, std::collections::HashMap<u64, Held<T>>)>,
}

/// A listing held open, and when it was last continued.
type Held<T> = (T, std::time::Instant);

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

/// A cheap, stable hash of an id (FNV-1a), to split a batch into groups that
/// may run concurrently while one id always lands in one group.
fn shard_of(id: &str) -> u64 {
  id.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// Splits a batch into up to `most` groups that may run concurrently, each
/// op tagged with its place: one id always lands in one group (its ops keep
/// their order), and a batch with a whole-store op stays one group.
pub(crate) fn shards(ops: Vec<Op>, most: usize) -> Vec<Vec<(usize, Op)>> {
  let n = if ops.iter().any(|op| op.id().is_none()) { 1 } else { most.min(ops.len()).max(1) };
  let mut groups: Vec<Vec<(usize, Op)>> = (0..n).map(|_| Vec::new()).collect();
  for (i, op) in ops.into_iter().enumerate() {
    let g = op.id().map_or(0, |id| (shard_of(id) % n as u64) as usize);
    groups[g].push((i, op));
  }
  groups.retain(|g| !g.is_empty());
  groups
}

/// [`shards`], where the ops that share `also(op)` (e.g. the user of a
/// per-user write) land in one group too: such an op goes by that key, the
/// others by their id, and the groups of an id's ops are merged when they
/// differ, so an id's ops stay together and in order as well.
pub(crate) fn shards_joined(ops: Vec<Op>, most: usize, also: impl Fn(&Op) -> Option<&str>) -> Vec<Vec<(usize, Op)>> {
  let n = if ops.iter().any(|op| op.id().is_none()) { 1 } else { most.min(ops.len()).max(1) };
  let shard = |op: &Op| op.id().map_or(0, |id| (shard_of(also(op).unwrap_or(id)) % n as u64) as usize);
  // Which group each shard joins (a union-find over at most `most` shards).
  let mut join: Vec<usize> = (0..n).collect();
  fn root(join: &[usize], mut g: usize) -> usize {
    while join[g] != g {
      g = join[g];
    }
    g
  }
  let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
  for op in &ops {
    let Some(id) = op.id() else { continue };
    let g = *first.entry(id).or_insert_with(|| shard(op));
    let (a, b) = (root(&join, g), root(&join, shard(op)));
    join[a.max(b)] = a.min(b);
  }
  let places: Vec<usize> = ops.iter().map(|op| root(&join, shard(op))).collect();
  let mut groups: Vec<Vec<(usize, Op)>> = (0..n).map(|_| Vec::new()).collect();
  for (i, op) in ops.into_iter().enumerate() {
    groups[places[i]].push((i, op));
  }
  groups.retain(|g| !g.is_empty());
  groups
}

/// The answers of `n` ops, tagged with their places, back in op order.
pub(crate) fn in_order(n: usize, answers: impl IntoIterator<Item = (usize, Result<Reply>)>) -> Vec<Result<Reply>> {
  let mut out: Vec<Option<Result<Reply>>> = (0..n).map(|_| None).collect();
  for (i, r) in answers {
    out[i] = Some(r);
  }
  out.into_iter().map(|r| r.unwrap_or_else(|| Err(StoreError::new(crate::error::Code::Internal, "no reply")))).collect()
}

/// The answer of a backend without per-user sessions to their ops (the
/// factories refuse the options, and the facade these calls, before).
pub(crate) fn no_users(backend: &str) -> StoreError {
  StoreError::new(
    crate::error::Code::InvalidOption,
    format!("the {backend} store has no per-user sessions (userOf, sessionsOf, revokeUser, rotate)"),
  )
}

pub(crate) fn no_locks() -> StoreError {
  StoreError::new(crate::error::Code::InvalidOption, "this store has no lock manager")
}

/// The one backend contract, as redis-rs's `ConnectionLike`: operations as
/// data. A backend runs a batch of [`Op`]s and answers each in order; the
/// typed calls ([`Ops`]) are written once on top. Expired entries must be
/// invisible to every op at once, whether or not a sweep has reclaimed
/// them yet.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
  /// Runs `ops`, answering each in order. Ops on one id apply in order;
  /// backends may run ops on different ids concurrently.
  async fn exec(&self, ops: Vec<Op>) -> Vec<Result<Reply>>;
  /// A get answered at once on the calling thread, without waiting on any
  /// I/O, or `None` when the backend must be asked the normal way.
  /// `Some(None)`: missing. Only called when no change to `id` by this
  /// process is still pending.
  fn get_now(&self, _id: &str) -> Option<Option<Vec<u8>>> {
    None
  }
  /// Whether batches may overlap: true when a batch started after another is
  /// guaranteed to be applied after it (e.g. each batch is one pipeline on
  /// one connection). The dispatcher otherwise runs batches one at a time.
  fn overlapping_batches_keep_order(&self) -> bool {
    false
  }
  /// Runs `ops` under per-user rules that come with them rather than the
  /// store's own: the session daemon's storage, whose clients each bring
  /// their `maxSessionsPerUser` and `maxLifetime` (client options). A
  /// backend that cannot take rules per call refuses them.
  async fn exec_under(&self, rules: UserRules, ops: Vec<Op>) -> Vec<Result<Reply>> {
    if !rules.any() {
      return self.exec(ops).await;
    }
    ops.iter().map(|_| Err(no_rules_per_call())).collect()
  }
  /// Stops background work and releases connections. Idempotent.
  async fn close(&self) -> Result<()>;
}

/// The answer of a backend that takes per-user rules only from its options.
pub(crate) fn no_rules_per_call() -> StoreError {
  StoreError::new(
    crate::error::Code::InvalidOption,
    "this storage takes no per-user rules per call (userOf, maxSessionsPerUser, maxLifetime): the memory and file backends do (the daemon's storages)",
  )
}

/// What an in-memory backend holds now, and how many live sessions its
/// bounds (`maxEntries`, `maxBytes`) evicted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
  /// Entries held (expired ones too, until the sweep reclaims them).
  pub entries: u64,
  /// Bytes they are charged (ids + values + per-entry overhead).
  pub bytes: u64,
  pub evicted: u64,
}

/// The contract for backends that never block (memory, dummy,
/// sessions.json): one op at a time on the caller's thread, so the
/// `#[napi]` layer runs them on the JS thread with no thread hop.
pub trait SyncBackend: Send + Sync + 'static {
  fn run(&self, op: Op) -> Result<Reply>;
  /// [`SyncBackend::run`] under per-user rules given with the op (see
  /// [`Backend::exec_under`]).
  fn run_under(&self, rules: UserRules, op: Op) -> Result<Reply> {
    if rules.any() {
      return Err(no_rules_per_call());
    }
    self.run(op)
  }
  /// What an in-memory backend holds and has evicted (`stats().memory`).
  fn held(&self) -> Option<Holding> {
    None
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
  async fn exec(&self, ops: Vec<Op>) -> Vec<Result<Reply>> {
    ops.into_iter().map(|op| self.run(op)).collect()
  }
  async fn exec_under(&self, rules: UserRules, ops: Vec<Op>) -> Vec<Result<Reply>> {
    ops.into_iter().map(|op| self.run_under(rules, op)).collect()
  }
  async fn close(&self) -> Result<()> {
    SyncBackend::close(self)
  }
}

/// One op through [`Backend::exec`].
pub async fn one<B: Backend + ?Sized>(b: &B, op: Op) -> Result<Reply> {
  b.exec(vec![op]).await.pop().unwrap_or_else(|| Err(StoreError::new(crate::error::Code::Internal, "no reply")))
}

/// Typed calls over [`Backend::exec`], for Rust callers (the daemon, tests).
/// `expires: None` means "never expires".
#[async_trait]
// `len` is the store's session count (the store shape's `length`); an
// `is_empty` would be one more op for every backend to no user's gain.
#[allow(clippy::len_without_is_empty)]
pub trait Ops: Backend {
  async fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
    one(self, Op::Get(id.into())).await?.into_value()
  }
  async fn set(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>) -> Result<()> {
    one(self, Op::Set(id.into(), value, expires)).await.map(|_| ())
  }
  /// Sets only when `cond` holds; true when written.
  async fn set_if(&self, id: &str, value: Vec<u8>, expires: Option<Expiry>, cond: Cond) -> Result<bool> {
    one(self, Op::SetIf(id.into(), value, expires, cond)).await?.into_bool()
  }
  /// Whether a live entry was removed.
  async fn remove(&self, id: &str) -> Result<bool> {
    one(self, Op::Remove(id.into())).await?.into_bool()
  }
  /// Moves the expiry of a live entry; false (and nothing created) when it
  /// is missing, so a touch never resurrects a removed session.
  async fn touch(&self, id: &str, expires: Option<Expiry>) -> Result<bool> {
    one(self, Op::Touch(id.into(), expires)).await?.into_bool()
  }
  async fn ttl(&self, id: &str) -> Result<Ttl> {
    one(self, Op::Ttl(id.into())).await?.into_ttl()
  }
  async fn exists(&self, id: &str) -> Result<bool> {
    one(self, Op::Exists(id.into())).await?.into_bool()
  }
  async fn len(&self) -> Result<u64> {
    one(self, Op::Len).await?.into_count()
  }
  /// Removes every entry; how many were live.
  async fn clear(&self) -> Result<u64> {
    one(self, Op::Clear).await?.into_count()
  }
  async fn keys(&self) -> Result<Vec<String>> {
    one(self, Op::Keys).await?.into_keys()
  }
  async fn entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
    one(self, Op::Entries).await?.into_entries()
  }
  async fn page(&self, cursor: &str, count: u32) -> Result<Page> {
    one(self, Op::Page(cursor.into(), count)).await?.into_page()
  }
  async fn lock(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    one(self, Op::Lock(id.into(), token.into(), ttl_ms)).await?.into_bool()
  }
  async fn unlock(&self, id: &str, token: &str) -> Result<bool> {
    one(self, Op::Unlock(id.into(), token.into())).await?.into_bool()
  }
  async fn renew(&self, id: &str, token: &str, ttl_ms: u64) -> Result<bool> {
    one(self, Op::Renew(id.into(), token.into(), ttl_ms)).await?.into_bool()
  }
}

impl<B: Backend + ?Sized> Ops for B {}
