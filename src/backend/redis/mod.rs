//! Redis backend on the `redis` crate (1.x, tokio): a multiplexed connection
//! for a single server or a Sentinel-managed master, the crate's async cluster
//! client for Redis Cluster. Expiry is native to Redis (`SET … PX`, `PEXPIRE`,
//! `PTTL`); `len`/`clear`/`keys`/`entries` walk `SCAN MATCH prefix*` in
//! batches on every master, never `KEYS`.
//!
//! Connections are made lazily and remade after a connection-level failure,
//! so a store created while Redis is down works as soon as Redis is back.
//! A batch of operations ([`Backend::exec`]) becomes one pipeline on a
//! single server (one write, one round trip); on a cluster every command is
//! routed to its node, and commands on one id stay in call order.

use std::collections::HashSet;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
  AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, TlsCertificates, TlsMode, Value,
};
use tokio::sync::Mutex;

use self::sentinel::Watch;
use super::{Backend, Cond, Op, Reply, Ttl, UserRules};

// Per-user sessions: their scripts (src/backend/redis_users.rs).
#[path = "../redis_users.rs"]
mod users;
// Their commands in the daemon dialect.
mod daemon;
// On a cluster.
mod cluster_users;
// Following a Sentinel-managed master through failovers.
mod sentinel;
// The connection on the JS thread.
pub mod wire;
use crate::error::{Code, Result, StoreError};
use crate::expiry::now_ms;
pub(crate) use daemon::digest;
pub(crate) use users::SCRIPTS;

/// Release a lock only if the caller's token still holds it.
const UNLOCK_LUA: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// Extend a lock only if the caller's token still holds it.
const RENEW_LUA: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// Keys per SCAN step and per UNLINK/GET batch.
const SCAN_COUNT: usize = 1000;

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Topology {
  /// One server (`redis://`, `rediss://`, `redis+unix://`).
  Single(String),
  /// Redis Cluster seed nodes.
  Cluster(Vec<String>),
  /// Sentinels and the monitored master's name.
  Sentinel { sentinels: Vec<String>, master: String },
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
  pub topology: Topology,
  pub username: Option<String>,
  pub password: Option<String>,
  pub db: Option<i64>,
  /// Key prefix, e.g. `sess:`.
  pub prefix: String,
  pub connect_timeout: Duration,
  pub command_timeout: Duration,
  /// TLS to a Sentinel-managed master (single servers and cluster nodes
  /// take it from their `rediss://` URLs).
  pub tls: bool,
  /// A CA (PEM) to trust instead of the webpki roots, and/or a client
  /// certificate and key (PEM) for mutual TLS.
  pub tls_certs: Option<TlsCertificates>,
  /// Talk to rs-store's session daemon (`crate::daemon`) instead of Redis:
  /// locks use its `LOCK`/`UNLOCK`/`RENEW` commands (no Lua there), and a
  /// lock dies with this connection.
  pub daemon: bool,
  /// Per-user sessions (src/backend/redis_users.rs; on the daemon
  /// src/backend/redis/daemon.rs, on a cluster
  /// src/backend/redis/cluster_users.rs).
  pub rules: UserRules,
}

