//! PostgreSQL backend on `tokio-postgres`, pooled by `deadpool-postgres`,
//! on rs-store's shared runtime. Sessions live in connect-pg-simple's table
//! (`sid varchar PRIMARY KEY, sess json, expire timestamp(6)`, see
//! [`sql`]), created when missing, so both read and write the same rows.
//!
//! * A batch ([`Backend::exec`]) is pipelined on one pooled connection:
//!   every op's prepared statement is sent before the first answer is read
//!   (tokio-postgres writes a query when its future is first polled, and
//!   they are polled in op order), so a tick's calls cost one round trip
//!   and apply in call order. Whole-store ops run between them, alone.
//! * Every op is one atomic statement: `add` is an `INSERT … ON CONFLICT DO
//!   UPDATE … WHERE expired` (one winner), `replace`/`update` an `UPDATE …
//!   WHERE live` (never recreating a removed session); expired rows are
//!   invisible at once (every read says `expire > now`).
//! * The sweeper deletes expired rows in bounded batches, each statement
//!   under a transaction-level advisory lock of the table: one process of
//!   the fleet at a time, the others skip.
//! * Locks are rows of a lock table beside the sessions' (see docs/backends.md).
//! * Per-user sessions and `rotate`: [`users`] (a transaction each).
//! * Every call settles within `commandTimeoutMs`; a connection that broke
//!   is dropped by the pool (recycled only while open), so a restarted
//!   server is used again at the next call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use futures::future::join_all;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Backend, Cond, Op, Reply, Ttl, UserRules};
use crate::error::{Code, Result, StoreError};
use crate::expiry::now_ms;

pub mod sql;
mod users;

use sql::{map_err, seconds, Sess, Sql, Stored, SWEEP_BATCH};

/// What the binding hands the backend (checked: names, timeouts, TLS).
pub struct PostgresConfig {
  pub pg: tokio_postgres::Config,
  pub schema: String,
  pub table: String,
  pub create_table: bool,
  pub pool_size: usize,
  pub connect_timeout: Duration,
  pub command_timeout: Duration,
  /// `None`: no sweeper in this process.
  pub sweep_interval: Option<Duration>,
  /// `None`: plain TCP (or the unix socket).
  pub tls: Option<rustls::ClientConfig>,
  /// Per-user rules (`userOf`, `maxSessionsPerUser`, `maxLifetime`).
  pub rules: UserRules,
}

struct Inner {
  pool: Pool,
  sql: Sql,
  /// `PostgreSQL at host:port/db`, for messages.
  place: String,
  create_table: bool,
  /// The table was found or made (once per store), with the per-user
  /// columns where the store has rules.
  ready: tokio::sync::OnceCell<()>,
  rules: UserRules,
  command_timeout: Duration,
  closed: AtomicBool,
  /// The last failed connect attempt or timed-out query: batches within
  /// [`RETRY_AFTER`] of it fail at once with its error instead of waiting
  /// out another timeout behind it (so calls queued meanwhile still settle
  /// within `commandTimeoutMs` of being made).
  last_failure: parking_lot::Mutex<Option<(std::time::Instant, StoreError)>>,
}

/// How long after a failed connect attempt (or a query that timed out) calls fail at once.
const RETRY_AFTER: Duration = Duration::from_millis(250);

pub struct PostgresBackend {
  inner: Arc<Inner>,
  sweeper: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The statements of the per-id ops, in the order [`kind`] numbers them.
const PER_ID: usize = 11;

fn kind(op: &Op) -> usize {
  match op {
    Op::Get(_) => 0,
    Op::Set(..) => 1,
    Op::SetIf(.., Cond::Absent) => 2,
    Op::SetIf(.., Cond::Present) => 3,
    Op::Remove(_) => 4,
    Op::Touch(..) => 5,
    Op::Ttl(_) => 6,
    Op::Exists(_) => 7,
    Op::Lock(..) => 8,
    Op::Unlock(..) => 9,
    Op::Renew(..) => 10,
    Op::Len | Op::Clear | Op::Keys | Op::Entries | Op::Page(..) | Op::Ping => usize::MAX,
    // Run alone (`Inner::alone`), never pipelined.
    Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) => usize::MAX,
  }
}

