//! Following a Sentinel-managed master through a failover: tasks subscribed
//! to every sentinel's notifications tell the Redis backend
//! ([`super`]) as soon as a failover of its master starts, so it
//! stops writing to the old master at once and goes to the replica chosen
//! to replace it (once that one reports itself master), instead of writing
//! to the old master until it is demoted, which then drops those writes
//! when it resyncs from the new one.
//!
//! The leader sentinel publishes `+selected-slave` (the replica it will
//! promote) one timer tick before it sends that replica `REPLICAOF NO ONE`,
//! then `+promoted-slave` and `+switch-master`; the other sentinels publish
//! `+switch-master` once they learn of it. Any of them is enough.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;

/// A failover state this old is no longer trusted over the sentinels'
/// own answer (they may have missed telling us that it was aborted).
const FAILOVER_TRUST: Duration = Duration::from_secs(60);

/// The notifications followed: a failover's start, progress and end or abort.
const CHANNELS: [&str; 6] = [
  "+selected-slave",
  "+promoted-slave",
  "+switch-master",
  "-failover-abort-no-good-slave",
  "-failover-abort-not-elected",
  "-failover-abort-slave-timeout",
];

/// A failover of our master: the master being replaced and its replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
  pub old: (String, u16),
  pub new: (String, u16),
  since: Instant,
}

/// What the sentinels told about our master, shared with the tasks that
/// listen to them.
#[derive(Default)]
pub struct Watch {
  /// Bumped by each notification about our master: a connection made
  /// before it is not used again.
  epoch: AtomicU64,
  failover: Mutex<Option<Failover>>,
}

impl Watch {
  pub fn epoch(&self) -> u64 {
    self.epoch.load(Ordering::Acquire)
  }

  /// The failover in progress (or just done), if any is still trusted.
  pub fn failover(&self) -> Option<Failover> {
    let mut f = self.failover.lock().unwrap_or_else(|p| p.into_inner());
    if f.as_ref().is_some_and(|f| f.since.elapsed() > FAILOVER_TRUST) {
      *f = None;
    }
    f.clone()
  }

  /// Forgets the failover: the sentinels name a master that is neither side of it.
  pub fn clear(&self) {
    *self.failover.lock().unwrap_or_else(|p| p.into_inner()) = None;
  }

  fn set(&self, f: Option<Failover>) {
    *self.failover.lock().unwrap_or_else(|p| p.into_inner()) = f;
    self.epoch.fetch_add(1, Ordering::AcqRel);
  }

  /// One notification (`channel`, `payload`) from a sentinel.
  pub fn event(&self, master: &str, channel: &str, payload: &str) {
    let p: Vec<&str> = payload.split(' ').collect();
    let addr = |host: &str, port: &str| port.parse().ok().map(|port| (host.to_string(), port));
    match channel {
      // <slave> <ip:port> <ip> <port> @ <master> <master ip> <master port>
      "+selected-slave" | "+promoted-slave" if p.len() >= 8 && p[4] == "@" && p[5] == master => {
        if let (Some(new), Some(old)) = (addr(p[2], p[3]), addr(p[6], p[7])) {
          self.set(Some(Failover { old, new, since: Instant::now() }));
        }
      }
      // <master> <old ip> <old port> <new ip> <new port>
      "+switch-master" if p.len() >= 5 && p[0] == master => {
        if let (Some(old), Some(new)) = (addr(p[1], p[2]), addr(p[3], p[4])) {
          // Kept a while: a sentinel that has not heard of it yet still
          // names the old master, which still says it is one.
          self.set(Some(Failover { old, new, since: Instant::now() }));
        }
      }
      // master <name> <ip> <port>
      c if c.starts_with("-failover-abort") && p.get(1) == Some(&master) => self.set(None),
      _ => {}
    }
  }
}

/// Listens to the sentinel at `url` for as long as the task lives,
/// subscribing again after a lost connection (and then dropping the master
/// connection once: a failover may have happened meanwhile).
pub async fn follow(url: String, master: String, watch: std::sync::Arc<Watch>) {
  let mut again = false;
  loop {
    if let Ok(client) = redis::Client::open(url.as_str()) {
      if let Ok(mut ps) = client.get_async_pubsub().await {
        if ps.subscribe(&CHANNELS[..]).await.is_ok() {
          if again {
            watch.epoch.fetch_add(1, Ordering::AcqRel);
          }
          again = true;
          let mut messages = ps.into_on_message();
          while let Some(m) = messages.next().await {
            if let Ok(payload) = m.get_payload::<String>() {
              watch.event(&master, m.get_channel_name(), &payload);
            }
          }
        }
      }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn follows_only_its_master() {
    let w = Watch::default();
    w.event("m", "+selected-slave", "slave 10.0.0.2:6380 10.0.0.2 6380 @ other 10.0.0.1 6379");
    assert_eq!((w.epoch(), w.failover()), (0, None));
    w.event("m", "+selected-slave", "slave 10.0.0.2:6380 10.0.0.2 6380 @ m 10.0.0.1 6379");
    let f = w.failover().unwrap();
    assert_eq!((f.old, f.new, w.epoch()), (("10.0.0.1".into(), 6379), ("10.0.0.2".into(), 6380), 1));
    w.event("m", "-failover-abort-slave-timeout", "master m 10.0.0.1 6379");
    assert_eq!((w.epoch(), w.failover()), (2, None));
    w.event("m", "+switch-master", "m 10.0.0.1 6379 10.0.0.3 6381");
    assert_eq!(w.failover().unwrap().new, ("10.0.0.3".into(), 6381));
    w.event("m", "+switch-master", "m garbage");
    assert_eq!(w.epoch(), 3);
  }
}
