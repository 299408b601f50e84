//! The session daemon (HTTP Sessions' `http-sessions-daemon`, done again):
//! a separate process that keeps sessions and locks for several application
//! processes, on a loopback TCP port or a UNIX socket.
//!
//! It speaks a subset of RESP2, so `redis-cli` can inspect it and the
//! application side is rs-store's Redis client (`rs.daemon()` is the Redis
//! store in its "daemon" dialect) rather than a second client. Protocol
//! (documented for users in `docs/daemon.md`):
//!
//! | command | reply |
//! |---|---|
//! | `PING [msg]`, `ECHO msg`, `QUIT` | as Redis |
//! | `GET k` | bulk or nil |
//! | `SET k v [NX \| XX] [PX ms \| EX s]` | `+OK`; nil when `NX`/`XX` refused it |
//! | `PEXPIRE k ms`, `EXPIRE k s`, `PERSIST k` | `:1` when `k` exists |
//! | `PTTL k`, `TTL k` | `-2` missing, `-1` no expiry |
//! | `EXISTS k…`, `DEL k…`, `UNLINK k…` | count |
//! | `DBSIZE`, `FLUSHDB`, `FLUSHALL` | count / `+OK` |
//! | `SCAN cursor [MATCH p] [COUNT n]`, `KEYS p` | every match in one step (cursor `0`) |
//! | `LOCK k token ttl-ms` | `:1` taken, `:0` held by another |
//! | `UNLOCK k token`, `RENEW k token ttl-ms` | `:1` when `token` holds `k` |
//! | `UWRITE prefix id v ttl-ms cond owner lifetime-ms cap` | `:1` written, `:0` refused by `cond` |
//! | `SESSIONSOF prefix user` | `[id, v, pttl, …]` |
//! | `REVOKEUSER prefix user [keep-id…]` | count removed (keep-ids with the prefix ≤ the value limit in all) |
//! | `ROTATE prefix old new [sha256-hex v]` | `:1` moved, `:0` not, `:-1` changed since read |
//! | `SELECT 0`, `CLIENT …`, `COMMAND …`, `INFO` | accepted for client compatibility |
//!
//! The per-user commands (users.rs) carry the client's rules with each
//! write (`''` for none; cond `NX`, `XX` or `''`; owner `k` keep, `a`
//! anonymous, `u<user>`), as the Redis scripts take them.
//!
//! A lock lives until `UNLOCK`, until its ttl (`LOCK`/`RENEW`) runs out, or
//! until the connection that took it closes (the holder process died or
//! disconnected), whichever comes first.
//! Errors are `-ERR_… message` with rs-store's codes. A request too large
//! for the value limit is cut off while it is read: the daemon answers
//! `ERR_SESSION_TOO_LARGE` and closes that connection.
//!
//! Storage is rs-store's file backend on a storage directory (sessions survive
//! daemon restarts; expiry is an absolute time, so 30 days is just a number)
//! or, without one, its memory backend. `--lock` mode serves locks only.

mod locks;
pub mod resp;
mod users;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{Backend, Cond, Ops};
use crate::error::{Code, Result, StoreError};
use crate::expiry::after_ms;
use locks::LockTable;
use resp::{glob, request_args, Reply};

/// Longest key the daemon accepts (a prefix plus a session id).
pub const MAX_KEY_BYTES: usize = 4096;
/// Largest value the daemon accepts by default: room for a session at the
/// clients' default `maxSessionBytes` (1 MiB) once encoded. It also bounds a
/// request while it is parsed, and with it what one request can cost: a
/// request of millions of empty arguments takes ~15× its bytes in parsed
/// values (a 60 MB one took the daemon to 1 GiB under the old 64 MiB limit).
pub const MAX_VALUE_BYTES: usize = 2 * 1024 * 1024;
/// Room in one request besides its value (the command, the keys, a user,
/// numbers): `ROTATE` names two keys.
const REQUEST_OVERHEAD: usize = 2 * MAX_KEY_BYTES + 512;

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub enum Listen {
  /// A TCP port on 127.0.0.1 (0: any free port).
  Port(u16),
  /// A UNIX socket path.
  Socket(PathBuf),
}

struct Shared {
  /// Largest value accepted; a request that cannot fit is cut off while it
  /// is read (see [`Capped`]), so a client cannot make the daemon buffer
  /// more than this.
  max_value: usize,
  /// `None` in `--lock` mode.
  storage: Option<Arc<dyn Backend>>,
  locks: LockTable,
  next_conn: AtomicU64,
}

/// A running daemon.
pub struct Daemon {
  address: String,
  shutdown: watch::Sender<bool>,
  task: Option<JoinHandle<()>>,
  socket: Option<PathBuf>,
  shared: Arc<Shared>,
}

