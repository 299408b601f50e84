//! The PostgreSQL store's constructor (`rs.postgres`, lib/postgres.js):
//! settings normalized by the JS facade, made into the backend's here.

use std::str::FromStr;
use std::sync::Arc;

use napi_derive::napi;

use super::async_store::{Dispatched, Runs, DEFAULT_SPIN};
use super::Core;
use crate::backend::postgres::{tls_config, PostgresBackend, PostgresConfig};
use crate::backend::Report;
use crate::error::Code;
use crate::options::{client_tls, ms_or, SessionOptions, POSTGRES_TIMEOUT_MS, SWEEP_STORED_MS};

/// Connection settings and table of the PostgreSQL store, normalized by the
/// JS facade. `url` (a `postgres://` URL or `key=value` settings) is read
/// first; the single settings after it win.
#[napi(object)]
pub struct PostgresStoreConfig {
  pub url: Option<String>,
  /// A host name, or a directory holding the server's unix socket.
  pub host: Option<String>,
  pub port: Option<u32>,
  pub user: Option<String>,
  pub password: Option<String>,
  pub database: Option<String>,
  /// TLS with certificate verification (the public roots, or `tls_ca`).
  pub tls: Option<bool>,
  pub tls_ca: Option<String>,
  pub tls_cert: Option<String>,
  pub tls_key: Option<String>,
  /// Default `public` and `session` (connect-pg-simple's).
  pub schema: Option<String>,
  pub table: Option<String>,
  /// Create the table when missing (default true).
  pub create_table: Option<bool>,
  /// Connections kept (default 4).
  pub pool_size: Option<u32>,
  pub connect_timeout_ms: Option<u32>,
  pub command_timeout_ms: Option<u32>,
  /// How often expired rows are deleted (default 60000 ms; 0: never, by this process).
  pub sweep_interval_ms: Option<u32>,
  /// Session size limit and codec.
  pub session: Option<SessionOptions>,
}

/// Default `poolSize`.
const POOL_SIZE: u32 = 4;

/// A PostgreSQL store.
pub(crate) fn dispatched(config: PostgresStoreConfig, report: Option<Report>) -> napi::Result<Dispatched, Code> {
  let opt = |m: String| napi::Error::new(Code::InvalidOption, m);
  let mut pg = match &config.url {
    // The URL is not echoed: it may hold the password.
    Some(url) => tokio_postgres::Config::from_str(url).map_err(|e| opt(format!("PostgreSQL URL: {e}")))?,
    None => tokio_postgres::Config::new(),
  };
  if let Some(h) = &config.host {
    pg.host(h);
  }
  if let Some(p) = config.port {
    pg.port(u16::try_from(p).map_err(|_| opt(format!("port {p} is out of range")))?);
  }
  if let Some(u) = &config.user {
    pg.user(u);
  }
  if let Some(p) = &config.password {
    pg.password(p);
  }
  if let Some(d) = &config.database {
    pg.dbname(d);
  }
  if pg.get_hosts().is_empty() {
    pg.host("localhost");
  }
  let client = client_tls(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
  let tls = if config.tls.unwrap_or(false) || config.tls_ca.is_some() || client.is_some() {
    pg.ssl_mode(tokio_postgres::config::SslMode::Require);
    Some(tls_config(config.tls_ca.as_deref(), client)?)
  } else if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
    // sslmode=require in the URL: verified against the public roots.
    Some(tls_config(None, None)?)
  } else {
    None
  };
  let sweep = config.sweep_interval_ms.unwrap_or(SWEEP_STORED_MS);
  let (core, rules) = Core::with_users(config.session, report)?;
  let backend = PostgresBackend::new(PostgresConfig {
    pg,
    schema: config.schema.unwrap_or_else(|| "public".into()),
    table: config.table.unwrap_or_else(|| "session".into()),
    create_table: config.create_table.unwrap_or(true),
    pool_size: config.pool_size.unwrap_or(POOL_SIZE) as usize,
    connect_timeout: ms_or(config.connect_timeout_ms, POSTGRES_TIMEOUT_MS),
    command_timeout: ms_or(config.command_timeout_ms, POSTGRES_TIMEOUT_MS),
    sweep_interval: (sweep > 0).then(|| ms_or(Some(sweep), SWEEP_STORED_MS)),
    tls,
    rules,
  })?;
  Ok(Dispatched { core, backend: Arc::new(backend), spin: DEFAULT_SPIN, runs: Runs::Shared })
}
