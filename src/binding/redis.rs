//! The Redis stores' constructors and their settings: `redisStore` (a
//! dispatcher over the redis crate's clients: Cluster, Sentinel, one server
//! with `ioThread`) and `redisWireStore` (one server or the daemon, its
//! socket on the JS thread).

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::External;
use napi_derive::napi;

use super::async_store::{Dispatched, Runs, DEFAULT_SPIN};
use super::store_core::{charged, reporter_of, Core, OnReport};
use super::wire_store::WireStore;
use crate::backend::redis::{Commands, RedisBackend, RedisConfig, Topology};
use crate::backend::Report;
use crate::backend::redis::wire::Wire;
use crate::error::Code;
use crate::options::{client_tls, ms_or, SessionOptions, REDIS_TIMEOUT_MS};

/// Connection settings of the Redis store, normalized by the JS facade.
#[napi(object)]
pub struct RedisStoreConfig {
  /// `single`, `cluster`, `sentinel`, or `daemon` (rs-store's session daemon).
  pub mode: String,
  /// Server URL (single), seed node URLs (cluster) or sentinel URLs.
  pub urls: Vec<String>,
  /// The monitored master's name (sentinel).
  pub master_name: Option<String>,
  pub username: Option<String>,
  pub password: Option<String>,
  pub db: Option<u32>,
  /// Key prefix (default `sess:`).
  pub prefix: String,
  /// TLS to a Sentinel-managed master (others take it from `rediss://`).
  pub tls: Option<bool>,
  /// A CA certificate (PEM) to trust instead of the public roots.
  pub tls_ca: Option<String>,
  /// Client certificate and key (PEM), for mutual TLS.
  pub tls_cert: Option<String>,
  pub tls_key: Option<String>,
  /// Default [`crate::options::REDIS_TIMEOUT_MS`], as the next one.
  pub connect_timeout_ms: Option<u32>,
  pub command_timeout_ms: Option<u32>,
  /// Session size limit and codec.
  pub session: Option<SessionOptions>,
  /// How long (µs) the I/O thread stays awake waiting for replies and
  /// requests before it sleeps (default 100; 0 = never spin).
  pub spin_micros: Option<u32>,
}

/// A Redis store over the redis crate's clients (single server, Redis
/// Cluster or Sentinel).
pub(crate) fn dispatched(config: RedisStoreConfig, report: Option<Report>) -> napi::Result<Dispatched, Code> {
  let opt = |m: &str| napi::Error::new(Code::InvalidOption, m.to_string());
  let topology = match config.mode.as_str() {
    "single" | "daemon" => Topology::Single(config.urls.first().cloned().ok_or_else(|| opt("a Redis URL is needed"))?),
    "cluster" => Topology::Cluster(config.urls),
    "sentinel" => {
      Topology::Sentinel { sentinels: config.urls, master: config.master_name.ok_or_else(|| opt("sentinel mode needs the master's name"))? }
    }
    m => return Err(opt(&format!("unknown Redis mode {m:?}"))),
  };
  let client_tls = client_tls(config.tls_cert, config.tls_key)?
    .map(|(cert, key)| redis::ClientTlsConfig { client_cert: cert.into_bytes(), client_key: key.into_bytes() });
  let tls_certs = (config.tls_ca.is_some() || client_tls.is_some())
    .then(|| redis::TlsCertificates { client_tls, root_cert: config.tls_ca.map(String::into_bytes) });
  let (core, rules) = Core::with_users(config.session, report)?;
  let cfg = RedisConfig {
    topology,
    tls: config.tls.unwrap_or(false),
    tls_certs,
    username: config.username,
    password: config.password,
    db: config.db.map(i64::from),
    prefix: config.prefix,
    connect_timeout: ms_or(config.connect_timeout_ms, REDIS_TIMEOUT_MS),
    command_timeout: ms_or(config.command_timeout_ms, REDIS_TIMEOUT_MS),
    daemon: config.mode == "daemon",
    rules,
  };
  let spin = config.spin_micros.map_or(DEFAULT_SPIN, |us| Duration::from_micros(us as u64));
  Ok(Dispatched { core, backend: Arc::new(RedisBackend::new(cfg)?), spin, runs: Runs::Shared })
}

/// A Redis store (one server, or rs-store's session daemon) whose
/// connection is a socket on the JS thread, driven by `lib/redis-wire.js`
/// through `q`/`opened`/`pack`/`feed`/`abort` (src/binding/wire_store.rs). The URL
/// gives the credentials and database (`username`, `password`, `db` win).
#[napi(catch_unwind, ts_args_type = "config: RedisStoreConfig, onReport?: (err: Error) => void")]
pub fn redis_wire_store(config: RedisStoreConfig, on_report: Option<OnReport<'_>>) -> napi::Result<External<WireStore>, Code> {
  use redis::IntoConnectionInfo;
  let url = config.urls.first().ok_or_else(|| napi::Error::new(Code::InvalidOption, "a Redis URL is needed".to_string()))?;
  let info = url.as_str().into_connection_info().map_err(|e| napi::Error::new(Code::InvalidOption, format!("Redis URL {url:?}: {e}")))?;
  let settings = info.redis_settings();
  let address = match info.addr() {
    redis::ConnectionAddr::Unix(p) => p.display().to_string(),
    a => a.to_string().trim_start_matches("rediss://").trim_start_matches("redis://").to_string(),
  };
  let (core, rules) = Core::with_users(config.session, reporter_of(on_report)?)?;
  let wire = Wire::new(
    Commands { prefix: config.prefix, daemon: config.mode == "daemon", rules },
    address,
    config.username.or_else(|| settings.username().map(str::to_string)),
    config.password.or_else(|| settings.password().map(str::to_string)),
    config.db.map(i64::from).or(Some(settings.db())),
  );
  Ok(charged(WireStore::new(wire, core)))
}