enum Listener {
  Tcp(TcpListener),
  #[cfg(unix)]
  Unix(UnixListener),
}

fn io(what: &str, e: std::io::Error) -> StoreError {
  StoreError::new(Code::Io, format!("{what}: {e}"))
}

impl Daemon {
  /// Binds and starts serving; `storage: None` is `--lock` mode.
  pub async fn start(listen: Listen, storage: Option<Arc<dyn Backend>>, max_value: usize) -> Result<Daemon> {
    let (listener, address, socket) = match listen {
      Listen::Port(port) => {
        let l = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| io(&format!("cannot listen on 127.0.0.1:{port}"), e))?;
        let addr = l.local_addr().map_err(|e| io("local address", e))?;
        (Listener::Tcp(l), addr.to_string(), None)
      }
      #[cfg(not(unix))]
      Listen::Socket(path) => {
        return Err(StoreError::new(Code::InvalidOption, format!("{}: UNIX sockets need a Unix system; use a port", path.display())));
      }
      #[cfg(unix)]
      Listen::Socket(path) => {
        // A socket file left by a daemon that died is replaced; a live one is not.
        if path.exists() {
          if tokio::net::UnixStream::connect(&path).await.is_ok() {
            return Err(StoreError::new(Code::Io, format!("another daemon is listening on {}", path.display())));
          }
          let _ = std::fs::remove_file(&path);
        }
        let l = UnixListener::bind(&path).map_err(|e| io(&format!("cannot listen on {}", path.display()), e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        (Listener::Unix(l), path.display().to_string(), Some(path))
      }
    };
    let shared = Arc::new(Shared { max_value, storage, locks: LockTable::default(), next_conn: AtomicU64::new(1) });
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, shared.clone(), rx));
    Ok(Daemon { address, shutdown: tx, task: Some(task), socket, shared })
  }

  /// `127.0.0.1:port` or the socket path.
  pub fn address(&self) -> &str {
    &self.address
  }

  /// Stops accepting, closes every connection, closes the storage.
  pub async fn stop(&mut self) -> Result<()> {
    let _ = self.shutdown.send(true);
    if let Some(t) = self.task.take() {
      let _ = t.await;
    }
    if let Some(p) = self.socket.take() {
      let _ = std::fs::remove_file(p);
    }
    match &self.shared.storage {
      Some(s) => s.close().await,
      None => Ok(()),
    }
  }
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
  let mut conns = tokio::task::JoinSet::new();
  loop {
    let accepted = tokio::select! {
      _ = shutdown.changed() => break,
      a = accept(&listener) => a,
    };
    let Ok(stream) = accepted else {
      // EMFILE and friends: back off instead of spinning
      tokio::time::sleep(std::time::Duration::from_millis(50)).await;
      continue;
    };
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (shared, rx) = (shared.clone(), shutdown.clone());
    conns.spawn(async move {
      match stream {
        Stream::Tcp(s) => serve(s, &shared, conn, rx).await,
        #[cfg(unix)]
        Stream::Unix(s) => serve(s, &shared, conn, rx).await,
      }
      shared.locks.release_conn(conn);
    });
    while conns.try_join_next().is_some() {}
  }
  conns.shutdown().await;
}

enum Stream {
  Tcp(tokio::net::TcpStream),
  #[cfg(unix)]
  Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<Stream> {
  match l {
    Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
      let _ = s.set_nodelay(true);
      Stream::Tcp(s)
    }),
    #[cfg(unix)]
    Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
  }
}

/// A reader that fails once more than `max` bytes arrive for one request
/// (`since` is reset after each request is parsed).
struct Capped<R> {
  inner: R,
  since: usize,
  max: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Capped<R> {
  fn poll_read(
    mut self: std::pin::Pin<&mut Self>,
    cx: &mut std::task::Context<'_>,
    buf: &mut tokio::io::ReadBuf<'_>,
  ) -> std::task::Poll<std::io::Result<()>> {
    if self.since > self.max {
      return std::task::Poll::Ready(Err(std::io::Error::other("request too large")));
    }
    let before = buf.filled().len();
    let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
    self.since += buf.filled().len() - before;
    r
  }
}

/// One connection: requests are answered in order, one at a time.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, shared: &Shared, conn: u64, mut shutdown: watch::Receiver<bool>) {
  let (rd, mut wr) = tokio::io::split(stream);
  let mut rd = Capped { inner: rd, since: 0, max: shared.max_value.saturating_add(REQUEST_OVERHEAD) };
  let mut decoder = combine::stream::Decoder::new();
  let mut out = Vec::with_capacity(512);
  loop {
    let value = tokio::select! {
      _ = shutdown.changed() => return,
      v = redis::parse_redis_value_async(&mut decoder, &mut rd) => v,
    };
    let too_large = rd.since > rd.max;
    rd.since = 0;
    let (reply, quit) = match value {
      Err(_) if too_large => {
        let msg = format!("request larger than {} bytes: values are at most {} bytes", rd.max, shared.max_value);
        (Reply::error(Code::SessionTooLarge.as_str(), msg), true)
      }
      // end of stream, a reset, or bytes that are not RESP: the connection is over
      Err(e) if e.is_io_error() => return,
      Err(e) => (Reply::error("ERR", format!("Protocol error: {e}")), true),
      Ok(v) => match request_args(v) {
        Err(why) => (Reply::error("ERR", format!("Protocol error: {why}")), true),
        Ok(args) => {
          let quit = args[0].eq_ignore_ascii_case(b"QUIT");
          (execute(shared, conn, args).await, quit)
        }
      },
    };
    out.clear();
    reply.encode(&mut out);
    if wr.write_all(&out).await.is_err() || quit {
      let _ = wr.shutdown().await;
      return;
    }
  }
}

