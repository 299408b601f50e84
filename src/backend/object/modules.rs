//! Synchro's module store on any `object_store` backend: a local directory
//! (Synchro's FileModuleStore), Amazon S3 or S3-compatible endpoints, Azure
//! Blob, Google Cloud Storage (Synchro's PkgCloudModuleStore).
//!
//! Layout under the store's root (the same as Synchro's directory layout):
//! * store files at the root (`apps.json`, …);
//! * one app container per app: `<app>/package.json` with
//!   `{"engines":{"synchro":"*"}}` marks it, modules are `<app>/**/*.js`
//!   (`node_modules` skipped).
//!
//! Every name and path is checked before it reaches the store: `..`, `.`,
//! empty segments, absolute paths, backslashes and NUL are refused with
//! `ERR_INVALID_PATH`.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::backend::object::Container;
use crate::error::{Code, Result, StoreError};

/// What `createAppContainer` writes.
pub const APP_PACKAGE_JSON: &str = "{\"engines\":{\"synchro\":\"*\"}}";

pub struct ModuleStore {
  store: Arc<dyn ObjectStore>,
  root: Path,
  container: Container,
}

/// As the object session store maps errors, plus the two a module store
/// reports as such.
fn map_err(e: object_store::Error) -> StoreError {
  match e {
    object_store::Error::NotFound { path, .. } => StoreError::new(Code::NotFound, format!("{path} does not exist")),
    object_store::Error::AlreadyExists { path, .. } => StoreError::new(Code::AlreadyExists, format!("{path} already exists")),
    other => crate::backend::object::map_err(other),
  }
}

/// Checks a relative, `/`-separated path (a module path or a name).
pub fn check_path(p: &str, what: &str) -> Result<()> {
  let bad = |why: &str| Err(StoreError::new(Code::InvalidPath, format!("{what} {p:?} {why}")));
  if p.is_empty() {
    return bad("is empty");
  }
  if p.contains('\0') || p.contains('\\') {
    return bad("contains NUL or a backslash");
  }
  if p.starts_with('/') {
    return bad("is absolute");
  }
  if p.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
    return bad("has an empty, '.' or '..' segment");
  }
  Ok(())
}

fn check_name(name: &str, what: &str) -> Result<()> {
  check_path(name, what)?;
  if name.contains('/') {
    return Err(StoreError::new(Code::InvalidPath, format!("{what} {name:?} must not contain '/'")));
  }
  Ok(())
}

impl ModuleStore {
  pub fn new(store: Arc<dyn ObjectStore>, root: Path, container: Container) -> Self {
    ModuleStore { store, root, container }
  }

  /// A missing bucket or container is a configuration error (see [`Container`]).
  async fn checked(&self) -> Result<()> {
    self.container.check(&*self.store, &self.root).await
  }

  fn at(&self, rel: &str) -> Path {
    rel.split('/').fold(self.root.clone(), |p, seg| p.join(seg))
  }

