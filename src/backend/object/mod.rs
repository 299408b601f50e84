//! Sessions in object storage (S3 and S3-compatible, Azure Blob, GCS, a local
//! directory) through `object_store`: one object per session,
//! `<root>/<sha256(id)>.sess`, in the file store's record format (a header
//! line with the id and the absolute expiry, then the payload).
//!
//! * Expiry is enforced on every read (object storage has no TTL of its own
//!   that all services share) and expired objects are deleted by a background
//!   sweep every `sweep_interval`, one object at a time.
//! * `touch` rewrites the record with a conditional write (`PutMode::Update`
//!   on the ETag read) where the service supports it, so it never overwrites
//!   a session another process wrote in between; elsewhere it overwrites.
//! * A batch is split by id into groups that run concurrently (one id stays in
//!   one group, in call order), as the file store does.
//! * Every call settles within the command timeout (`ERR_STORE_UNAVAILABLE`
//!   after it): object_store retries failed requests for up to 3 minutes on
//!   its own, which must not hold a web request.

pub mod modules;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use tokio::sync::Notify;

use super::record::{self, Record, EXT};
use super::{in_order, shards, Backend, Cond, Cursors, Op, Reply, Report, Ttl};
use crate::error::{Code, Result, StoreError};
use crate::expiry::{is_expired, now_ms, Expiry};

/// Most concurrent groups a batch is split into.
const SHARDS: usize = 8;
/// Conditional writes a `replace` tries before it gives up on a session that keeps changing.
const REPLACE_TRIES: usize = 5;

pub struct ObjectBackend {
  inner: Arc<Inner>,
  /// The sweeper task, aborted on close (its requests may be retrying).
  sweeper: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Inner {
  /// `None` once closed. Dropped on close, so the HTTP client's pooled
  /// connections close too (a server waiting for its connections to end is
  /// not kept waiting).
  store: parking_lot::RwLock<Option<Arc<dyn ObjectStore>>>,
  root: Path,
  /// Every call settles within this: object_store's own retries may go on
  /// for minutes (its default retry budget is 3 minutes).
  timeout: Duration,
  stop: Notify,
  report: Option<Report>,
  /// A local directory (`file://`): objects are files, made 0600 once
  /// written (object_store creates them with the process's default mode).
  local: bool,
  container: Container,
  /// Listings `page` walks continue.
  pages: Cursors<futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>>,
}

/// Checks once that the bucket or container exists: a missing one is a
/// configuration error, not "no such session" (a get would answer null and
/// every write fail with a message about the object).
pub struct Container {
  /// The bucket or container, for the message; `None` for a local directory
  /// (rs-store creates those).
  name: Option<String>,
  checked: std::sync::OnceLock<()>,
}

impl Container {
  /// The bucket or container of an object storage URL (`s3://bucket/…`).
  pub fn of(url: &str) -> Container {
    let name = url::Url::parse(url).ok().filter(|u| u.scheme() != "file").and_then(|u| u.host_str().map(str::to_string));
    Container { name, checked: std::sync::OnceLock::new() }
  }

  pub async fn check(&self, store: &dyn ObjectStore, root: &Path) -> Result<()> {
    let Some(name) = &self.name else { return Ok(()) };
    if self.checked.get().is_some() {
      return Ok(());
    }
    match futures::StreamExt::next(&mut store.list(Some(root))).await {
      None | Some(Ok(_)) => {
        let _ = self.checked.set(());
        Ok(())
      }
      Some(Err(e)) if missing(&e) => Err(StoreError::new(
        Code::InvalidOption,
        format!("the bucket or container {name:?} does not exist (rs-store writes objects, it does not create buckets)"),
      )),
      // Refused credentials, a service that is down: the call itself
      // answers that, with its own code. Checked again next time.
      Some(Err(_)) => Ok(()),
    }
  }
}

/// A listing error that means the bucket or container is not there.
fn missing(e: &object_store::Error) -> bool {
  let text = e.to_string();
  matches!(e, object_store::Error::NotFound { .. })
    || ["NoSuchBucket", "ContainerNotFound", "bucket does not exist"].iter().any(|s| text.contains(s))
}

pub(crate) fn map_err(e: object_store::Error) -> StoreError {
  match e {
    object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
      StoreError::new(Code::StoreAuth, e.to_string())
    }
    other => StoreError::new(Code::StoreUnavailable, other.to_string()),
  }
}