impl Sql {
  fn per_id(&self, k: usize) -> &str {
    [
      &self.get,
      &self.set,
      &self.add,
      &self.replace,
      &self.remove,
      &self.touch,
      &self.ttl,
      &self.exists,
      &self.lock,
      &self.unlock,
      &self.renew,
    ][k]
  }
}

/// A ttl read back (`expire` in epoch ms; infinity: no expiry).
fn ttl_of(ms: f64) -> Ttl {
  if ms.is_infinite() {
    Ttl::Persistent
  } else {
    Ttl::At(ms.max(0.0) as u64)
  }
}

/// PostgreSQL text cannot hold NUL: such an id (or cursor) is refused
/// before anything is sent.
fn check_text(op: &Op) -> Result<()> {
  let nul = |s: &str| s.contains('\0');
  let bad = match op {
    Op::Page(cursor, _) => nul(cursor),
    Op::Rotate(old, new, _) => nul(old) || nul(new),
    op => op.id().is_some_and(nul),
  };
  if bad {
    return Err(StoreError::new(Code::InvalidId, "a PostgreSQL store cannot hold a session id with a NUL character"));
  }
  Ok(())
}

impl PostgresBackend {
  /// Checks the configuration; connects on first use.
  pub fn new(cfg: PostgresConfig) -> Result<Self> {
    sql::check_ident("schema", &cfg.schema)?;
    sql::check_ident("table", &cfg.table)?;
    sql::check_ident("table", &format!("{}_lock", cfg.table))?;
    let mut pg = cfg.pg;
    pg.connect_timeout(cfg.connect_timeout.min(cfg.command_timeout));
    if pg.get_application_name().is_none() {
      pg.application_name("rs-store");
    }
    let place = place_of(&pg);
    let tls = match cfg.tls {
      Some(c) => c,
      None => {
        // Never used (sslmode disable), but one connector type serves both.
        if pg.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
          pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        tls_config(None, None)?
      }
    };
    let manager = Manager::from_config(pg, MakeRustlsConnect::new(tls), ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(manager)
      .max_size(cfg.pool_size.max(1))
      .runtime(Runtime::Tokio1)
      .wait_timeout(Some(cfg.command_timeout))
      .create_timeout(Some(cfg.connect_timeout.min(cfg.command_timeout)))
      .recycle_timeout(Some(cfg.command_timeout))
      .build()
      .map_err(|e| StoreError::new(Code::Internal, format!("cannot make the PostgreSQL pool: {e}")))?;
    let inner = Arc::new(Inner {
      pool,
      sql: Sql::new(&cfg.schema, &cfg.table, cfg.rules.any()),
      place,
      create_table: cfg.create_table,
      ready: tokio::sync::OnceCell::new(),
      rules: cfg.rules,
      command_timeout: cfg.command_timeout,
      closed: AtomicBool::new(false),
      last_failure: parking_lot::Mutex::new(None),
    });
    let sweeper = match cfg.sweep_interval {
      Some(every) => Some(crate::runtime::get()?.spawn(sweep_loop(Arc::downgrade(&inner), every))),
      None => None,
    };
    Ok(PostgresBackend { inner, sweeper: parking_lot::Mutex::new(sweeper) })
  }

  /// Runs one sweep now (tests, the CLI): how many expired rows were deleted
  /// (0 when another process holds the sweep).
  pub async fn sweep(&self) -> Result<u64> {
    self.inner.sweep().await
  }
}

/// rustls settings: trust `ca` (PEM) instead of the public roots, and
/// present `client` (certificate and key, PEM) when given.
pub fn tls_config(ca: Option<&str>, client: Option<(&str, &str)>) -> Result<rustls::ClientConfig> {
  use rustls_pki_types::pem::PemObject;
  use rustls_pki_types::{CertificateDer, PrivateKeyDer};
  let bad = |what: &str, e: &dyn std::fmt::Display| StoreError::new(Code::InvalidOption, format!("TLS {what}: {e}"));
  let mut roots = rustls::RootCertStore::empty();
  match ca {
    Some(pem) => {
      for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad("tls.ca", &e))?).map_err(|e| bad("tls.ca", &e))?;
      }
      if roots.is_empty() {
        return Err(StoreError::new(Code::InvalidOption, "TLS tls.ca holds no certificate"));
      }
    }
    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
  }
  let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("settings", &e))?
    .with_root_certificates(roots);
  Ok(match client {
    None => builder.with_no_client_auth(),
    Some((cert, key)) => {
      let certs =
        CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| bad("tls.cert", &e))?;
      let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad("tls.key", &e))?;
      builder.with_client_auth_cert(certs, key).map_err(|e| bad("client certificate", &e))?
    }
  })
}

