//! `startDaemon()`: the session daemon (see [`crate::daemon`]) inside a Node
//! process; `bin/rs-store-daemon.js` is its command line.

use std::sync::Arc;

use napi_derive::napi;
use tokio::sync::Mutex;

use super::reply::Settled;
use crate::backend::file::{FileBackend, FileOptions};
use crate::backend::memory::{MemoryBackend, MemoryOptions};
use crate::backend::{Backend, Report};
use crate::daemon::{Daemon, Listen};
use crate::error::{Code, Result, StoreError};

/// Where and how the daemon serves.
#[napi(object)]
pub struct DaemonConfig {
  pub listen: DaemonListen,
  pub storage: DaemonStorage,
  /// Largest session value accepted, in bytes (default 2 MiB).
  pub max_value_bytes: Option<f64>,
  /// How often expired sessions are deleted (default 60000 ms).
  pub sweep_interval_ms: Option<u32>,
}

/// Where the daemon listens: a TCP port on 127.0.0.1 (0: any free port),
/// or a UNIX socket.
#[napi(discriminant = "kind", discriminant_case = "lowercase")]
pub enum DaemonListen {
  Port { port: u32 },
  Socket { path: String },
}

/// What the daemon keeps: sessions in its memory, sessions in a directory
/// (the file backend: they persist across restarts), or locks only
/// (`--lock`).
#[napi(discriminant = "kind", discriminant_case = "lowercase")]
pub enum DaemonStorage {
  Memory,
  Dir { dir: String },
  Locks,
}

/// A running daemon.
#[napi]
pub struct DaemonServer {
  inner: Arc<Mutex<Daemon>>,
  address: String,
}

#[napi]
impl DaemonServer {
  /// `127.0.0.1:<port>` or the socket path.
  #[napi(getter)]
  pub fn address(&self) -> String {
    self.address.clone()
  }

  /// Stops serving: closes every connection (their locks go with them) and
  /// the storage.
  #[napi(ts_return_type = "Promise<void | Error>")]
  pub async fn close(&self) -> napi::Result<Settled<()>> {
    Ok(Settled(self.inner.lock().await.stop().await))
  }
}

/// Starts the session daemon in this process.
#[napi(ts_return_type = "Promise<DaemonServer | Error>")]
pub async fn start_daemon(config: DaemonConfig) -> napi::Result<Settled<DaemonServer>> {
  Ok(Settled(start(config).await))
}

async fn start(config: DaemonConfig) -> Result<DaemonServer> {
  let opt = |m: &str| StoreError::new(Code::InvalidOption, m);
  let listen = match config.listen {
    DaemonListen::Port { port } if port <= 65535 => Listen::Port(port as u16),
    DaemonListen::Socket { path } if !path.is_empty() => Listen::Socket(path.into()),
    _ => return Err(opt("give either a port (0-65535) or a socket path")),
  };
  let report: Report = Arc::new(|e: StoreError| eprintln!("rs-store-daemon: {}: {}", e.code.as_str(), e.message));
  let sweep = crate::options::ms_or(config.sweep_interval_ms, crate::options::SWEEP_STORED_MS);
  let storage: Option<Arc<dyn Backend>> = match config.storage {
    DaemonStorage::Locks => None,
    DaemonStorage::Dir { dir } => Some(Arc::new(FileBackend::new(FileOptions {
      dir: dir.into(),
      fast_reads: false, // no JS thread to spare a hop for here
      durable: false,
      sweep_interval: Some(sweep),
      report: Some(report),
      read_cache_bytes: super::READ_CACHE_BYTES,
      inline_small_batches: false, // the daemon's runtime is shared by its connections
      rules: Default::default(),
    })?)),
    DaemonStorage::Memory => Some(Arc::new(MemoryBackend::new(MemoryOptions { sweep_interval: Some(sweep), ..Default::default() })?)),
  };
  let max_value = match config.max_value_bytes {
    None => crate::daemon::MAX_VALUE_BYTES,
    Some(n) if (1.0..=1e12).contains(&n) => n as usize,
    Some(n) => return Err(opt(&format!("maxValueBytes must be at least 1, got {n}"))),
  };
  let daemon = Daemon::start(listen, storage, max_value).await?;
  Ok(DaemonServer { address: daemon.address().to_string(), inner: Arc::new(Mutex::new(daemon)) })
}
