//! Connecting to Redis: the three topologies (one server, Redis Cluster, a
//! Sentinel-managed master), TLS and credentials, the lazy connect and its
//! policy (how long a failed attempt is trusted, the connect timeout), and
//! one request within the command timeout, sent again on a fresh connection
//! when that is safe.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use napi_derive::napi;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsMode};
use tokio::sync::Mutex;

use super::sentinel;
use super::{map_err, Commands, RedisBackend, RedisConfig, Topology, SCRIPTS};
use crate::error::{Code, Result, StoreError};

pub(super) enum Conn {
  Single(MultiplexedConnection),
  Cluster(ClusterConnection),
}

impl Clone for Conn {
  fn clone(&self) -> Self {
    match self {
      Conn::Single(c) => Conn::Single(c.clone()),
      Conn::Cluster(c) => Conn::Cluster(c.clone()),
    }
  }
}

// One per store, made once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Connector {
  Single(Client),
  Cluster(ClusterClient),
  Sentinel(Box<SentinelClient>),
}

pub(super) struct State {
  connector: Connector,
  pub(super) conn: Option<Conn>,
  pub(super) closed: bool,
  /// The last failed connect attempt: calls within `RETRY_AFTER` of it fail
  /// at once with its error instead of queueing another full connect timeout
  /// behind it (so no call waits past `commandTimeoutMs`).
  pub(super) last_failure: Option<(std::time::Instant, StoreError)>,
  /// Sentinel: the [`Watch`] epoch `conn` was made in.
  pub(super) conn_epoch: u64,
  /// Sentinel: the tasks following the sentinels' notifications.
  pub(super) followers: Vec<tokio::task::JoinHandle<()>>,
}

// The connection policy of both drivers, here once: the JS-socket one
// (lib/redis-wire.js) reads it from the addon.

/// How long after a failed connect attempt to Redis or the daemon calls
/// fail at once (with its error) instead of queueing another connect
/// timeout behind it.
#[napi]
pub const REDIS_RETRY_AFTER_MS: u32 = 250;
const RETRY_AFTER: Duration = Duration::from_millis(REDIS_RETRY_AFTER_MS as u64);

/// How long one connect attempt may take: the connect timeout, never past
/// the command timeout (every call settles within that).
pub fn connect_within(connect_timeout: Duration, command_timeout: Duration) -> Duration {
  connect_timeout.min(command_timeout)
}

/// How long one connect attempt to Redis or the daemon may take, in ms:
/// the connect timeout, never past the command timeout.
#[napi]
pub fn redis_connect_within_ms(connect_timeout_ms: u32, command_timeout_ms: u32) -> u32 {
  let ms = |n: u32| Duration::from_millis(n.into());
  connect_within(ms(connect_timeout_ms), ms(command_timeout_ms)).as_millis() as u32
}