enum Conn {
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

struct State {
  connector: Connector,
  conn: Option<Conn>,
  closed: bool,
  /// The last failed connect attempt: calls within `RETRY_AFTER` of it fail
  /// at once with its error instead of queueing another full connect timeout
  /// behind it (so no call waits past `commandTimeoutMs`).
  last_failure: Option<(std::time::Instant, StoreError)>,
  /// Sentinel: the [`Watch`] epoch `conn` was made in.
  conn_epoch: u64,
  /// Sentinel: the tasks following the sentinels' notifications.
  followers: Vec<tokio::task::JoinHandle<()>>,
}

/// How long after a failed connect attempt calls fail at once.
const RETRY_AFTER: Duration = Duration::from_millis(250);

pub struct RedisBackend {
  state: Mutex<State>,
  /// Where it connects, for messages: `Redis at 127.0.0.1:6379`,
  /// `Redis Cluster at …`, `Redis Sentinel at … (master mymaster)`.
  place: String,
  cluster: bool,
  cmds: Commands,
  connect_timeout: Duration,
  command_timeout: Duration,
  /// Sentinel: what the sentinels said about the master's failovers, and
  /// how to reach a server they named (TLS, credentials, db).
  watch: Option<std::sync::Arc<Watch>>,
  node: RedisConfig,
}

/// How ops become Redis commands and replies become answers, for one key
/// prefix: shared by this backend and the JS-thread connection
/// ([`wire`]).
#[derive(Debug, Clone)]
pub struct Commands {
  /// Key prefix, e.g. `sess:`.
  pub prefix: String,
  /// rs-store's session daemon: locks are its `LOCK`/`UNLOCK`/`RENEW`.
  pub daemon: bool,
  /// Per-user rules: with any, writes, removals and touches are scripts
  /// (src/backend/redis_users.rs).
  pub rules: UserRules,
}

/// Lock keys start with a byte that UTF-8 never starts with, so no session
/// id (a JS string, stored as UTF-8) can name one, whatever the prefix, and
/// scans skip them.
const LOCK_MARK: &[u8] = b"\xfflock:";

/// `<prefix><id>` as one command argument, written straight into it.
pub(crate) struct Key<'a>(pub &'a str, pub &'a str);

impl redis::ToRedisArgs for Key<'_> {
  fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
    use std::io::Write;
    let mut w = out.writer_for_next_arg();
    // Writing into a Vec cannot fail.
    let _ = w.write_all(self.0.as_bytes());
    let _ = w.write_all(self.1.as_bytes());
  }
}

impl Commands {
  pub fn key(&self, id: &str) -> String {
    let mut k = String::with_capacity(self.prefix.len() + id.len());
    k.push_str(&self.prefix);
    k.push_str(id);
    k
  }

  /// The daemon keeps locks in a table of their own, keyed `<prefix><id>`;
  /// on Redis a lock is `\xfflock:<prefix><id>` (see [`LOCK_MARK`]).
  fn lock_key(&self, id: &str) -> Vec<u8> {
    if self.daemon {
      return self.key(id).into_bytes();
    }
    [LOCK_MARK, self.prefix.as_bytes(), id.as_bytes()].concat()
  }

  /// `SCAN … MATCH` pattern of every key under the prefix.
  pub fn pattern(&self) -> String {
    format!("{}*", escape_glob(&self.prefix))
  }

  /// The session id of a scanned key; `None` for a lock key or a key that
  /// is not UTF-8 (not rs-store's).
  pub fn id_of(&self, key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(self.prefix.as_bytes())?;
    if key.starts_with(LOCK_MARK) {
      return None;
    }
    std::str::from_utf8(rest).ok().map(str::to_string)
  }