/// `PostgreSQL at host:port/db` (or the socket directory).
fn place_of(pg: &tokio_postgres::Config) -> String {
  use tokio_postgres::config::Host;
  let hosts: Vec<String> = pg
    .get_hosts()
    .iter()
    .enumerate()
    .map(|(i, h)| {
      let port = pg.get_ports().get(i).or(pg.get_ports().first()).copied().unwrap_or(5432);
      match h {
        Host::Tcp(h) => format!("{h}:{port}"),
        #[cfg(unix)]
        Host::Unix(p) => format!("{}/.s.PGSQL.{port}", p.display()),
      }
    })
    .collect();
  format!("PostgreSQL at {}/{}", hosts.join(","), pg.get_dbname().unwrap_or("(default database)"))
}

async fn sweep_loop(inner: Weak<Inner>, every: Duration) {
  loop {
    tokio::time::sleep(every).await;
    let Some(inner) = inner.upgrade() else { return };
    if inner.closed.load(Ordering::Relaxed) {
      return;
    }
    // An outage fails the sweep; the next one tries again.
    let _ = tokio::time::timeout(inner.command_timeout.saturating_mul(10), inner.sweep()).await;
  }
}

impl Inner {
  fn unavailable(&self, what: &str) -> StoreError {
    StoreError::new(Code::StoreUnavailable, format!("{}: no answer to {what} within {} ms", self.place, self.command_timeout.as_millis()))
  }

  fn err(&self, e: tokio_postgres::Error) -> StoreError {
    map_err(&e, &self.place)
  }

  /// A pooled connection, the table made first when it is missing.
  async fn client(&self) -> Result<Object> {
    if self.closed.load(Ordering::Relaxed) {
      return Err(StoreError::closed());
    }
    let client = self.pool.get().await.map_err(|e| match e {
      PoolError::Timeout(_) => self.unavailable("the connection attempt"),
      PoolError::Backend(e) => self.err(e),
      PoolError::Closed => StoreError::closed(),
      e => StoreError::new(Code::StoreUnavailable, format!("{}: {e}", self.place)),
    })?;
    if self.create_table || self.sql.users.is_some() {
      self
        .ready
        .get_or_try_init(|| async {
          if self.create_table {
            self.create(&client).await?;
          }
          self.ensure_user_columns(&client).await
        })
        .await?;
    }
    Ok(client)
  }