/// Is this error a sign that the connection must be remade?
fn is_connection_error(e: &redis::RedisError) -> bool {
  e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

fn unavailable(what: &str, after: Duration) -> StoreError {
  StoreError::new(Code::StoreUnavailable, format!("no answer to {what} within {} ms", after.as_millis()))
}

fn node_info(url: &str, cfg: &RedisConfig) -> Result<ConnectionInfo> {
  let info = url.into_connection_info().map_err(|e| StoreError::new(Code::InvalidOption, format!("Redis URL {url:?}: {e}")))?;
  let settings = login(info.redis_settings().clone(), cfg, |s, u| s.set_username(u), |s, p| s.set_password(p), |s, db| s.set_db(db));
  Ok(info.set_redis_settings(settings))
}

/// `to` with the store's username, password and db where it has them, each
/// set by its setter (a node's settings and the Sentinel client's builder
/// name them their own way).
fn login<T>(mut to: T, cfg: &RedisConfig, user: impl Fn(T, &str) -> T, password: impl Fn(T, &str) -> T, db: impl Fn(T, i64) -> T) -> T {
  if let Some(u) = &cfg.username {
    to = user(to, u);
  }
  if let Some(p) = &cfg.password {
    to = password(to, p);
  }
  if let Some(n) = cfg.db {
    to = db(to, n);
  }
  to
}

impl RedisBackend {
  /// Validates the configuration; connects lazily on first use.
  pub fn new(cfg: RedisConfig) -> Result<Self> {
    let bad = |e: redis::RedisError| StoreError::new(Code::InvalidOption, format!("Redis configuration: {e}"));
    let certs = cfg.tls_certs.clone();
    let connector = match &cfg.topology {
      Topology::Single(url) => {
        let info = node_info(url, &cfg)?;
        Connector::Single(
          match certs {
            Some(c) => Client::build_with_tls(info, c),
            None => Client::open(info),
          }
          .map_err(bad)?,
        )
      }
      Topology::Cluster(nodes) => {
        let infos = nodes.iter().map(|n| node_info(n, &cfg)).collect::<Result<Vec<_>>>()?;
        let mut builder = ClusterClient::builder(infos).connection_timeout(cfg.connect_timeout).response_timeout(cfg.command_timeout);
        if let Some(c) = certs {
          builder = builder.certs(c);
        }
        Connector::Cluster(builder.build().map_err(bad)?)
      }
      Topology::Sentinel { sentinels, master } => {
        let addrs = sentinels
          .iter()
          .map(|s| s.as_str().into_connection_info().map(|i| i.addr().clone()))
          .collect::<std::result::Result<Vec<_>, _>>()
          .map_err(bad)?;
        let b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master).map_err(bad)?;
        let mut b = login(
          b,
          &cfg,
          |b, u| b.set_client_to_redis_username(u),
          |b, p| b.set_client_to_redis_password(p),
          |b, db| b.set_client_to_redis_db(db),
        );
        if cfg.tls {
          b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
        }
        if let Some(c) = certs {
          b = b.set_client_to_redis_certificates(c);
        }
        Connector::Sentinel(Box::new(b.build().map_err(bad)?))
      }
    };
    let hosts = |urls: &[String]| urls.iter().map(|u| u.split("://").last().unwrap_or(u).to_string()).collect::<Vec<_>>().join(", ");
    let place = match &cfg.topology {
      Topology::Single(url) if cfg.daemon => {
        format!("rs-store daemon at {}", hosts(std::slice::from_ref(url)))
      }
      Topology::Single(url) => format!("Redis at {}", hosts(std::slice::from_ref(url))),
      Topology::Cluster(nodes) => format!("Redis Cluster at {}", hosts(nodes)),
      Topology::Sentinel { sentinels, master } => {
        format!("Redis Sentinel at {} (master {master})", hosts(sentinels))
      }
    };
    Ok(RedisBackend {
      place,
      cluster: matches!(cfg.topology, Topology::Cluster(_)),
      cmds: Commands { prefix: cfg.prefix.clone(), daemon: cfg.daemon, rules: cfg.rules },
      state: Mutex::new(State { connector, conn: None, closed: false, last_failure: None, conn_epoch: 0, followers: Vec::new() }),
      connect_timeout: cfg.connect_timeout,
      command_timeout: cfg.command_timeout,
      watch: matches!(cfg.topology, Topology::Sentinel { .. }).then(Default::default),
      node: cfg,
    })
  }

  /// `e` with where it happened (connection errors name the server).
  pub(super) fn at(&self, e: StoreError) -> StoreError {
    match e.code {
      Code::StoreUnavailable | Code::StoreAuth | Code::StoreReadOnly => StoreError::new(e.code, format!("{}: {}", self.place, e.message)),
      _ => e,
    }
  }

  /// The live connection, connecting first when there is none.
  pub(super) async fn conn(&self) -> Result<Conn> {
    let mut st = self.state.lock().await;
    if st.closed {
      return Err(StoreError::closed());
    }
    if let Some(c) = &st.conn {
      if self.watch.as_ref().is_none_or(|w| w.epoch() == st.conn_epoch) {
        return Ok(c.clone());
      }
      // The sentinels announced a failover since it was made.
      st.conn = None;
    }
    if let (Some(w), Topology::Sentinel { sentinels, master }) = (&self.watch, &self.node.topology) {
      if st.followers.is_empty() {
        st.followers = sentinels.iter().map(|u| tokio::spawn(sentinel::follow(u.clone(), master.clone(), w.clone()))).collect();
      }
    }
    let epoch = self.watch.as_ref().map_or(0, |w| w.epoch());
    if let Some((at, e)) = &st.last_failure {
      if at.elapsed() < RETRY_AFTER {
        return Err(e.clone());
      }
    }
    let timeout = connect_within(self.connect_timeout, self.command_timeout);
    let config = AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(self.command_timeout));
    let fut = async {
      let mut conn = match &mut st.connector {
        Connector::Single(client) => client.get_multiplexed_async_connection_with_config(&config).await.map(Conn::Single),
        Connector::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        Connector::Sentinel(client) => self.sentinel_master(client, &config).await.map(Conn::Single),
      }?;
      // Per-user rules: every connection loads the scripts first (EVALSHA then finds them).
      if let (Conn::Single(c), true) = (&mut conn, self.cmds.loads_scripts()) {
        SCRIPTS.load(c).await?;
      }
      Ok::<Conn, redis::RedisError>(conn)
    };
    let conn = match tokio::time::timeout(timeout, fut).await {
      Ok(Ok(c)) => c,
      Ok(Err(e)) => {
        let e = self.at(map_err(e));
        st.last_failure = Some((std::time::Instant::now(), e.clone()));
        return Err(e);
      }
      Err(_) => {
        let e = self.at(unavailable("the connection attempt", timeout));
        st.last_failure = Some((std::time::Instant::now(), e.clone()));
        return Err(e);
      }
    };
    st.last_failure = None;
    st.conn = Some(conn.clone());
    st.conn_epoch = epoch;
    Ok(conn)
  }

  /// A connection to the Sentinel-managed master, checked with `ROLE`:
  /// during a failover the replica chosen to replace the old master (once
  /// it says it is master), never the old one; else the master the
  /// sentinels name, if it says it is one. Waits for that (within the
  /// connect timeout around it).
  async fn sentinel_master(
    &self,
    client: &mut SentinelClient,
    config: &AsyncConnectionConfig,
  ) -> redis::RedisResult<MultiplexedConnection> {
    let watch = self.watch.as_ref().expect("a sentinel backend has a watch");
    loop {
      let epoch = watch.epoch();
      let failover = watch.failover();
      let node = match &failover {
        Some(f) => self.node_client(&f.new)?,
        None => client.async_get_client().await?,
      };
      match node.get_multiplexed_async_connection_with_config(config).await {
        Ok(mut conn) => {
          if let Ok(redis::Role::Primary { .. }) = redis::cmd("ROLE").query_async::<redis::Role>(&mut conn).await {
            if watch.epoch() == epoch {
              return Ok(conn);
            }
            continue; // a notification came meanwhile: look again
          }
        }
        Err(e) if failover.is_none() => return Err(e),
        Err(_) => {}
      }
      if let Some(f) = &failover {
        // Not master (yet): when the sentinels name a third server, the
        // failover we heard of is over (or was aborted unheard).
        if let Some(named) = client.async_get_client().await.ok().and_then(|c| host_port(c.get_connection_info())) {
          if named != f.old && named != f.new {
            watch.clear();
            continue;
          }
        }
      }
      tokio::time::sleep(Duration::from_millis(50)).await;
    }
  }

  /// A client for the server at `host:port` with this store's settings
  /// (TLS, credentials, db): a master the sentinels named.
  fn node_client(&self, (host, port): &(String, u16)) -> redis::RedisResult<Client> {
    let scheme = if self.node.tls { "rediss" } else { "redis" };
    let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let info = node_info(&format!("{scheme}://{host}:{port}"), &self.node)
      .map_err(|e| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "the master's address", e.message)))?;
    match self.node.tls_certs.clone() {
      Some(c) => Client::build_with_tls(info, c),
      None => Client::open(info),
    }
  }

  /// Forgets the connection after a connection-level failure.
  pub(super) async fn drop_conn(&self, e: &redis::RedisError) {
    if is_connection_error(e) {
      self.state.lock().await.conn = None;
    }
  }

  /// Runs a future against Redis under the command timeout.
  pub(super) async fn timed<T>(&self, what: &str, fut: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(self.command_timeout, fut).await {
      Err(_) => {
        self.state.lock().await.conn = None;
        Err(self.at(unavailable(what, self.command_timeout)))
      }
      Ok(Err(e)) => {
        self.drop_conn(&e).await;
        Err(self.at(map_err(e)))
      }
      Ok(Ok(v)) => Ok(v),
    }
  }

  /// One request on a single-server connection within `budget`. The error
  /// says whether the request may be sent again on a fresh connection:
  /// when the connection was found lost (not timed out) and either the
  /// request never left (the connection's reader had already ended, as
  /// after the server's idle `timeout` or a `CLIENT KILL`: it is refused at
  /// the first poll, before anything is written) or `resendable` (the same
  /// commands applied twice leave what once does).
  async fn attempt<T>(
    &self,
    what: &str,
    fut: impl Future<Output = redis::RedisResult<T>>,
    budget: Duration,
    resendable: bool,
  ) -> std::result::Result<T, (StoreError, bool)> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    let (r, unsent) = match first {
      Poll::Ready(r) => (Ok(r), true),
      Poll::Pending => (tokio::time::timeout(budget, fut).await, false),
    };
    match r {
      Err(_) => {
        self.state.lock().await.conn = None;
        Err((self.at(unavailable(what, budget)), false))
      }
      Ok(Err(e)) => {
        let lost = is_connection_error(&e) && !e.is_timeout();
        self.drop_conn(&e).await;
        Err((self.at(map_err(e)), lost && (unsent || resendable)))
      }
      Ok(Ok(v)) => Ok(v),
    }
  }

  /// `f` on the single server's connection `c`, and once more on a fresh
  /// connection when [`Self::attempt`] says it may, within what is left of
  /// the command timeout.
  pub(super) async fn single<T, F, Fut>(&self, what: &str, c: MultiplexedConnection, resendable: bool, f: F) -> Result<T>
  where
    F: Fn(MultiplexedConnection) -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
  {
    let start = std::time::Instant::now();
    match self.attempt(what, f(c), self.command_timeout, resendable).await {
      Ok(v) => Ok(v),
      Err((e, false)) => Err(e),
      Err((e, true)) => {
        let left = self.command_timeout.saturating_sub(start.elapsed());
        let Ok(Conn::Single(c)) = self.conn().await else { return Err(e) };
        self.attempt(what, f(c), left, resendable).await.map_err(|(e, _)| e)
      }
    }
  }
}

/// The host and port of a TCP address.
fn host_port(info: &ConnectionInfo) -> Option<(String, u16)> {
  match info.addr() {
    ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
    _ => None,
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::{Ops, UserRules};

  /// A plain store of one server at `url`, both timeouts `ms`.
  fn config(url: &str, ms: u64) -> RedisConfig {
    RedisConfig {
      topology: Topology::Single(url.into()),
      username: None,
      password: None,
      db: None,
      prefix: "s:".into(),
      connect_timeout: Duration::from_millis(ms),
      command_timeout: Duration::from_millis(ms),
      tls: false,
      tls_certs: None,
      daemon: false,
      rules: UserRules::default(),
    }
  }

  #[test]
  fn bad_url_is_an_option_error() {
    assert_eq!(RedisBackend::new(config("http://nope", 1000)).err().unwrap().code, Code::InvalidOption);
  }

  #[tokio::test]
  async fn server_down_fails_fast_with_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let b = RedisBackend::new(config("redis://127.0.0.1:1", 300)).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(b.get("x").await.unwrap_err().code, Code::StoreUnavailable);
    assert!(t.elapsed() < Duration::from_secs(2));
  }
}