  /// The commands of one per-id op, built one by one in `cmd` (cleared
  /// first, so one buffer serves a whole batch) and handed to `f`;
  /// whole-store ops are scans: none. Returns how many. `now` (ms since
  /// the epoch, read once per batch) turns expiry times into `PX` spans.
  pub fn each(&self, op: &Op, now: u64, cmd: &mut Cmd, mut f: impl FnMut(&Cmd)) -> usize {
    macro_rules! cmd {
      ($name:expr $(, $arg:expr)*) => {{
        cmd.clear();
        cmd.arg($name);
        $(cmd.arg($arg);)*
        f(cmd);
        1
      }};
    }
    if self.daemon {
      if self.daemon_users(op, now, cmd) {
        f(cmd);
        return 1;
      }
    } else if self.scripted(op) {
      self.script(op, now, cmd);
      f(cmd);
      return 1;
    }
    let key = |id| Key(&self.prefix, id);
    let span = |at: &u64| at.saturating_sub(now).max(1);
    match op {
      Op::Get(id) => cmd!("GET", key(id)),
      Op::Set(id, value, exp) | Op::SetIf(id, value, exp, _) => {
        cmd.clear();
        cmd.arg("SET").arg(key(id)).arg(&value[..]);
        match op {
          Op::SetIf(.., Cond::Absent) => cmd.arg("NX"),
          Op::SetIf(.., Cond::Present) => cmd.arg("XX"),
          _ => &mut *cmd,
        };
        if let Some(at) = exp {
          cmd.arg("PX").arg(span(at));
        }
        f(cmd);
        1
      }
      Op::Remove(id) => cmd!("UNLINK", key(id)),
      Op::Touch(id, Some(at)) => cmd!("PEXPIRE", key(id), span(at)),
      // No expiry: PERSIST answers 0 both for "missing" and "had none", so EXISTS decides.
      Op::Touch(id, None) => cmd!("PERSIST", key(id)) + cmd!("EXISTS", key(id)),
      Op::Ttl(id) => cmd!("PTTL", key(id)),
      Op::Exists(id) => cmd!("EXISTS", key(id)),
      Op::Lock(id, token, ttl) if self.daemon => cmd!("LOCK", self.lock_key(id), token, (*ttl).max(1)),
      Op::Unlock(id, token) if self.daemon => cmd!("UNLOCK", self.lock_key(id), token),
      Op::Renew(id, token, ttl) if self.daemon => cmd!("RENEW", self.lock_key(id), token, (*ttl).max(1)),
      Op::Lock(id, token, ttl) => cmd!("SET", self.lock_key(id), token, "NX", "PX", (*ttl).max(1)),
      Op::Unlock(id, token) => cmd!("EVAL", UNLOCK_LUA, 1, self.lock_key(id), token),
      Op::Renew(id, token, ttl) => cmd!("EVAL", RENEW_LUA, 1, self.lock_key(id), token, (*ttl).max(1)),
      Op::Len | Op::Clear | Op::Entries | Op::Keys | Op::Page(..) => 0,
      // Scripts (above).
      Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) => 0,
      Op::Ping => cmd!("PING"),
    }
  }

  /// Turns the replies of the commands of `op` ([`Commands::each`]) into
  /// the op's reply.
  pub fn reply(op: &Op, mut values: Vec<Value>) -> Result<Reply> {
    let last = values.pop().ok_or_else(|| StoreError::new(Code::Internal, "no reply from Redis"))?;
    if let Some(Value::ServerError(e)) = values.iter().find(|v| matches!(v, Value::ServerError(_))) {
      return Err(map_err(e.clone().into()));
    }
    Commands::reply_last(op, last)
  }

  /// [`Commands::reply`] from the last command's reply alone (all of it
  /// for an op of one command), the earlier ones already checked.
  pub fn reply_last(op: &Op, last: Value) -> Result<Reply> {
    if let Value::ServerError(e) = last {
      return Err(map_err(e.into()));
    }
    let int = |v: &Value| -> Result<i64> { redis::from_redis_value_ref(v).map_err(parse_err) };
    Ok(match op {
      Op::Get(_) => Reply::Value(match last {
        // The bytes move into the answer (no copy).
        Value::BulkString(b) => Some(b),
        v => redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(parse_err)?,
      }),
      Op::Set(..) => Reply::Done,
      Op::Remove(_) | Op::Touch(..) | Op::Exists(_) | Op::Unlock(..) | Op::Renew(..) => Reply::Bool(int(&last)? > 0),
      // SET … NX|XX answers OK when written, nil when not; the daemon's
      // LOCK answers 1 or 0.
      Op::SetIf(..) | Op::Lock(..) => Reply::Bool(match last {
        Value::Nil => false,
        Value::Int(n) => n > 0,
        _ => true,
      }),
      Op::Ttl(_) => Reply::Ttl(pttl_to_ttl(int(&last)?)),
      Op::Len | Op::Clear | Op::Entries | Op::Keys | Op::Page(..) => unreachable!("scans are not pipelined"),
      Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) => return users::reply(op, last),
      Op::Ping => Reply::Done,
    })
  }
}

/// Whether the commands of `op`, applied twice, leave what applying them
/// once does (so a request lost with its connection may be sent again):
/// reads, `SET`, `PEXPIRE`/`PERSIST`, `UNLINK` and a lock's renewal with
/// the same arguments. Not `SET NX`/`XX` (the second answer could differ
/// from the first's effect), taking a lock, or a release (its answer).
fn resendable(op: &Op) -> bool {
  matches!(op, Op::Get(_) | Op::Set(..) | Op::Remove(_) | Op::Touch(..) | Op::Ttl(_) | Op::Exists(_) | Op::Renew(..) | Op::Ping)
}

/// A `PTTL` answer as a [`Ttl`].
pub(crate) fn pttl_to_ttl(ms: i64) -> Ttl {
  match ms {
    -2 => Ttl::Missing,
    -1 => Ttl::Persistent,
    ms => Ttl::At(now_ms().saturating_add(ms.max(0) as u64)),
  }
}

