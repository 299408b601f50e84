//! Redis, in one folder: the backend on the `redis` crate (1.x, tokio; a
//! multiplexed connection for a single server or a Sentinel-managed master,
//! the crate's async cluster client for Redis Cluster) and the connection on
//! the JS thread ([`wire`]), over one op <-> command mapping
//! ([`commands`]) and one whole-store walk ([`whole`]). Expiry is native to
//! Redis (`SET … PX`, `PEXPIRE`, `PTTL`).
//!
//! - `mod.rs`: the configuration, the backend and its batches;
//! - `commands.rs`: ops to commands, replies to answers, errors to codes;
//! - `connect.rs`: topologies, TLS, the lazy connect and its policy;
//! - `cluster.rs`: `CLUSTER NODES`, routing, a batch's waves;
//! - `whole.rs`: the sans-IO `SCAN` walk both drivers run;
//! - `wire.rs`: the JS-socket driver (`lib/redis-wire.js` holds the socket);
//! - `users.rs`, `cluster_users.rs`, `daemon.rs`: per-user sessions as
//!   scripts, on a cluster, and in the daemon's dialect;
//! - `sentinel.rs`: following a master through failovers.
//!
//! Connections are made lazily and remade after a connection-level failure,
//! so a store created while Redis is down works as soon as Redis is back.
//! A batch of operations ([`Backend::exec`]) becomes one pipeline on a
//! single server (one write, one round trip); on a cluster every command is
//! routed to its node, and commands on one id stay in call order.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Pipeline, TlsCertificates, Value};
use tokio::sync::Mutex;

use self::commands::resendable;
pub(crate) use self::commands::{map_err, parse_err, pttl_to_ttl, Commands, Key};
use self::connect::Conn;
use self::connect::State;
use self::sentinel::Watch;
use super::{Backend, Op, Reply, UserRules};
use crate::error::Result;
use crate::expiry::now_ms;

mod cluster;
mod cluster_users;
pub mod commands;
pub mod connect;
mod daemon;
mod sentinel;
mod users;
pub mod whole;
pub mod wire;

pub(crate) use daemon::digest;
pub(crate) use users::SCRIPTS;

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
  /// Per-user sessions (src/backend/redis/users.rs; on the daemon
  /// src/backend/redis/daemon.rs, on a cluster
  /// src/backend/redis/cluster_users.rs).
  pub rules: UserRules,
}

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

impl RedisBackend {
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