fn store_error(e: StoreError) -> Reply {
  Reply::error(e.code.as_str(), e.message)
}

fn wrong_args(name: &str) -> Reply {
  Reply::error("ERR", format!("wrong number of arguments for '{}' command", name.to_ascii_lowercase()))
}

fn text(arg: &[u8]) -> std::result::Result<&str, Reply> {
  std::str::from_utf8(arg).map_err(|_| Reply::error(Code::InvalidId.as_str(), "keys must be UTF-8"))
}

fn number(arg: &[u8]) -> std::result::Result<i64, Reply> {
  std::str::from_utf8(arg).ok().and_then(|s| s.parse().ok()).ok_or_else(|| Reply::error("ERR", "value is not an integer or out of range"))
}

/// A key argument: UTF-8, non-empty, at most [`MAX_KEY_BYTES`].
fn key(arg: &[u8]) -> std::result::Result<&str, Reply> {
  if arg.is_empty() || arg.len() > MAX_KEY_BYTES {
    return Err(Reply::error(Code::InvalidId.as_str(), format!("keys must be 1 to {MAX_KEY_BYTES} bytes")));
  }
  text(arg)
}

/// Expiry from a relative ttl in ms (`<= 0`: already expired).
fn expiry_in(ms: i64) -> u64 {
  after_ms(ms.max(0) as u64)
}

async fn execute(shared: &Shared, conn: u64, args: Vec<Vec<u8>>) -> Reply {
  let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
  let a = &args[1..];
  let r = match (name.as_str(), a.len()) {
    ("PING", 0) => Ok(Reply::Status("PONG")),
    ("PING", 1) | ("ECHO", 1) => Ok(Reply::Bulk(Some(a[0].clone()))),
    ("QUIT", _) => Ok(Reply::ok()),
    ("SELECT", 1) if a[0] == b"0" => Ok(Reply::ok()),
    ("SELECT", 1) => Ok(Reply::error("ERR", "the daemon has one database: 0")),
    ("CLIENT", _) => Ok(Reply::ok()),
    ("COMMAND", _) => Ok(Reply::Array(vec![])),
    ("INFO", _) => {
      let mode = if shared.storage.is_some() { "storage" } else { "lock" };
      let info = format!(
        "# Server\r\nrs_store_daemon_version:{}\r\nmode:{mode}\r\nlocks_held:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        shared.locks.len()
      );
      Ok(Reply::Bulk(Some(info.into_bytes())))
    }
    ("LOCK", 3) | ("RENEW", 3) => (|| {
      let (k, token) = (key(&a[0])?, &a[1]);
      let ttl = number(&a[2])?;
      if ttl < 1 {
        return Err(Reply::error(Code::InvalidTimeout.as_str(), "lock ttl must be at least 1 ms"));
      }
      let ttl = ttl as u64;
      Ok(Reply::bool(if name == "LOCK" {
        shared.locks.lock(conn, k.as_bytes(), token, ttl)
      } else {
        shared.locks.renew(k.as_bytes(), token, ttl)
      }))
    })(),
    ("UNLOCK", 2) => key(&a[0]).map(|k| Reply::bool(shared.locks.unlock(k.as_bytes(), &a[1]))),
    ("LOCK" | "RENEW" | "UNLOCK" | "PING" | "ECHO" | "SELECT", _) => Ok(wrong_args(&name)),
    _ => match &shared.storage {
      None => Ok(Reply::error(Code::InvalidOption.as_str(), format!("'{name}': this daemon serves locks only (--lock)"))),
      Some(s) => storage_command(s.as_ref(), shared.max_value, &name, a).await,
    },
  };
  r.unwrap_or_else(|reply| reply)
}