  /// `CREATE TABLE IF NOT EXISTS` under an advisory lock, so processes
  /// starting together do not trip over each other (two concurrent
  /// `CREATE TABLE IF NOT EXISTS` can fail on PostgreSQL's catalog).
  async fn create(&self, client: &Object) -> Result<()> {
    let found = client
      .query_one("SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL", &[&self.sql.table, &self.sql.lock_table])
      .await
      .map_err(|e| self.err(e))?;
    if found.get::<_, bool>(0) {
      return Ok(());
    }
    // One simple query: one implicit transaction, which holds the lock to its end.
    let mut script = format!("SELECT pg_advisory_xact_lock({});", self.sql.create_key);
    for s in &self.sql.create {
      script.push_str(s);
      script.push(';');
    }
    match client.batch_execute(&script).await {
      Ok(()) => Ok(()),
      // Made meanwhile by another program (connect-pg-simple) without our lock.
      Err(e) if matches!(e.code(), Some(c) if *c == SqlState::DUPLICATE_TABLE || *c == SqlState::UNIQUE_VIOLATION) => Ok(()),
      Err(e) => Err(self.err(e)),
    }
  }

  async fn sweep(&self) -> Result<u64> {
    let client = self.client().await?;
    let st = client.prepare_cached(&self.sql.sweep).await.map_err(|e| self.err(e))?;
    let locks = client.prepare_cached(&self.sql.sweep_locks).await.map_err(|e| self.err(e))?;
    let mut total = 0u64;
    loop {
      let now = seconds(Some(now_ms()));
      let n = client.execute(&st, &[&now, &self.sql.sweep_key]).await.map_err(|e| self.err(e))?;
      total += n;
      if n < SWEEP_BATCH as u64 {
        break;
      }
    }
    client.execute(&locks, &[&seconds(Some(now_ms())), &self.sql.sweep_key]).await.map_err(|e| self.err(e))?;
    Ok(total)
  }

  fn failed(&self, e: &StoreError) {
    if matches!(e.code, Code::StoreUnavailable | Code::StoreAuth) {
      *self.last_failure.lock() = Some((std::time::Instant::now(), e.clone()));
    }
  }

  async fn run(&self, ops: Vec<Op>, deadline: Instant) -> Vec<Result<Reply>> {
    let recent = self.last_failure.lock().as_ref().filter(|(at, _)| at.elapsed() < RETRY_AFTER).map(|(_, e)| e.clone());
    if let Some(e) = recent {
      return ops.iter().map(|_| Err(e.clone())).collect();
    }
    let client = match tokio::time::timeout_at(deadline, self.client()).await {
      Ok(Ok(c)) => c,
      Ok(Err(e)) => {
        self.failed(&e);
        return ops.iter().map(|_| Err(e.clone())).collect();
      }
      Err(_) => {
        let e = self.unavailable("the connection attempt");
        self.failed(&e);
        return ops.iter().map(|_| Err(e.clone())).collect();
      }
    };
    *self.last_failure.lock() = None;
    let mut out = Vec::with_capacity(ops.len());
    let mut i = 0;
    while i < ops.len() {
      let end = if self.alone(&ops[i]) { i + 1 } else { ops[i..].iter().position(|o| self.alone(o)).map_or(ops.len(), |p| i + p) };
      let seg = &ops[i..end];
      let answers = tokio::time::timeout_at(deadline, async {
        match &seg[0] {
          op if op.id().is_none() => vec![self.whole(&client, op).await],
          op if self.alone(op) => vec![match check_text(op) {
            Ok(()) => self.user_write(&client, op, &self.rules).await,
            Err(e) => Err(e),
          }],
          _ => self.pipeline(&client, seg).await,
        }
      })
      .await;
      match answers {
        Ok(a) => out.extend(a),
        Err(_) => {
          // The connection may be stuck (a server that stopped answering): not reused.
          let e = self.unavailable("a query");
          self.failed(&e);
          out.extend(ops[i..].iter().map(|_| Err(e.clone())));
          let _ = Object::take(client);
          return out;
        }
      }
      i = end;
    }
    out
  }

  /// Whether `op` runs by itself rather than in a pipeline: whole-store ops,
  /// and the writes of a store with per-user rules (a transaction each).
  fn alone(&self, op: &Op) -> bool {
    op.id().is_none() || (self.sql.users.is_some() && matches!(op, Op::Write(..) | Op::Set(..) | Op::SetIf(..)))
  }