/// Maps a redis-crate error to a coded store error.
pub(crate) fn map_err(e: redis::RedisError) -> StoreError {
  use redis::ErrorKind;
  if e.code() == Some("NOSCRIPT") {
    return users::lost_scripts();
  }
  let msg = e.to_string();
  // The session daemon answers errors with rs-store's own codes.
  if let Some(code) = e.code().and_then(Code::parse) {
    return StoreError::new(code, e.detail().unwrap_or(&msg).to_string());
  }
  match e.kind() {
    ErrorKind::AuthenticationFailed => StoreError::new(Code::StoreAuth, format!("the server refused the credentials: {msg}")),
    ErrorKind::InvalidClientConfig => StoreError::new(Code::InvalidOption, format!("configuration: {msg}")),
    // The crate parses the server's error code; Redis before 6 said "ERR invalid password".
    _ if matches!(e.code(), Some("WRONGPASS" | "NOAUTH")) || (e.code() == Some("ERR") && msg.contains("invalid password")) => {
      StoreError::new(Code::StoreAuth, format!("the server refused the credentials: {msg}"))
    }
    // Reachable, but writes are refused: what to do is not "reconnect".
    _ if matches!(e.code(), Some("OOM" | "READONLY" | "MISCONF")) => {
      StoreError::new(Code::StoreReadOnly, format!("the server refuses writes: {msg}"))
    }
    // SELECT refused: a configuration error, not an outage.
    _ if msg.contains("DB index is out of range") || msg.contains("invalid DB index") => {
      StoreError::new(Code::InvalidOption, format!("the server has no such database (option db): {msg}"))
    }
    _ if msg.contains("WRONGTYPE") => StoreError::new(Code::Corrupt, format!("a key under the prefix is not a string: {msg}")),
    _ if e.kind() == ErrorKind::Parse => {
      StoreError::new(Code::StoreUnavailable, format!("the server answered something that is not RESP (is it a Redis server?): {msg}"))
    }
    _ => StoreError::new(Code::StoreUnavailable, msg),
  }
}