impl Inner {
  fn key(&self, id: &str) -> Path {
    self.root.clone().join(record::name_for(id).as_str())
  }

  /// The object store, unless the store was closed.
  fn store(&self) -> Result<Arc<dyn ObjectStore>> {
    self.store.read().clone().ok_or_else(StoreError::closed)
  }

  /// The record at `key` with its version, `None` when absent.
  /// A record that does not decode is fetched again (up to 3 times, 20 ms
  /// apart) before it counts as corrupt: an S3-compatible server that
  /// rewrites an object in place can serve it half-written. s3rver does: it
  /// truncates the object file and answers the PUT before its write stream
  /// has finished. Services with atomic writes never get here.
  async fn read(&self, key: &Path) -> Result<Option<(Record, UpdateVersion)>> {
    let mut tries = 0;
    loop {
      let got = match self.store()?.get(key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(map_err(e)),
      };
      let version = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
      let bytes = got.bytes().await.map_err(map_err)?;
      match record::decode(key, bytes.to_vec()) {
        Ok(r) => return Ok(Some((r, version))),
        Err(e) if e.code == Code::Corrupt && tries < 2 => {
          tries += 1;
          tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(e) => return Err(e),
      }
    }
  }

  /// The live record of `id`; an expired one is deleted on the way. A
  /// record that does not decode (or holds another id) is reported and
  /// reads as missing, as on every other store.
  async fn read_live(&self, id: &str) -> Result<Option<(Record, UpdateVersion)>> {
    let key = self.key(id);
    let read = match self.read(&key).await {
      Err(e) if e.code == Code::Corrupt => {
        self.report(e);
        return Ok(None);
      }
      r => r?,
    };
    match read {
      Some((r, _)) if r.header.id != id => {
        self.report(StoreError::new(Code::Corrupt, format!("{key} holds another id")));
        Ok(None)
      }
      Some((r, _)) if is_expired(r.header.expires, now_ms()) => {
        let _ = self.store()?.delete(&key).await;
        Ok(None)
      }
      other => Ok(other),
    }
  }

  /// Writes the record; the object_store error is returned as is so callers
  /// can tell a failed precondition or an unsupported mode from a failure.
  async fn put(
    &self,
    id: &str,
    payload: &[u8],
    expires: Option<Expiry>,
    mode: PutMode,
  ) -> Result<std::result::Result<(), object_store::Error>> {
    let store = self.store()?;
    let body = PutPayload::from(record::encode(id, expires, payload)?);
    let key = self.key(id);
    let put = store.put_opts(&key, body, PutOptions { mode, ..Default::default() }).await.map(|_| ());
    #[cfg(unix)]
    if self.local && put.is_ok() {
      use std::os::unix::fs::PermissionsExt;
      let _ = std::fs::set_permissions(format!("/{key}"), std::fs::Permissions::from_mode(0o600));
    }
    Ok(put)
  }

  async fn write(&self, id: &str, payload: &[u8], expires: Option<Expiry>) -> Result<()> {
    self.put(id, payload, expires, PutMode::Overwrite).await?.map_err(map_err)
  }

  /// Every live record under the root; corrupt objects are reported.
  async fn live(&self) -> Result<Vec<(Path, Record)>> {
    let metas: Vec<_> = self.store()?.list(Some(&self.root)).try_collect().await.map_err(map_err)?;
    let now = now_ms();
    let mut out = Vec::new();
    for m in metas {
      if m.location.extension() != Some(EXT) {
        continue;
      }
      match self.read(&m.location).await {
        Ok(Some((r, _))) if !is_expired(r.header.expires, now) => out.push((m.location, r)),
        Ok(_) => {}
        Err(e) => self.report(e),
      }
    }
    Ok(out)
  }

  /// Up to `count` live sessions of the listing `cursor` names (`""`: a
  /// new one), and the cursor to continue it (`""`: done). The listing
  /// stays open between pages (a local directory lists in no set order, so
  /// a start-after key cannot resume it).
  async fn page(&self, cursor: &str, count: u32) -> Result<super::Page> {
    let mut list = match self.pages.take(cursor)? {
      Some(list) => list,
      None => self.store()?.list(Some(&self.root)),
    };
    let now = now_ms();
    let mut out = Vec::new();
    while out.len() < count as usize {
      let Some(meta) = futures::StreamExt::next(&mut list).await else { return Ok((String::new(), out)) };
      let meta = meta.map_err(map_err)?;
      if meta.location.extension() != Some(EXT) {
        continue;
      }
      match self.read(&meta.location).await {
        Ok(Some((r, _))) if !is_expired(r.header.expires, now) => {
          let ttl = r.header.expires.map_or(Ttl::Persistent, Ttl::At);
          out.push((r.header.id, r.payload, ttl));
        }
        Ok(_) => {}
        Err(e) => self.report(e),
      }
    }
    Ok((self.pages.park(list), out))
  }

  fn report(&self, e: StoreError) {
    if let Some(r) = &self.report {
      r(e);
    }
  }

  async fn sweep(&self) -> usize {
    let Ok(store) = self.store() else { return 0 };
    let Ok(metas) = store.list(Some(&self.root)).try_collect::<Vec<_>>().await else { return 0 };
    let now = now_ms();
    let mut removed = 0;
    for m in metas {
      if self.store.read().is_none() {
        break;
      }
      if m.location.extension() != Some(EXT) {
        continue;
      }
      match self.read(&m.location).await {
        Ok(Some((r, _))) if is_expired(r.header.expires, now) => {
          if store.delete(&m.location).await.is_ok() {
            removed += 1;
          }
        }
        Ok(_) => {}
        Err(e) => self.report(e),
      }
    }
    removed
  }

  /// [`Inner::run`] bounded by the command timeout.
  async fn run_timed(&self, op: &Op) -> Result<Reply> {
    within(self.timeout, self.run(op)).await
  }

  /// A create-only write; true when written. What is already there stops it
  /// unless it has expired: then only that version is replaced (a
  /// conditional write), so of several racing clients one wins.
  async fn add(&self, id: &str, v: &[u8], exp: Option<Expiry>) -> Result<bool> {
    let taken = |e: &object_store::Error| matches!(e, object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. });
    match self.put(id, v, exp, PutMode::Create).await? {
      Ok(()) => return Ok(true),
      Err(e) if taken(&e) => {}
      // No conditional writes configured (e.g. aws_conditional_put =
      // disabled): check, then write; atomic only within this process.
      Err(object_store::Error::NotImplemented { .. }) => {
        if self.read_live(id).await?.is_some() {
          return Ok(false);
        }
        self.write(id, v, exp).await?;
        return Ok(true);
      }
      Err(e) => return Err(map_err(e)),
    }
    let mode = match self.read(&self.key(id)).await? {
      Some((r, version)) if is_expired(r.header.expires, now_ms()) => PutMode::Update(version),
      Some(_) => return Ok(false),
      // Deleted in between: one more create-only try decides.
      None => PutMode::Create,
    };
    match self.put(id, v, exp, mode).await? {
      Ok(()) => Ok(true),
      Err(e) if taken(&e) => Ok(false),
      // Create works but not Update (a local directory): overwrite the expired one.
      Err(object_store::Error::NotImplemented { .. }) => self.write(id, v, exp).await.map(|_| true),
      Err(e) => Err(map_err(e)),
    }
  }