  /// The statements of `ops`, prepared on this connection once (cached by
  /// the pool per connection, so only its first use costs round trips).
  async fn statements(&self, client: &Object, ops: &[Op]) -> Result<[Option<Statement>; PER_ID]> {
    let mut need = [false; PER_ID];
    for op in ops {
      need[kind(op)] = true;
    }
    let mut st: [Option<Statement>; PER_ID] = Default::default();
    let prepared =
      join_all((0..PER_ID).filter(|k| need[*k]).map(|k| async move { (k, client.prepare_cached(self.sql.per_id(k)).await) })).await;
    for (k, s) in prepared {
      st[k] = Some(s.map_err(|e| self.err(e))?);
    }
    Ok(st)
  }

  /// Per-id ops as one pipeline on `client`.
  async fn pipeline(&self, client: &Object, ops: &[Op]) -> Vec<Result<Reply>> {
    let st = match self.statements(client, ops).await {
      Ok(st) => st,
      Err(e) => return ops.iter().map(|_| Err(e.clone())).collect(),
    };
    let now = seconds(Some(now_ms()));
    // Polled in op order, each query is written at its first poll: all are
    // sent before the first answer is awaited.
    join_all(ops.iter().map(|op| {
      let st = st[kind(op)].as_ref().expect("prepared");
      async move {
        check_text(op)?;
        self.one(client, st, op, now).await
      }
    }))
    .await
  }