/// A reply of an unexpected shape (e.g. a foreign value under the prefix).
pub(crate) fn parse_err(e: redis::ParsingError) -> StoreError {
  StoreError::new(Code::Corrupt, format!("unexpected reply from Redis: {e}"))
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
  let mut settings = info.redis_settings().clone();
  if let Some(u) = &cfg.username {
    settings = settings.set_username(u);
  }
  if let Some(p) = &cfg.password {
    settings = settings.set_password(p);
  }
  if let Some(db) = cfg.db {
    settings = settings.set_db(db);
  }
  Ok(info.set_redis_settings(settings))
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
        let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master).map_err(bad)?;
        if let Some(u) = &cfg.username {
          b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &cfg.password {
          b = b.set_client_to_redis_password(p);
        }
        if let Some(db) = cfg.db {
          b = b.set_client_to_redis_db(db);
        }
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
  fn at(&self, e: StoreError) -> StoreError {
    match e.code {
      Code::StoreUnavailable | Code::StoreAuth | Code::StoreReadOnly => StoreError::new(e.code, format!("{}: {}", self.place, e.message)),
      _ => e,
    }
  }

  /// The live connection, connecting first when there is none.
  async fn conn(&self) -> Result<Conn> {
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
    let timeout = self.connect_timeout.min(self.command_timeout);
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
  async fn drop_conn(&self, e: &redis::RedisError) {
    if is_connection_error(e) {
      self.state.lock().await.conn = None;
    }
  }

  /// Runs a future against Redis under the command timeout.
  async fn timed<T>(&self, what: &str, fut: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T> {
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
  async fn single<T, F, Fut>(&self, what: &str, c: MultiplexedConnection, resendable: bool, f: F) -> Result<T>
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

  /// The addresses of every master (one entry for a single server).
  async fn masters(&self, conn: &Conn) -> Result<Vec<Option<(String, u16)>>> {
    self.masters_of(conn, false).await
  }

  /// As [`Self::masters`]; `serving`: the masters that hold slots instead,
  /// failing ones too (a failed master that kept its slots is an outage; one
  /// replaced by its replica holds none).
  async fn masters_of(&self, conn: &Conn, serving: bool) -> Result<Vec<Option<(String, u16)>>> {
    let Conn::Cluster(c) = conn else { return Ok(vec![None]) };
    let mut c = c.clone();
    let nodes = self
      .timed("CLUSTER NODES", async move {
        c.route_command(redis::cmd("CLUSTER").arg("NODES").clone(), RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random)).await
      })
      .await?;
    let text: String = redis::from_redis_value(nodes).map_err(parse_err)?;
    let mut out = Vec::new();
    for line in text.lines() {
      // <id> <ip:port@cport[,hostname]> <flags> ...
      let mut parts = line.split_whitespace();
      let (_, Some(addr), Some(flags)) = (parts.next(), parts.next(), parts.next()) else { continue };
      let master = flags.split(',').any(|f| f == "master");
      // After <master> <ping-sent> <pong-recv> <config-epoch> <link-state>: the slots.
      let skip = if serving { !master || parts.clone().nth(5).is_none() } else { !master || flags.contains("fail") };
      if skip {
        continue;
      }
      let hostport = addr.split(['@', ',']).next().unwrap_or_default();
      if let Some((host, port)) = hostport.rsplit_once(':') {
        if let Ok(port) = port.parse() {
          out.push(Some((host.to_string(), port)));
        }
      }
    }
    // Each node lists the others in an order of its own, and the node asked
    // is a random one: sorted, a page cursor's master index names the same
    // master on every page (else a walk skipped or repeated masters).
    out.sort();
    Ok(out)
  }

  /// Runs `cmd` on one master (`None` = the single server).
  async fn on_node(&self, conn: &Conn, node: &Option<(String, u16)>, cmd: Cmd) -> Result<Value> {
    if let Conn::Single(c) = conn {
      // SCANs only read: safe to send again.
      let cmd = &cmd;
      return self.single("a command", c.clone(), true, move |mut c| async move { cmd.query_async::<Value>(&mut c).await }).await;
    }
    let conn = conn.clone();
    let node = node.clone();
    self
      .timed("a command", async move {
        match (conn, node) {
          (Conn::Single(mut c), _) => cmd.query_async::<Value>(&mut c).await,
          (Conn::Cluster(mut c), Some((host, port))) => {
            c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port })).await
          }
          (Conn::Cluster(mut c), None) => cmd.query_async::<Value>(&mut c).await,
        }
      })
      .await
  }

  /// Runs single-key commands as one pipeline on one master. On a cluster the
  /// keys may sit in different slots of that node, which Redis accepts for
  /// single-key commands.
  async fn node_pipeline(&self, conn: &Conn, node: &Option<(String, u16)>, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
    let n = cmds.len();
    let mut pipe = Pipeline::with_capacity(n);
    for c in cmds {
      pipe.add_command(c);
    }
    if let Conn::Single(c) = conn {
      // The GETs/PTTLs/UNLINKs of a whole-store op: safe to send again.
      let pipe = &pipe;
      return self.single("a pipeline", c.clone(), true, move |mut c| async move { pipe.query_async::<Vec<Value>>(&mut c).await }).await;
    }
    let conn = conn.clone();
    let node = node.clone();
    self
      .timed("a pipeline", async move {
        match (conn, node) {
          (Conn::Cluster(mut c), Some((host, port))) => c.route_pipeline(pipe, 0, n, SingleNodeRoutingInfo::ByAddress { host, port }).await,
          (Conn::Cluster(mut c), None) => pipe.query_async::<Vec<Value>>(&mut c).await,
          (Conn::Single(mut c), _) => pipe.query_async::<Vec<Value>>(&mut c).await,
        }
      })
      .await
  }

  /// Calls `each` with every batch of session keys under the prefix (with
  /// their ids), on every master.
  async fn scan_keys<F, Fut>(&self, mut each: F) -> Result<()>
  where
    F: FnMut(Conn, Option<(String, u16)>, Vec<(Vec<u8>, String)>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
  {
    let conn = self.conn().await?;
    let pattern = self.cmds.pattern();
    for node in self.masters(&conn).await? {
      let mut cursor = 0u64;
      loop {
        let cmd = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT).clone();
        let v = self.on_node(&conn, &node, cmd).await?;
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(v).map_err(parse_err)?;
        let keys: Vec<_> = keys.into_iter().filter_map(|k| self.cmds.id_of(&k).map(|id| (k, id))).collect();
        if !keys.is_empty() {
          each(conn.clone(), node.clone(), keys).await?;
        }
        if next == 0 {
          break;
        }
        cursor = next;
      }
    }
    Ok(())
  }

  /// Every SCAN batch of keys under the prefix with the master it came from.
  async fn scan_batches(&self) -> Result<Vec<(Conn, Option<(String, u16)>, Vec<(Vec<u8>, String)>)>> {
    let mut batches = Vec::new();
    self
      .scan_keys(|conn, node, keys| {
        batches.push((conn, node, keys));
        async { Ok(()) }
      })
      .await?;
    Ok(batches)
  }

  /// One pipeline for a batch of per-id ops (single server / sentinel).
  async fn pipeline(&self, conn: MultiplexedConnection, ops: &[Op]) -> Vec<Result<Reply>> {
    let mut pipe = Pipeline::with_capacity(ops.len());
    pipe.ignore_errors();
    let mut spans = Vec::with_capacity(ops.len());
    let (now, mut cmd) = (now_ms(), Cmd::new());
    for op in ops {
      spans.push(self.cmds.each(op, now, &mut cmd, |c| {
        pipe.add_command(c.clone());
      }));
    }
    let resendable = ops.iter().all(resendable);
    let pipe = &pipe;
    let res = self.single("a pipeline", conn, resendable, move |mut c| async move { pipe.query_async::<Vec<Value>>(&mut c).await }).await;
    match res {
      Err(e) => ops.iter().map(|_| Err(e.clone())).collect(),
      Ok(values) => {
        if self.watch.is_some() && values.iter().any(|v| matches!(v, Value::ServerError(e) if e.code() == "READONLY")) {
          // Our master became a replica: find the new one for the next call.
          self.state.lock().await.conn = None;
        }
        if values.iter().any(|v| matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")) {
          // The scripts were flushed: a new connection loads them again.
          self.state.lock().await.conn = None;
        }
        let mut values = values.into_iter();
        ops.iter().zip(spans).map(|(op, n)| Commands::reply(op, values.by_ref().take(n).collect()).map_err(|e| self.at(e))).collect()
      }
    }
  }

  /// Per-command routing on a cluster: commands in a "wave" run concurrently;
  /// an id seen again goes to the next wave, so one id's calls stay ordered.
  async fn cluster_batch(&self, conn: ClusterConnection, ops: &[Op]) -> Vec<Result<Reply>> {
    let mut out: Vec<Option<Result<Reply>>> = ops.iter().map(|_| None).collect();
    let mut scratch = Cmd::new();
    let mut start = 0;
    while start < ops.len() {
      // Read per wave: a wave's commands are built once the one before it is answered.
      let now = now_ms();
      let mut seen = HashSet::new();
      let mut end = start;
      let mut users = HashSet::new();
      while end < ops.len()
        && ops[end].id().is_none_or(|id| seen.insert(id))
        && cluster_users::wave_user(&ops[end]).is_none_or(|u| users.insert(u))
      {
        end += 1;
      }
      let futs = ops[start..end].iter().map(|op| {
        let mut c = conn.clone();
        let mut cmds = Vec::with_capacity(2);
        // Per-user rules: steps of their own (src/backend/redis/cluster_users.rs).
        let scripted = self.cmds.scripted(op);
        if !scripted {
          self.cmds.each(op, now, &mut scratch, |c| cmds.push(c.clone()));
        }
        async move {
          if scripted {
            return self.cluster_step(c, op).await;
          }
          let mut values = Vec::with_capacity(cmds.len());
          for cmd in cmds {
            let v = self.timed("a command", async { cmd.query_async::<Value>(&mut c).await }).await?;
            values.push(v);
          }
          Commands::reply(op, values)
        }
      });
      for (i, r) in join_all(futs).await.into_iter().enumerate() {
        out[start + i] = Some(r);
      }
      start = end;
    }
    out.into_iter().map(|r| r.expect("every op answered")).collect()
  }
}