  /// A write only over a live version (a conditional write on the version
  /// read), so a session removed meanwhile is never created again; a
  /// version changed in between is read again.
  async fn replace(&self, id: &str, v: &[u8], exp: Option<Expiry>) -> Result<bool> {
    for _ in 0..REPLACE_TRIES {
      let Some((_, version)) = self.read_live(id).await? else { return Ok(false) };
      match self.put(id, v, exp, PutMode::Update(version)).await? {
        Ok(()) => return Ok(true),
        Err(object_store::Error::Precondition { .. }) => continue,
        // No conditional writes here (e.g. a local directory): it was live just now.
        Err(object_store::Error::NotImplemented { .. }) => return self.write(id, v, exp).await.map(|_| true),
        Err(e) => return Err(map_err(e)),
      }
    }
    Err(StoreError::new(Code::StoreUnavailable, format!("session {id:?} kept changing while it was replaced")))
  }

  async fn run(&self, op: &Op) -> Result<Reply> {
    self.container.check(&*self.store()?, &self.root).await?;
    Ok(match op {
      Op::Get(id) => Reply::Value(self.read_live(id).await?.map(|(r, _)| r.payload)),
      Op::Set(id, v, exp) => {
        self.write(id, v, *exp).await?;
        Reply::Done
      }
      Op::SetIf(id, v, exp, Cond::Absent) => Reply::Bool(self.add(id, v, *exp).await?),
      Op::SetIf(id, v, exp, Cond::Present) => Reply::Bool(self.replace(id, v, *exp).await?),
      Op::Remove(id) => {
        let live = self.read_live(id).await?.is_some();
        match self.store()?.delete(&self.key(id)).await {
          Ok(()) | Err(object_store::Error::NotFound { .. }) => Reply::Bool(live),
          Err(e) => return Err(map_err(e)),
        }
      }
      Op::Touch(id, exp) => match self.read_live(id).await? {
        None => Reply::Bool(false),
        Some((r, version)) => {
          match self.put(id, &r.payload, *exp, PutMode::Update(version)).await? {
            // Written, or someone else wrote it in between (theirs stands).
            Ok(()) | Err(object_store::Error::Precondition { .. }) => {}
            // No conditional writes here (e.g. a local directory).
            Err(object_store::Error::NotImplemented { .. }) => self.write(id, &r.payload, *exp).await?,
            Err(e) => return Err(map_err(e)),
          }
          Reply::Bool(true)
        }
      },
      Op::Ttl(id) => Reply::Ttl(match self.read_live(id).await? {
        None => Ttl::Missing,
        Some((r, _)) => r.header.expires.map_or(Ttl::Persistent, Ttl::At),
      }),
      Op::Exists(id) => Reply::Bool(self.read_live(id).await?.is_some()),
      Op::Len => {
        // Page by page: a count holds no session in memory.
        let (mut n, mut cursor) = (0u64, String::new());
        loop {
          let (next, page) = self.page(&cursor, 1000).await?;
          n += page.len() as u64;
          if next.is_empty() {
            break Reply::Count(n);
          }
          cursor = next;
        }
      }
      Op::Keys => Reply::Keys(self.live().await?.into_iter().map(|(_, r)| r.header.id).collect()),
      Op::Entries => Reply::Entries(self.live().await?.into_iter().map(|(_, r)| (r.header.id, r.payload)).collect()),
      Op::Page(cursor, count) => {
        let (next, page) = self.page(cursor, *count).await?;
        Reply::Page(next, page)
      }
      Op::Lock(..) | Op::Unlock(..) | Op::Renew(..) => return Err(super::no_locks()),
      // An object store has no atomic multi-object step to keep an index
      // and a session together: refused (README, "Per-user sessions").
      Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) => return Err(super::no_users("object storage")),
      // One HEAD of a name no session has: answered (found or not) when the
      // service and the bucket are there.
      Op::Ping => match self.store()?.head(&self.root.clone().join(".rs-store-ping")).await {
        Ok(_) | Err(object_store::Error::NotFound { .. }) => Reply::Done,
        Err(e) => return Err(map_err(e)),
      },
      Op::Clear => {
        let mut n = 0;
        let store = self.store()?;
        for (p, _) in self.live().await? {
          if store.delete(&p).await.is_ok() {
            n += 1;
          }
        }
        Reply::Count(n)
      }
    })
  }
}

