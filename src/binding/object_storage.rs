//! Object storage in the `#[napi]` layer: the module store class (async
//! methods over [`crate::backend::object::modules::ModuleStore`], which resolve with
//! their value or a coded Error: [`super::reply::Settled`]) and the
//! object-storage session store factory.

use std::sync::Arc;

use napi_derive::napi;
use object_store::parse_url_opts;
use url::Url;

use std::time::Duration;

use object_store::path::Path;
use object_store::ObjectStore;

use super::async_store::{Dispatched, Runs};
use super::reply::Settled;
use super::Core;
use crate::backend::object::modules::ModuleStore;
use crate::backend::object::{within, Container, ObjectBackend};
use crate::backend::Report;
use crate::error::{Code, StoreError};
use crate::options::{ms_or, SessionOptions, SWEEP_STORED_MS};

/// An object store and its root from a URL and object_store settings.
fn open(url: &str, options: Vec<Vec<String>>) -> crate::error::Result<(Arc<dyn ObjectStore>, Path)> {
  let bad = |m: String| StoreError::new(Code::InvalidOption, m);
  let parsed = Url::parse(url).map_err(|e| bad(format!("object storage URL {url:?}: {e}")))?;
  let pairs = options.into_iter().filter_map(|kv| match kv.as_slice() {
    [k, v] => Some((k.clone(), v.clone())),
    _ => None,
  });
  let (store, root) = parse_url_opts(&parsed, pairs).map_err(|e| bad(format!("object storage {url:?}: {e}")))?;
  Ok((Arc::from(store), root))
}

/// Options of the object-storage session store.
#[napi(object)]
pub struct ObjectStoreConfig {
  /// `s3://bucket/prefix`, `az://container/prefix`, `gs://…`, `file:///dir`.
  pub url: String,
  /// object_store settings as [key, value] pairs.
  pub options: Vec<Vec<String>>,
  /// Folder under the URL's path for the sessions (default `sessions`).
  pub prefix: Option<String>,
  /// How often expired sessions are deleted (default 60000 ms).
  pub sweep_interval_ms: Option<u32>,
  /// Every call settles within this, retries included (default 10000 ms).
  pub command_timeout_ms: Option<u32>,
  /// Session size limit and codec.
  pub session: Option<SessionOptions>,
}

/// Sessions in object storage; problems (corrupt objects, decode
/// failures) are reported.
pub(crate) fn dispatched(config: ObjectStoreConfig, report: Option<Report>) -> napi::Result<Dispatched, Code> {
  let (store, root) = open(&config.url, config.options)?;
  let prefix = config.prefix.unwrap_or_else(|| "sessions".into());
  crate::backend::object::modules::check_path(&prefix, "prefix")?;
  let root = prefix.split('/').fold(root, |p, seg| p.join(seg));
  // A local directory of sessions is its owner's alone: 0700 (and files 0600).
  let local = config.url.starts_with("file://");
  if local {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    let dir = format!("/{root}");
    b.create(&dir).map_err(|e| StoreError::new(Code::Io, format!("cannot create directory {dir}: {e}")))?;
  }
  let core = Core::new(config.session, report.clone())?;
  let every = ms_or(config.sweep_interval_ms, SWEEP_STORED_MS);
  let timeout = crate::options::ms_or(config.command_timeout_ms, crate::options::OBJECT_SESSION_TIMEOUT_MS);
  // Its sweep task starts here, on the runtime its dispatcher runs on.
  let backend = {
    let _rt = crate::runtime::get()?.enter();
    ObjectBackend::new(store, root, timeout, Some(every), report, Container::of(&config.url))
  };
  Ok(Dispatched { core, backend: Arc::new(backend), spin: Duration::ZERO, runs: Runs::Shared })
}

/// A Synchro module store on a local directory or cloud object storage.
#[napi]
pub struct NativeModuleStore {
  inner: Arc<ModuleStore>,
  timeout: Duration,
}

impl NativeModuleStore {
  /// `call` bounded by the command timeout (see [`within`]).
  async fn timed<T>(&self, call: impl std::future::Future<Output = crate::error::Result<T>>) -> napi::Result<Settled<T>> {
    Ok(Settled(within(self.timeout, call).await))
  }
}

#[napi]
impl NativeModuleStore {
  /// `url`: `file:///abs/dir`, `s3://bucket/prefix`, `az://container/prefix`,
  /// `gs://bucket/prefix`; `options`: object_store settings as [key, value]
  /// pairs (e.g. `aws_endpoint`, `azure_storage_account_key`);
  /// `commandTimeoutMs`: every call settles within it, retries included
  /// (default 30000 ms).
  #[napi(constructor, catch_unwind)]
  pub fn new(url: String, options: Vec<Vec<String>>, command_timeout_ms: Option<u32>) -> napi::Result<Self, Code> {
    let (store, root) = open(&url, options)?;
    let timeout = crate::options::ms_or(command_timeout_ms, crate::options::MODULE_TIMEOUT_MS);
    Ok(NativeModuleStore { inner: Arc::new(ModuleStore::new(store, root, Container::of(&url))), timeout })
  }

  #[napi(ts_return_type = "Promise<string | null | Error>")]
  pub async fn get_store_file(&self, name: String) -> napi::Result<Settled<Option<String>>> {
    self.timed(self.inner.get_store_file(&name)).await
  }
  #[napi(ts_return_type = "Promise<void | Error>")]
  pub async fn put_store_file(&self, name: String, content: String) -> napi::Result<Settled<()>> {
    self.timed(self.inner.put_store_file(&name, content)).await
  }
  #[napi(ts_return_type = "Promise<Array<string> | Error>")]
  pub async fn get_app_containers(&self) -> napi::Result<Settled<Vec<String>>> {
    self.timed(self.inner.app_containers()).await
  }
  #[napi(ts_return_type = "Promise<void | Error>")]
  pub async fn create_app_container(&self, name: String) -> napi::Result<Settled<()>> {
    self.timed(self.inner.create_app_container(&name)).await
  }
  #[napi(ts_return_type = "Promise<void | Error>")]
  pub async fn delete_app_container(&self, name: String) -> napi::Result<Settled<()>> {
    self.timed(self.inner.delete_app_container(&name)).await
  }
  #[napi(ts_return_type = "Promise<string | null | Error>")]
  pub async fn get_app_definition(&self, app: String) -> napi::Result<Settled<Option<String>>> {
    self.timed(self.inner.app_definition(&app)).await
  }
  #[napi(ts_return_type = "Promise<Array<string> | Error>")]
  pub async fn list_modules(&self, app: String) -> napi::Result<Settled<Vec<String>>> {
    self.timed(self.inner.list_modules(&app)).await
  }
  #[napi(ts_return_type = "Promise<string | null | Error>")]
  pub async fn get_module_source(&self, app: String, path: String) -> napi::Result<Settled<Option<String>>> {
    self.timed(self.inner.module_source(&app, &path)).await
  }
  #[napi(ts_return_type = "Promise<void | Error>")]
  pub async fn put_module_source(&self, app: String, path: String, content: String) -> napi::Result<Settled<()>> {
    self.timed(self.inner.put_module_source(&app, &path, content)).await
  }
  #[napi(ts_return_type = "Promise<boolean | Error>")]
  pub async fn remove_module_source(&self, app: String, path: String) -> napi::Result<Settled<bool>> {
    self.timed(self.inner.remove_module_source(&app, &path)).await
  }
}