/// Escapes glob characters so a prefix matches literally in SCAN MATCH.
fn escape_glob(s: &str) -> String {
  let mut out = String::with_capacity(s.len());
  for ch in s.chars() {
    if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
      out.push('\\');
    }
    out.push(ch);
  }
  out
}

/// The whole-store ops: SCAN walks, one node at a time (and a ping).
impl RedisBackend {
  async fn whole(&self, op: &Op) -> Result<Reply> {
    Ok(match op {
      // Every master of a Cluster, failing ones too: one down is an
      // outage of its slots' sessions.
      Op::Ping => {
        let conn = self.conn().await?;
        for node in self.masters_of(&conn, true).await? {
          Commands::reply_last(op, self.on_node(&conn, &node, redis::cmd("PING")).await?)?;
        }
        Reply::Done
      }
      Op::Len => Reply::Count(self.len().await?),
      Op::Clear => Reply::Count(self.clear().await?),
      Op::Keys => Reply::Keys(self.keys().await?),
      Op::Entries => Reply::Entries(self.entries().await?),
      Op::Page(cursor, count) => {
        let (next, page) = self.page(cursor, *count).await?;
        Reply::Page(next, page)
      }
      Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) if self.cluster => self.cluster_whole(op).await?,
      Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(_, _, None) => self.script(op).await?,
      Op::Rotate(old, new, Some(recode)) => self.rotate_recoded(old, new, recode).await?,
      op => unreachable!("{op:?} is pipelined"),
    })
  }

  async fn len(&self) -> Result<u64> {
    let mut n = 0u64;
    self
      .scan_keys(|_, _, keys| {
        n += keys.len() as u64;
        async { Ok(()) }
      })
      .await?;
    Ok(n)
  }

  async fn clear(&self) -> Result<u64> {
    let mut n = 0u64;
    for (conn, node, keys) in self.scan_batches().await? {
      let cmds = keys.iter().map(|(k, _)| redis::cmd("UNLINK").arg(k).clone()).collect();
      for v in self.node_pipeline(&conn, &node, cmds).await? {
        n += redis::from_redis_value::<u64>(v).map_err(parse_err)?;
      }
    }
    Ok(n)
  }

  async fn keys(&self) -> Result<Vec<String>> {
    let mut out = Vec::new();
    self
      .scan_keys(|_, _, keys| {
        out.extend(keys.into_iter().map(|(_, id)| id));
        async { Ok(()) }
      })
      .await?;
    Ok(out)
  }

  async fn entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (conn, node, keys) in self.scan_batches().await? {
      let cmds = keys.iter().map(|(k, _)| redis::cmd("GET").arg(k).clone()).collect();
      for ((_, id), v) in keys.into_iter().zip(self.node_pipeline(&conn, &node, cmds).await?) {
        // A key that expired between SCAN and GET is simply skipped.
        if let Some(v) = redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(parse_err)? {
          out.push((id, v));
        }
      }
    }
    Ok(out)
  }

  /// A page of one `SCAN` step; the cursor is `<master>:<SCAN cursor>` (on
  /// a cluster every master is walked in turn).
  async fn page(&self, cursor: &str, count: u32) -> Result<super::Page> {
    let bad = || StoreError::new(Code::InvalidOption, format!("not a cursor of this store: {cursor:?}"));
    let (node_at, scan_at) = match cursor.split_once(':') {
      None if cursor.is_empty() => (0usize, 0u64),
      Some((n, c)) => (n.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?),
      None => return Err(bad()),
    };
    let conn = self.conn().await?;
    let masters = self.masters(&conn).await?;
    let Some(node) = masters.get(node_at) else { return Ok((String::new(), Vec::new())) };
    let cmd = redis::cmd("SCAN").arg(scan_at).arg("MATCH").arg(self.cmds.pattern()).arg("COUNT").arg(count.max(1)).clone();
    let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(self.on_node(&conn, node, cmd).await?).map_err(parse_err)?;
    let keys: Vec<(Vec<u8>, String)> = keys.into_iter().filter_map(|k| self.cmds.id_of(&k).map(|id| (k, id))).collect();
    let mut cmds = Vec::with_capacity(keys.len() * 2);
    for (k, _) in &keys {
      cmds.push(redis::cmd("GET").arg(k).clone());
      cmds.push(redis::cmd("PTTL").arg(k).clone());
    }
    let values = if cmds.is_empty() { Vec::new() } else { self.node_pipeline(&conn, node, cmds).await? };
    let mut out = Vec::with_capacity(keys.len());
    let mut values = values.into_iter();
    for (_, id) in keys {
      let (Some(v), Some(t)) = (values.next(), values.next()) else { break };
      // Gone between SCAN and GET: skipped.
      if let Some(v) = redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(parse_err)? {
        out.push((id, v, pttl_to_ttl(redis::from_redis_value::<i64>(t).map_err(parse_err)?)));
      }
    }
    let next = match (next, node_at + 1 < masters.len()) {
      (0, false) => String::new(),
      (0, true) => format!("{}:0", node_at + 1),
      (c, _) => format!("{node_at}:{c}"),
    };
    Ok((next, out))
  }
}

