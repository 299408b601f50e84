//! Redis Cluster: its masters (`CLUSTER NODES`), a command or pipeline on
//! one master, and a batch of per-id ops routed command by command in
//! waves that keep each id's (and each user's) calls in call order.

use std::collections::HashSet;

use futures::future::join_all;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, Value};

use super::{parse_err, Commands, Conn, RedisBackend};
use crate::backend::{Op, Reply};
use crate::error::Result;
use crate::expiry::now_ms;

impl RedisBackend {
  /// The addresses of every master (one entry for a single server).
  pub(super) async fn masters(&self, conn: &Conn) -> Result<Vec<Option<(String, u16)>>> {
    self.masters_of(conn, false).await
  }

  /// As [`Self::masters`]; `serving`: the masters that hold slots instead,
  /// failing ones too (a failed master that kept its slots is an outage; one
  /// replaced by its replica holds none).
  pub(super) async fn masters_of(&self, conn: &Conn, serving: bool) -> Result<Vec<Option<(String, u16)>>> {
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
  pub(super) async fn on_node(&self, conn: &Conn, node: &Option<(String, u16)>, cmd: Cmd) -> Result<Value> {
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
  pub(super) async fn node_pipeline(&self, conn: &Conn, node: &Option<(String, u16)>, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
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

  /// Per-command routing on a cluster: commands in a "wave" run concurrently;
  /// an id seen again goes to the next wave, so one id's calls stay ordered.
  pub(super) async fn cluster_batch(&self, conn: ClusterConnection, ops: &[Op]) -> Vec<Result<Reply>> {
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
        // The writes of one user go in separate waves, in call order (the
        // cap's order and its count), as one session's calls do.
        && ops[end].user().is_none_or(|u| users.insert(u))
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