async fn storage_command(s: &dyn Backend, max_value: usize, name: &str, a: &[Vec<u8>]) -> std::result::Result<Reply, Reply> {
  if let Some(r) = users::command(s, max_value, name, a).await {
    return r;
  }
  let done = |r: Result<Reply>| r.map_err(store_error);
  match (name, a.len()) {
    ("GET", 1) => done(s.get(key(&a[0])?).await.map(Reply::Bulk)),
    ("SET", n) if n >= 2 => {
      let k = key(&a[0])?;
      if a[1].len() > max_value {
        return Err(Reply::error(Code::SessionTooLarge.as_str(), format!("values are at most {max_value} bytes")));
      }
      // Options in any order, as Redis takes them: NX or XX, PX ms, EX s.
      let (mut expires, mut cond) = (None, None);
      let mut opts = a[2..].iter();
      while let Some(opt) = opts.next() {
        let mut ms = |per: i64| -> std::result::Result<Option<u64>, Reply> {
          let n = number(opts.next().ok_or_else(|| Reply::error("ERR", "syntax error"))?)?;
          Ok(Some(expiry_in(n.saturating_mul(per))))
        };
        if opt.eq_ignore_ascii_case(b"NX") || opt.eq_ignore_ascii_case(b"XX") {
          let c = if opt.eq_ignore_ascii_case(b"NX") { Cond::Absent } else { Cond::Present };
          if cond.is_some_and(|was| was != c) {
            return Err(Reply::error("ERR", "syntax error"));
          }
          cond = Some(c);
        } else if opt.eq_ignore_ascii_case(b"PX") {
          expires = ms(1)?;
        } else if opt.eq_ignore_ascii_case(b"EX") {
          expires = ms(1000)?;
        } else {
          return Err(Reply::error("ERR", "SET takes only NX, XX, PX or EX here"));
        }
      }
      if let Some(cond) = cond {
        // Written: OK; refused by the condition: nil (as Redis answers).
        done(s.set_if(k, a[1].clone(), expires, cond).await.map(|written| if written { Reply::ok() } else { Reply::Bulk(None) }))
      } else {
        done(s.set(k, a[1].clone(), expires).await.map(|_| Reply::ok()))
      }
    }
    ("PEXPIRE", 2) => done(s.touch(key(&a[0])?, Some(expiry_in(number(&a[1])?))).await.map(Reply::bool)),
    ("EXPIRE", 2) => done(s.touch(key(&a[0])?, Some(expiry_in(number(&a[1])?.saturating_mul(1000)))).await.map(Reply::bool)),
    ("PERSIST", 1) => done(s.touch(key(&a[0])?, None).await.map(Reply::bool)),
    ("PTTL", 1) => done(s.ttl(key(&a[0])?).await.map(|t| Reply::Int(t.pttl()))),
    ("TTL", 1) => done(s.ttl(key(&a[0])?).await.map(|t| {
      Reply::Int(match t.pttl() {
        ms if ms < 0 => ms,
        ms => (ms + 500) / 1000,
      })
    })),
    ("EXISTS" | "DEL" | "UNLINK", n) if n >= 1 => {
      let mut count = 0;
      for k in a {
        let k = key(k)?;
        let hit = if name == "EXISTS" { s.exists(k).await } else { s.remove(k).await };
        if hit.map_err(store_error)? {
          count += 1;
        }
      }
      Ok(Reply::Int(count))
    }
    ("DBSIZE", 0) => done(s.len().await.map(|n| Reply::Int(n as i64))),
    ("FLUSHDB" | "FLUSHALL", _) => done(s.clear().await.map(|_| Reply::ok())),
    ("KEYS", 1) => done(s.keys().await.map(|keys| matching(keys, &a[0]))),
    ("SCAN", n) if n % 2 == 1 => {
      number(&a[0])?;
      let mut pattern: &[u8] = b"*";
      for pair in a[1..].chunks(2) {
        if pair[0].eq_ignore_ascii_case(b"MATCH") {
          pattern = &pair[1];
        } else if !pair[0].eq_ignore_ascii_case(b"COUNT") && !pair[0].eq_ignore_ascii_case(b"TYPE") {
          return Err(Reply::error("ERR", "syntax error"));
        }
      }
      done(s.keys().await.map(|keys| Reply::Array(vec![Reply::Bulk(Some(b"0".to_vec())), matching(keys, pattern)])))
    }
    ("GET" | "SET" | "PEXPIRE" | "EXPIRE" | "PERSIST" | "PTTL" | "TTL" | "EXISTS" | "DEL" | "UNLINK" | "DBSIZE" | "KEYS" | "SCAN", _) => {
      Err(wrong_args(name))
    }
    _ => Err(Reply::error("ERR", format!("unknown command '{name}'"))),
  }
}

fn matching(keys: Vec<String>, pattern: &[u8]) -> Reply {
  Reply::Array(keys.into_iter().filter(|k| glob(pattern, k.as_bytes())).map(|k| Reply::Bulk(Some(k.into_bytes()))).collect())
}