#[async_trait]
impl Backend for RedisBackend {
  async fn exec(&self, ops: Vec<Op>) -> Vec<Result<Reply>> {
    // Scans cannot join a pipeline: run the batch in segments around them.
    let mut out = Vec::with_capacity(ops.len());
    let mut i = 0;
    while i < ops.len() {
      if ops[i].id().is_none() {
        out.push(self.whole(&ops[i]).await);
        i += 1;
        continue;
      }
      let end = ops[i..].iter().position(|o| o.id().is_none()).map_or(ops.len(), |p| i + p);
      let seg = &ops[i..end];
      match self.conn().await {
        Err(e) => out.extend(seg.iter().map(|_| Err(e.clone()))),
        Ok(Conn::Single(c)) => out.extend(self.pipeline(c, seg).await),
        Ok(Conn::Cluster(c)) => out.extend(self.cluster_batch(c, seg).await),
      }
      i = end;
    }
    out
  }

  /// One server: each batch is one pipeline, submitted on the multiplexed
  /// connection in the order the batches start. A cluster routes command by
  /// command, so its batches run one at a time.
  fn overlapping_batches_keep_order(&self) -> bool {
    !self.cluster
  }

  async fn close(&self) -> Result<()> {
    let mut st = self.state.lock().await;
    st.closed = true;
    st.conn = None; // dropping the last handle ends the connection
    st.followers.drain(..).for_each(|f| f.abort());
    Ok(())
  }
}

