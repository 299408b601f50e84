//! The tokio runtime the stores' I/O runs on (the dispatchers, the Redis
//! Cluster/Sentinel connection drivers, object storage): rs-store's own,
//! process-wide, with one worker thread (a batch then crosses threads only
//! twice, JS → worker → JS, instead of bouncing between workers, which on
//! small machines costs more than it gains; file I/O goes to its blocking
//! pool). Built on first use and never shut down, so it outlives every
//! Node environment: napi-rs's own runtime ends with the last environment
//! (the last worker of a pool that the main thread never loaded rs-store
//! in), and the one napi builds for the next environment is its default
//! (a worker per core), since it honours `create_custom_tokio_runtime`
//! for its first runtime only. Its thread parks when idle.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

use crate::error::{Code, Result, StoreError};

/// The runtime, or why it could not be built.
pub fn get() -> Result<&'static Runtime> {
  static RT: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
  RT.get_or_init(|| {
    // Its threads outlive environments: the image they run must stay mapped.
    outlive_environments();
    Builder::new_multi_thread().worker_threads(1).thread_name("rs-store-io").enable_all().build().map_err(|e| e.to_string())
  })
  .as_ref()
  .map_err(|e| StoreError::new(Code::Internal, format!("cannot start rs-store's I/O runtime: {e}")))
}

/// Keeps this addon's image mapped for the rest of the process (Node unloads
/// an addon with the last environment that loaded it): for process-wide
/// threads and handlers that run its code after that environment is gone.
pub fn outlive_environments() {
  #[cfg(not(test))]
  napi::bindgen_prelude::retain_current_module_for_unload_safety();
}