  async fn one(&self, c: &Object, st: &Statement, op: &Op, now: f64) -> Result<Reply> {
    let e = |e| self.err(e);
    let exp = |at: &Option<u64>| seconds(*at);
    Ok(match op {
      Op::Get(id) => Reply::Value(c.query_opt(st, &[id, &now]).await.map_err(e)?.map(|r| self.stored(&r, 0)).transpose()?),
      Op::Set(id, v, at) => {
        c.execute(st, &[id, &Sess(v), &exp(at)]).await.map_err(e)?;
        Reply::Done
      }
      Op::SetIf(id, v, at, _) => Reply::Bool(c.execute(st, &[id, &Sess(v), &exp(at), &now]).await.map_err(e)? == 1),
      Op::Remove(id) => Reply::Bool(c.query_opt(st, &[id, &now]).await.map_err(e)?.is_some_and(|r| r.get::<_, bool>(0))),
      Op::Touch(id, at) => Reply::Bool(c.execute(st, &[id, &exp(at), &now]).await.map_err(e)? == 1),
      Op::Ttl(id) => Reply::Ttl(c.query_opt(st, &[id, &now]).await.map_err(e)?.map_or(Ttl::Missing, |r| ttl_of(r.get::<_, f64>(0)))),
      Op::Exists(id) => Reply::Bool(c.query_opt(st, &[id, &now]).await.map_err(e)?.is_some()),
      Op::Lock(id, token, ttl) => {
        let until = now + *ttl as f64 / 1000.0;
        Reply::Bool(c.execute(st, &[id, token, &until, &now]).await.map_err(e)? == 1)
      }
      Op::Unlock(id, token) => Reply::Bool(c.execute(st, &[id, token, &now]).await.map_err(e)? == 1),
      Op::Renew(id, token, ttl) => {
        let until = now + *ttl as f64 / 1000.0;
        Reply::Bool(c.execute(st, &[id, token, &until, &now]).await.map_err(e)? == 1)
      }
      Op::Len | Op::Clear | Op::Keys | Op::Entries | Op::Page(..) | Op::Ping => unreachable!("whole-store ops are not pipelined"),
      Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) => unreachable!("per-user ops are not pipelined"),
    })
  }

  /// `sess` of a row, or a coded error when the column is not connect-pg-simple's.
  fn stored(&self, row: &tokio_postgres::Row, col: usize) -> Result<Vec<u8>> {
    row
      .try_get::<_, Stored>(col)
      .map(|s| s.0)
      .map_err(|e| StoreError::new(Code::Corrupt, format!("{}: unexpected sess column: {e}", self.place)))
  }

  async fn whole(&self, c: &Object, op: &Op) -> Result<Reply> {
    let e = |e| self.err(e);
    let now = seconds(Some(now_ms()));
    let prepare = |q: &str| {
      let q = q.to_string();
      async move { c.prepare_cached(&q).await.map_err(|e| self.err(e)) }
    };
    let params: [&(dyn ToSql + Sync); 1] = [&now];
    Ok(match op {
      Op::Len => Reply::Count(c.query_one(&prepare(&self.sql.len).await?, &params).await.map_err(e)?.get::<_, i64>(0) as u64),
      Op::Clear => Reply::Count(c.query_one(&prepare(&self.sql.clear).await?, &params).await.map_err(e)?.get::<_, i64>(0) as u64),
      Op::Keys => Reply::Keys(c.query(&prepare(&self.sql.keys).await?, &params).await.map_err(e)?.iter().map(|r| r.get(0)).collect()),
      Op::Entries => {
        let rows = c.query(&prepare(&self.sql.entries).await?, &params).await.map_err(e)?;
        Reply::Entries(rows.iter().map(|r| Ok((r.get(0), self.stored(r, 1)?))).collect::<Result<_>>()?)
      }
      Op::Page(cursor, count) => {
        check_text(op)?;
        let limit = *count as i64;
        let rows = c.query(&prepare(&self.sql.page).await?, &[cursor, &now, &limit]).await.map_err(e)?;
        let page = rows.iter().map(|r| Ok((r.get::<_, String>(0), self.stored(r, 1)?, ttl_of(r.get(2))))).collect::<Result<Vec<_>>>()?;
        let next = if page.len() as i64 == limit { page.last().map(|p| p.0.clone()).unwrap_or_default() } else { String::new() };
        Reply::Page(next, page)
      }
      Op::SessionsOf(user) => self.sessions_of(c, user).await?,
      Op::RevokeUser(user, except) => self.revoke_user(c, user, except).await?,
      Op::Rotate(old, new, recode) => {
        check_text(op)?;
        self.rotate(c, old, new, recode.as_ref()).await?
      }
      // The table is there too, not only the server.
      Op::Ping => {
        c.query(&prepare(&self.sql.ping).await?, &[]).await.map_err(e)?;
        Reply::Done
      }
      // Pipelined (`Inner::pipeline`) or run by `user_write`, never here.
      Op::Get(_)
      | Op::Set(..)
      | Op::SetIf(..)
      | Op::Remove(_)
      | Op::Touch(..)
      | Op::Ttl(_)
      | Op::Exists(_)
      | Op::Lock(..)
      | Op::Unlock(..)
      | Op::Renew(..)
      | Op::Write(..) => unreachable!("{op:?} has an id: not a whole-store op"),
    })
  }
}

#[async_trait]
impl Backend for PostgresBackend {
  async fn exec(&self, ops: Vec<Op>) -> Vec<Result<Reply>> {
    let n = ops.len();
    let deadline = Instant::now() + self.inner.command_timeout;
    // The inner deadline answers first; this one is the safety net.
    match tokio::time::timeout_at(deadline + Duration::from_millis(50), self.inner.run(ops, deadline)).await {
      Ok(r) => r,
      Err(_) => (0..n).map(|_| Err(self.inner.unavailable("a query"))).collect(),
    }
  }

  async fn close(&self) -> Result<()> {
    self.inner.closed.store(true, Ordering::Relaxed);
    if let Some(s) = self.sweeper.lock().take() {
      s.abort();
    }
    self.inner.pool.close();
    Ok(())
  }
}

impl Drop for PostgresBackend {
  fn drop(&mut self) {
    if let Some(s) = self.sweeper.get_mut().take() {
      s.abort();
    }
    self.inner.pool.close();
  }
}
