//! The runtime napi-rs drives its own `async fn` exports on, set up when
//! the addon loads.

/// napi-rs's runtime runs what napi drives itself (the `async fn` exports:
/// the daemon, module stores; flush promises); one worker is plenty. napi
/// takes this runtime for its first environment only and shuts it down with
/// the last one; the stores' I/O runs on rs-store's own runtime instead
/// ([`crate::runtime`]), which outlives every environment.
#[napi_derive::module_init]
fn init_runtime() {
  if let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("rs-store-napi").enable_all().build() {
    napi::bindgen_prelude::create_custom_tokio_runtime(rt);
  }
}