/// `call`, or `ERR_STORE_UNAVAILABLE` once `timeout` has passed: object_store
/// alone retries a failing request for up to 3 minutes.
pub async fn within<T>(timeout: Duration, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
  match tokio::time::timeout(timeout, call).await {
    Ok(r) => r,
    Err(_) => Err(StoreError::new(Code::StoreUnavailable, format!("object storage did not answer within {} ms", timeout.as_millis()))),
  }
}

impl ObjectBackend {
  /// Sessions under `root` in `store`; the sweep starts at once on the tokio
  /// runtime this is called from (`sweep_interval: None` = no sweep).
  pub fn new(
    store: Arc<dyn ObjectStore>,
    root: Path,
    timeout: Duration,
    sweep_interval: Option<Duration>,
    report: Option<Report>,
    container: Container,
  ) -> Self {
    let local = container.name.is_none();
    let inner = Arc::new(Inner {
      store: parking_lot::RwLock::new(Some(store)),
      root,
      timeout,
      stop: Notify::new(),
      report,
      local,
      container,
      pages: Cursors::new(),
    });
    let sweeper = sweep_interval.map(|every| {
      let i = inner.clone();
      tokio::spawn(async move {
        loop {
          tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = i.stop.notified() => return,
          }
          if i.store.read().is_none() {
            return;
          }
          i.sweep().await;
        }
      })
    });
    ObjectBackend { inner, sweeper: parking_lot::Mutex::new(sweeper) }
  }

  pub async fn sweep_now(&self) -> usize {
    self.inner.sweep().await
  }
}