impl Drop for RedisBackend {
  fn drop(&mut self) {
    self.state.get_mut().followers.drain(..).for_each(|f| f.abort());
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
  use crate::backend::Ops;

  #[test]
  fn glob_escape() {
    assert_eq!(escape_glob("sess:"), "sess:");
    assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
  }

  #[test]
  fn refused_writes_have_their_own_code() {
    for (reply, code) in [
      ("-OOM command not allowed when used memory > 'maxmemory'.", Code::StoreReadOnly),
      ("-READONLY You can't write against a read only replica.", Code::StoreReadOnly),
      ("-MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.", Code::StoreReadOnly),
      ("-WRONGTYPE Operation against a key holding the wrong kind of value", Code::Corrupt),
      ("-ERR something else", Code::StoreUnavailable),
    ] {
      let Value::ServerError(e) = redis::parse_redis_value(format!("{reply}\r\n").as_bytes()).unwrap() else { panic!("{reply}") };
      assert_eq!(map_err(e.into()).code, code, "{reply}");
    }
  }

  #[test]
  fn bad_url_is_an_option_error() {
    let cfg = RedisConfig {
      topology: Topology::Single("http://nope".into()),
      username: None,
      password: None,
      db: None,
      prefix: "s:".into(),
      connect_timeout: Duration::from_secs(1),
      command_timeout: Duration::from_secs(1),
      tls: false,
      tls_certs: None,
      daemon: false,
      rules: UserRules::default(),
    };
    assert_eq!(RedisBackend::new(cfg).err().unwrap().code, Code::InvalidOption);
  }

  #[tokio::test]
  async fn server_down_fails_fast_with_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let cfg = RedisConfig {
      topology: Topology::Single("redis://127.0.0.1:1".into()),
      username: None,
      password: None,
      db: None,
      prefix: "s:".into(),
      connect_timeout: Duration::from_millis(300),
      command_timeout: Duration::from_millis(300),
      tls: false,
      tls_certs: None,
      daemon: false,
      rules: UserRules::default(),
    };
    let b = RedisBackend::new(cfg).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(b.get("x").await.unwrap_err().code, Code::StoreUnavailable);
    assert!(t.elapsed() < Duration::from_secs(2));
  }
}