  async fn read(&self, path: &Path) -> Result<Option<String>> {
    match self.store.get(path).await {
      Ok(r) => {
        let bytes = r.bytes().await.map_err(map_err)?;
        String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| StoreError::new(Code::Corrupt, format!("{path} is not UTF-8 text")))
      }
      Err(object_store::Error::NotFound { .. }) => Ok(None),
      Err(e) => Err(map_err(e)),
    }
  }

  async fn write(&self, path: &Path, content: String) -> Result<()> {
    self.store.put(path, PutPayload::from(content.into_bytes())).await.map_err(map_err)?;
    Ok(())
  }

  pub async fn get_store_file(&self, name: &str) -> Result<Option<String>> {
    self.checked().await?;
    check_name(name, "store file")?;
    self.read(&self.at(name)).await
  }

  pub async fn put_store_file(&self, name: &str, content: String) -> Result<()> {
    self.checked().await?;
    check_name(name, "store file")?;
    self.write(&self.at(name), content).await
  }

  async fn is_app_container(&self, name: &str) -> Result<bool> {
    Ok(match self.read(&self.at(&format!("{name}/package.json"))).await? {
      None => false,
      Some(text) => serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v["engines"]["synchro"].is_string()),
    })
  }

  /// Names of the app containers (folders holding a Synchro package.json).
  pub async fn app_containers(&self) -> Result<Vec<String>> {
    self.checked().await?;
    let listing = self.store.list_with_delimiter(Some(&self.root)).await.map_err(map_err)?;
    let mut out = Vec::new();
    for prefix in listing.common_prefixes {
      let Some(name) = prefix.filename().map(str::to_string) else { continue };
      if self.is_app_container(&name).await? {
        out.push(name);
      }
    }
    out.sort();
    Ok(out)
  }

  /// Creates `<name>/package.json`; `ERR_ALREADY_EXISTS` when the app exists.
  pub async fn create_app_container(&self, name: &str) -> Result<()> {
    self.checked().await?;
    check_name(name, "app name")?;
    let path = self.at(&format!("{name}/package.json"));
    if self.read(&path).await?.is_some() {
      return Err(StoreError::new(Code::AlreadyExists, format!("app container {name:?} already exists")));
    }
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    match self.store.put_opts(&path, PutPayload::from(APP_PACKAGE_JSON.as_bytes().to_vec()), opts).await {
      Ok(_) => Ok(()),
      // A service without conditional writes: the check above has to do.
      Err(object_store::Error::NotImplemented { .. }) => self.write(&path, APP_PACKAGE_JSON.to_string()).await,
      Err(e) => Err(map_err(e)),
    }
  }

  /// Deletes an app container and everything in it; refuses other folders.
  pub async fn delete_app_container(&self, name: &str) -> Result<()> {
    self.checked().await?;
    check_name(name, "app name")?;
    if !self.is_app_container(name).await? {
      return Err(StoreError::new(Code::NotFound, format!("{name:?} is not an app container")));
    }
    let prefix = self.at(name);
    let objects: Vec<_> = self.store.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await.map_err(map_err)?;
    for loc in objects {
      match self.store.delete(&loc).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(map_err(e)),
      }
    }
    Ok(())
  }

  /// The app's package.json text, or `None`.
  pub async fn app_definition(&self, app: &str) -> Result<Option<String>> {
    self.checked().await?;
    check_name(app, "app name")?;
    self.read(&self.at(&format!("{app}/package.json"))).await
  }

  /// `*.js` paths of the app, relative, with `/`, `node_modules` skipped.
  pub async fn list_modules(&self, app: &str) -> Result<Vec<String>> {
    self.checked().await?;
    check_name(app, "app name")?;
    let prefix = self.at(app);
    let skip = prefix.parts().count();
    let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(map_err)?;
    let mut out: Vec<String> = metas
      .into_iter()
      .filter_map(|m| {
        let parts: Vec<String> = m.location.parts().skip(skip).map(|p| p.as_ref().to_string()).collect();
        let rel = parts.join("/");
        (rel.ends_with(".js") && !parts.iter().any(|p| p == "node_modules")).then_some(rel)
      })
      .collect();
    out.sort();
    Ok(out)
  }

  pub async fn module_source(&self, app: &str, path: &str) -> Result<Option<String>> {
    self.checked().await?;
    check_name(app, "app name")?;
    check_path(path, "module path")?;
    self.read(&self.at(&format!("{app}/{path}"))).await
  }

  pub async fn put_module_source(&self, app: &str, path: &str, content: String) -> Result<()> {
    self.checked().await?;
    check_name(app, "app name")?;
    check_path(path, "module path")?;
    self.write(&self.at(&format!("{app}/{path}")), content).await
  }

  /// Removes a module; true when it existed.
  pub async fn remove_module_source(&self, app: &str, path: &str) -> Result<bool> {
    self.checked().await?;
    check_name(app, "app name")?;
    check_path(path, "module path")?;
    let p = self.at(&format!("{app}/{path}"));
    match self.store.head(&p).await {
      Ok(_) => {}
      Err(object_store::Error::NotFound { .. }) => return Ok(false),
      Err(e) => return Err(map_err(e)),
    }
    match self.store.delete(&p).await {
      Ok(()) => Ok(true),
      Err(object_store::Error::NotFound { .. }) => Ok(false),
      Err(e) => Err(map_err(e)),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use object_store::memory::InMemory;

  #[test]
  fn path_rules() {
    for ok in ["a.js", "lib/x.js", "deep/er/y.js", "apps.json"] {
      assert!(check_path(ok, "p").is_ok(), "{ok}");
    }
    for bad in ["", "..", "../x.js", "a/../b.js", "/etc/passwd", "a//b.js", "./a.js", "nul\0.js", "win\\x.js"] {
      assert_eq!(check_path(bad, "p").unwrap_err().code, Code::InvalidPath, "{bad:?}");
    }
    assert_eq!(check_name("a/b", "app").unwrap_err().code, Code::InvalidPath);
  }

  #[tokio::test]
  async fn api_on_memory() {
    let m = ModuleStore::new(Arc::new(InMemory::new()), Path::from("root"), Container::of("file:///"));
    assert_eq!(m.get_store_file("apps.json").await.unwrap(), None);
    m.put_store_file("apps.json", "{}".into()).await.unwrap();
    assert_eq!(m.get_store_file("apps.json").await.unwrap().as_deref(), Some("{}"));
    m.create_app_container("app1").await.unwrap();
    assert_eq!(m.create_app_container("app1").await.unwrap_err().code, Code::AlreadyExists);
    m.put_module_source("app1", "main.js", "x".into()).await.unwrap();
    m.put_module_source("app1", "lib/util.js", "y".into()).await.unwrap();
    m.put_module_source("app1", "node_modules/dep/index.js", "z".into()).await.unwrap();
    m.put_module_source("app1", "readme.md", "#".into()).await.unwrap();
    m.put_store_file("loose.json", "[]".into()).await.unwrap();
    m.put_module_source("notanapp", "a.js", "q".into()).await.unwrap();
    assert_eq!(m.delete_app_container("notanapp").await.unwrap_err().code, Code::NotFound, "only app containers");
    assert_eq!(m.list_modules("app1").await.unwrap(), vec!["lib/util.js", "main.js"]);
    assert_eq!(m.app_containers().await.unwrap(), vec!["app1"]);
    assert_eq!(m.app_definition("app1").await.unwrap().as_deref(), Some(APP_PACKAGE_JSON));
    assert!(m.remove_module_source("app1", "main.js").await.unwrap());
    assert!(!m.remove_module_source("app1", "main.js").await.unwrap());
    assert_eq!(m.module_source("app1", "main.js").await.unwrap(), None);
    m.delete_app_container("app1").await.unwrap();
    assert_eq!(m.app_containers().await.unwrap(), Vec::<String>::new());
  }
}