#[async_trait]
impl Backend for ObjectBackend {
  async fn exec(&self, ops: Vec<Op>) -> Vec<Result<Reply>> {
    let (n, inner) = (ops.len(), &self.inner);
    let runs = shards(ops, SHARDS).into_iter().map(|group| async move {
      let mut out = Vec::with_capacity(group.len());
      for (i, op) in group {
        out.push((i, inner.run_timed(&op).await));
      }
      out
    });
    in_order(n, futures::future::join_all(runs).await.into_iter().flatten())
  }

  async fn close(&self) -> Result<()> {
    self.inner.stop.notify_waiters();
    if let Some(h) = self.sweeper.lock().take() {
      h.abort();
    }
    // In-flight calls keep their own handle; the client goes with the last.
    self.inner.store.write().take();
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::Ops;
  use crate::expiry::after_ms;
  use object_store::memory::InMemory;

  #[tokio::test]
  async fn sessions_in_memory_object_store() {
    let b =
      ObjectBackend::new(Arc::new(InMemory::new()), Path::from("sessions"), Duration::from_secs(5), None, None, Container::of("file:///"));
    b.set("a", b"{\"n\":1}".to_vec(), Some(after_ms(60_000))).await.unwrap();
    b.set("old", b"{}".to_vec(), Some(now_ms() - 5)).await.unwrap();
    b.set("old2", b"{}".to_vec(), Some(now_ms() - 5)).await.unwrap();
    assert_eq!(b.get("a").await.unwrap().unwrap(), b"{\"n\":1}");
    assert_eq!(b.get("old").await.unwrap(), None, "expiry enforced on read");
    assert!(b.touch("a", None).await.unwrap());
    assert_eq!(b.ttl("a").await.unwrap(), Ttl::Persistent);
    assert!(!b.touch("nope", None).await.unwrap());
    assert_eq!(b.sweep_now().await, 1, "old2 swept");
    assert_eq!(b.len().await.unwrap(), 1);
    let r = b.exec(vec![Op::Set("x".into(), b"1".to_vec(), None), Op::Get("x".into()), Op::Remove("x".into()), Op::Get("x".into())]).await;
    assert_eq!(r[1].as_ref().unwrap(), &Reply::Value(Some(b"1".to_vec())));
    assert_eq!(r[3].as_ref().unwrap(), &Reply::Value(None));
    assert_eq!(b.clear().await.unwrap(), 1);
  }
}
