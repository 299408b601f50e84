//! The one thin `#[napi]` layer: store constructors, and one generic call
//! per store kind that takes an op as data (`call`, `q`; see
//! [`crate::backend::Op::from_call`]). It converts arguments and results,
//! applies the session size limit and the codec, and gives errors their
//! codes. Host quirks (units, callbacks, never-reject, reads of ids no
//! session can have) live in the JS facades under `lib/`.
//!
//! Every sync export is `catch_unwind`: a panic becomes a JS error with code
//! `ERR_INTERNAL` instead of aborting Node.
//!
//! `cargo test` builds no napi registrations, so these exports look unused
//! there; the node tests (`__test__/`) exercise them.
#![cfg_attr(test, allow(dead_code))]

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{External, Function};
use napi_derive::napi;

use crate::backend::dummy::DummyBackend;
use crate::backend::file::{FileBackend, FileOptions};
use crate::backend::memory::{MemoryBackend, MemoryOptions};
use crate::backend::redis::{RedisBackend, RedisConfig, Topology};
use crate::backend::snapshot::{SnapshotBackend, SnapshotOptions};
use crate::backend::{Op, Recode, Report, UserRules};
use crate::codec::Codec;
use crate::error::{Code, Result, StoreError};
use crate::options::{ms_or, SessionOptions, REDIS_TIMEOUT_MS, SWEEP_IN_MEMORY_MS, SWEEP_STORED_MS};

mod async_store;
mod daemon;
mod object_storage;
mod postgres;
mod reply;
mod sync_store;

pub use async_store::AsyncStore;
pub use daemon::{start_daemon, DaemonConfig, DaemonServer};
pub use object_storage::{object_session_store, NativeModuleStore, ObjectStoreConfig};
pub use postgres::{postgres_store, PostgresStoreConfig};
pub use reply::JsReply;
pub use sync_store::{MemoryStoreOptions, SyncStore};

/// napi-rs's runtime runs what napi drives itself (the `async fn` exports:
/// the daemon, module stores; flush promises); one worker is plenty. napi
/// takes this runtime for its first environment only and shuts it down with
/// the last one; the stores' I/O runs on rs-store's own runtime instead
/// ([`crate::runtime`]), which outlives every environment.
#[napi_derive::module_init]
fn init_runtime() {
  if let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("rs-store-napi").enable_all().build() {
    napi::bindgen_prelude::create_custom_tokio_runtime(rt);
  }
}

/// Longest accepted session id, in UTF-8 bytes (the JS facade answers
/// reads of longer ids "missing" itself).
#[napi]
pub const MAX_ID_BYTES: u32 = crate::backend::MAX_ID_BYTES as u32;
/// Default for `maxSessionBytes`: 1 MiB of serialized session.
pub const DEFAULT_MAX_SESSION_BYTES: u32 = 1024 * 1024;

/// A JS string as UTF-8 (a session's JSON text, an id), converted in one pass over the JS
/// string. napi-rs's `String` asks V8 for the UTF-8 length first (a whole
/// pass) and then copies into a zeroed buffer (a second pass); the UTF-16
/// length is known at once and bounds the UTF-8 size (at most 3 bytes per
/// UTF-16 unit; V8 replaces lone surrogates with U+FFFD, also 3 bytes).
pub struct Utf8Text(Vec<u8>);

impl Utf8Text {
  pub fn as_str(&self) -> &str {
    // SAFETY: V8 wrote it as UTF-8, replacing invalid sequences.
    unsafe { std::str::from_utf8_unchecked(&self.0) }
  }
  pub fn into_bytes(self) -> Vec<u8> {
    self.0
  }
  pub fn into_string(self) -> String {
    // SAFETY: as in `as_str`.
    unsafe { String::from_utf8_unchecked(self.0) }
  }
}

impl napi::bindgen_prelude::TypeName for Utf8Text {
  fn type_name() -> &'static str {
    "string"
  }
  fn value_type() -> napi::ValueType {
    napi::ValueType::String
  }
}

impl napi::bindgen_prelude::FromNapiValue for Utf8Text {
  unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> napi::Result<Self> {
    let fail = |what: &str| napi::Error::new(napi::Status::StringExpected, format!("{what}: a string was expected"));
    let mut units = 0usize;
    // SAFETY: a null buffer asks for the length only.
    let status = unsafe { napi::sys::napi_get_value_string_utf16(env, value, std::ptr::null_mut(), 0, &mut units) };
    if status != napi::sys::Status::napi_ok {
      return Err(fail("an argument"));
    }
    let cap = units.saturating_mul(3).saturating_add(1);
    let mut buf: Vec<u8> = Vec::with_capacity(cap);
    let mut written = 0usize;
    // SAFETY: `buf` has room for `cap` bytes; V8 writes at most cap - 1 and a NUL.
    let status = unsafe { napi::sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), cap, &mut written) };
    if status != napi::sys::Status::napi_ok {
      return Err(fail("an argument"));
    }
    // SAFETY: V8 initialized `written` bytes (the NUL after them is not kept).
    unsafe { buf.set_len(written) };
    Ok(Utf8Text(buf))
  }
}

/// A call as JS makes it: the op's name and its arguments (see
/// [`Op::from_call`]), strings read in one pass each (see [`Utf8Text`]).
type Call = (Utf8Text, Option<Utf8Text>, Option<Utf8Text>, Option<f64>);

/// Per-session limits checked on the JS thread before anything is queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
  max_session_bytes: usize,
}

impl SessionLimits {
  fn new(max: Option<u32>) -> Result<Self> {
    match max {
      Some(0) => Err(StoreError::new(Code::InvalidOption, "maxSessionBytes must be at least 1")),
      v => Ok(SessionLimits { max_session_bytes: v.unwrap_or(DEFAULT_MAX_SESSION_BYTES) as usize }),
    }
  }

  fn check(&self, value: &[u8]) -> Result<()> {
    if value.len() > self.max_session_bytes {
      return Err(StoreError::new(
        Code::SessionTooLarge,
        format!("session is {} bytes; maxSessionBytes is {}", value.len(), self.max_session_bytes),
      ));
    }
    Ok(())
  }
}

/// What every store applies between JS text and backend bytes: the session
/// size limit (checked on the JS thread), the codec, and where problems that
/// answer no call go (e.g. a session that fails to decrypt: the call answers
/// "missing", the reporter gets the coded error).
pub(crate) struct Core {
  pub limits: SessionLimits,
  pub codec: Arc<Codec>,
  pub report: Option<Report>,
  /// Whether the backend has per-user sessions (their ops are refused
  /// before they are queued otherwise).
  users: bool,
}

impl Core {
  /// The core of a store without per-user sessions: their options refused.
  pub(crate) fn new(session: Option<SessionOptions>, report: Option<Report>) -> Result<Self> {
    let (core, rules) = Core::with_users(session, report)?;
    if rules.any() {
      return Err(StoreError::new(
        Code::InvalidOption,
        "this store has no per-user sessions yet (userOf, maxSessionsPerUser, maxLifetime): memory stores have them (README, \"Per-user sessions\")",
      ));
    }
    Ok(Core { users: false, ..core })
  }

  /// The core of a store whose backend has per-user sessions, and their rules.
  pub(crate) fn with_users(session: Option<SessionOptions>, report: Option<Report>) -> Result<(Self, UserRules)> {
    let o = session.unwrap_or_default();
    let rules = o.rules()?;
    let core = Core {
      limits: SessionLimits::new(o.max_session_bytes)?,
      codec: Arc::new(Codec::new(&o.secrets.unwrap_or_default(), o.compress.unwrap_or(false))?),
      report,
      users: true,
    };
    Ok((core, rules))
  }

  pub fn encode(&self, id: &str, text: Vec<u8>) -> Result<Vec<u8>> {
    self.codec.encode(id, text)
  }

  /// The op of a JS call, its session held to the size limit and, with
  /// `encode`, encoded now (else on the thread that runs it).
  fn op(&self, call: Call, encode: bool) -> Result<Op> {
    let mut op = Op::from_call(call.0.as_str(), call.1.map(Utf8Text::into_string), call.2.map(Utf8Text::into_bytes), call.3)?;
    match &mut op {
      Op::Write(..) | Op::SessionsOf(_) | Op::RevokeUser(..) | Op::Rotate(..) if !self.users => {
        return Err(StoreError::new(
          Code::InvalidOption,
          "this store has no per-user sessions yet (sessionsOf, revokeUser, rotate): memory stores have them",
        ))
      }
      // The codec binds a session to its id: a rotated one is re-encoded.
      Op::Rotate(_, _, recode) if self.codec.is_active() => {
        let codec = self.codec.clone();
        *recode = Some(Recode(Arc::new(move |old, new, v| codec.encode(new, codec.decode(old, v)?))));
      }
      _ => {}
    }
    if let Some((id, v)) = op.value_mut() {
      self.limits.check(v)?;
      if encode {
        *v = self.codec.encode(id, std::mem::take(v))?;
      }
    }
    Ok(op)
  }

  /// The stored session as text, or `None` (reported) when it cannot be
  /// decoded: tampered, wrong key, not UTF-8.
  pub fn decode(&self, id: &str, stored: Vec<u8>) -> Option<String> {
    let r = self
      .codec
      .decode(id, stored)
      .and_then(|b| String::from_utf8(b).map_err(|_| StoreError::new(Code::Corrupt, "stored session is not UTF-8 text")));
    match r {
      Ok(t) => Some(t),
      Err(e) => {
        if let Some(rep) = &self.report {
          rep(StoreError::new(e.code, format!("session {id:?}: {}", e.message)));
        }
        None
      }
    }
  }
}

/// Native memory V8 is told each store holds (its maps, threadsafe
/// functions, threads' buffers), freed when the JS object is collected.
/// Without it V8 does not know what a store costs, and a process that
/// creates and closes many stores (tests, per-tenant stores) grows until
/// a GC happens to run.
pub(crate) const NATIVE_COST: usize = 16 * 1024;

fn charged<T>(store: T) -> External<T> {
  External::new_with_size_hint(store, NATIVE_COST)
}

fn reporter_of(on_report: Option<Function<'_, JsReply, ()>>) -> Result<Option<Report>> {
  on_report.map(async_store::reporter).transpose().map_err(|e| StoreError::new(Code::Internal, e.reason.clone()))
}

/// Every error code and the JS class of its errors (`lib/errors.js`).
#[napi(catch_unwind, ts_return_type = "Record<string, 'Error' | 'TypeError' | 'RangeError'>")]
pub fn error_codes() -> napi::Result<std::collections::HashMap<String, String>> {
  Ok(Code::ALL.iter().map(|c| (c.as_str().to_string(), c.class().to_string())).collect())
}

/// The addon's own version (Cargo.toml), to tell which binary runs.
#[napi]
pub fn addon_version() -> String {
  format!("{}{}", env!("CARGO_PKG_VERSION"), if cfg!(debug_assertions) { " (debug build)" } else { "" })
}

/// Checks that session text given as a string (approuter passes JSON text)
/// is exactly one JSON value, so nothing else reaches a store (in
/// sessions.json it would be spliced into the file as it is). Validated
/// without building anything, at any depth.
#[napi(catch_unwind)]
pub fn check_json(#[napi(ts_arg_type = "string")] text: Utf8Text) -> napi::Result<(), Code> {
  serde_json::from_slice::<serde::de::IgnoredAny>(text.as_str().as_bytes())
    .map(|_| ())
    .map_err(|e| napi::Error::new(Code::NotSerializable, format!("session text is not one JSON value: {e}")))
}

/// The codec on its own (benchmarks, and tools that inspect stored values):
/// the same pipeline every store applies.
#[napi]
pub struct SessionCodec {
  codec: Codec,
}

#[napi]
impl SessionCodec {
  /// `secrets`: newest first (each at least 64 characters); `compress`: zstd.
  #[napi(constructor, catch_unwind)]
  pub fn new(secrets: Option<Vec<String>>, compress: Option<bool>) -> napi::Result<Self, Code> {
    Ok(SessionCodec { codec: Codec::new(&secrets.unwrap_or_default(), compress.unwrap_or(false))? })
  }

  /// The bytes a store keeps for this session text under this id.
  #[napi(catch_unwind)]
  pub fn encode(&self, id: String, text: String) -> napi::Result<napi::bindgen_prelude::Buffer, Code> {
    Ok(self.codec.encode(&id, text.into_bytes())?.into())
  }

  /// The session text back from stored bytes (`ERR_CORRUPT_DATA` when they
  /// cannot be decoded with these secrets).
  #[napi(catch_unwind)]
  pub fn decode(&self, id: String, stored: napi::bindgen_prelude::Buffer) -> napi::Result<String, Code> {
    let bytes = self.codec.decode(&id, stored.to_vec())?;
    Ok(String::from_utf8(bytes).map_err(|_| StoreError::new(Code::Corrupt, "not UTF-8 text"))?)
  }
}

/// An in-process store bounded by `maxEntries`/`maxBytes` (LRU eviction),
/// with expired sessions reclaimed in the background.
#[napi(catch_unwind, ts_args_type = "options?: MemoryStoreOptions | undefined | null, onReport?: (err: Error) => void")]
pub fn memory_store(
  options: Option<MemoryStoreOptions>,
  on_report: Option<Function<'_, JsReply, ()>>,
) -> napi::Result<External<SyncStore>, Code> {
  let o = options.unwrap_or_default();
  let (core, rules) = Core::with_users(o.session, reporter_of(on_report)?)?;
  let backend = MemoryBackend::new(MemoryOptions {
    max_entries: o.max_entries.map(|n| n as usize),
    max_bytes: o.max_bytes.map(|n| n as usize),
    sweep_interval: Some(ms_or(o.sweep_interval_ms, SWEEP_IN_MEMORY_MS)),
    rules,
  })?;
  Ok(charged(SyncStore::new(Arc::new(backend), core)))
}

/// A store that keeps nothing (HTTP Sessions' DummyStorage).
#[napi(catch_unwind)]
pub fn dummy_store() -> napi::Result<External<SyncStore>, Code> {
  Ok(charged(SyncStore::new(Arc::new(DummyBackend), Core::with_users(None, None)?.0)))
}

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

/// A Redis store (single server, Redis Cluster or Sentinel). Replies arrive
/// through `onDone(replies)`, in the order the calls were queued.
#[napi(
  catch_unwind,
  ts_args_type = "config: RedisStoreConfig, onDone: (replies: Array<undefined | null | string | boolean | number | string[] | Error>) => void, onReport?: (err: Error) => void"
)]
pub fn redis_store(
  config: RedisStoreConfig,
  on_done: Function<'_, Vec<JsReply>, ()>,
  on_report: Option<Function<'_, JsReply, ()>>,
) -> napi::Result<External<AsyncStore>, Code> {
  let opt = |m: &str| napi::Error::new(Code::InvalidOption, m.to_string());
  let topology = match config.mode.as_str() {
    "single" | "daemon" => Topology::Single(config.urls.first().cloned().ok_or_else(|| opt("a Redis URL is needed"))?),
    "cluster" => Topology::Cluster(config.urls),
    "sentinel" => {
      Topology::Sentinel { sentinels: config.urls, master: config.master_name.ok_or_else(|| opt("sentinel mode needs the master's name"))? }
    }
    m => return Err(opt(&format!("unknown Redis mode {m:?}"))),
  };
  let client_tls = match (config.tls_cert, config.tls_key) {
    (Some(cert), Some(key)) => Some(redis::ClientTlsConfig { client_cert: cert.into_bytes(), client_key: key.into_bytes() }),
    (None, None) => None,
    _ => return Err(opt("a TLS client certificate needs its key, and the key its certificate")),
  };
  let tls_certs = (config.tls_ca.is_some() || client_tls.is_some())
    .then(|| redis::TlsCertificates { client_tls, root_cert: config.tls_ca.map(String::into_bytes) });
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
  };
  let core = Core::new(config.session, reporter_of(on_report)?)?;
  let spin = config.spin_micros.map_or(async_store::DEFAULT_SPIN, |us| Duration::from_micros(us as u64));
  async_store::start(Arc::new(RedisBackend::new(cfg)?), on_done, core, spin, async_store::Runs::Shared).map(charged)
}

/// A Redis store (one server, or rs-store's session daemon) whose
/// connection is a socket on the JS thread, driven by `lib/redis-wire.js`
/// through `opened`/`pack`/`feed`/`abort` (see `engine::wire`). The URL
/// gives the credentials and database (`username`, `password`, `db` win).
#[napi(catch_unwind, ts_args_type = "config: RedisStoreConfig, onReport?: (err: Error) => void")]
pub fn redis_wire_store(
  config: RedisStoreConfig,
  on_report: Option<Function<'_, JsReply, ()>>,
) -> napi::Result<External<AsyncStore>, Code> {
  use redis::IntoConnectionInfo;
  let url = config.urls.first().ok_or_else(|| napi::Error::new(Code::InvalidOption, "a Redis URL is needed".to_string()))?;
  let info = url.as_str().into_connection_info().map_err(|e| napi::Error::new(Code::InvalidOption, format!("Redis URL {url:?}: {e}")))?;
  let settings = info.redis_settings();
  let address = match info.addr() {
    redis::ConnectionAddr::Unix(p) => p.display().to_string(),
    a => a.to_string().trim_start_matches("rediss://").trim_start_matches("redis://").to_string(),
  };
  let wire = crate::engine::wire::Wire::new(
    crate::backend::redis::Commands { prefix: config.prefix, daemon: config.mode == "daemon" },
    address,
    config.username.or_else(|| settings.username().map(str::to_string)),
    config.password.or_else(|| settings.password().map(str::to_string)),
    config.db.map(i64::from).or(Some(settings.db())),
  );
  let core = Core::new(config.session, reporter_of(on_report)?)?;
  Ok(charged(async_store::wire(wire, core)))
}

/// Options of the file store (one file per session).
#[napi(object)]
pub struct FileStoreConfig {
  /// The directory (created with mode 0700 when missing).
  pub dir: String,
  /// fsync the file and the directory on every write (default false).
  pub durable: Option<bool>,
  /// Answer reads on the JS thread when the file is in the kernel's caches,
  /// never waiting on the disk (default true; Linux 5.12+).
  pub fast_reads: Option<bool>,
  /// How often expired files are deleted (default 60000 ms).
  pub sweep_interval_ms: Option<u32>,
  /// Bytes of recently read sessions kept in memory, served while no
  /// process has changed their files (default 32 MiB; 0: off).
  pub read_cache_bytes: Option<u32>,
  /// Session size limit and codec.
  pub session: Option<SessionOptions>,
}

/// Default of `FileStoreConfig::read_cache_bytes`.
pub const READ_CACHE_BYTES: usize = 32 << 20;

/// A file store. Replies arrive through `onDone(replies)` in call order;
/// problems found in the directory (corrupt or foreign files) through
/// `onReport(error)`.
#[napi(
  catch_unwind,
  ts_args_type = "config: FileStoreConfig, onDone: (replies: Array<undefined | null | string | boolean | number | string[] | Error>) => void, onReport: (err: Error) => void"
)]
pub fn file_store(
  config: FileStoreConfig,
  on_done: Function<'_, Vec<JsReply>, ()>,
  on_report: Function<'_, JsReply, ()>,
) -> napi::Result<External<AsyncStore>, Code> {
  let report = async_store::reporter(on_report)?;
  let backend = FileBackend::new(FileOptions {
    dir: config.dir.into(),
    fast_reads: config.fast_reads.unwrap_or(true),
    durable: config.durable.unwrap_or(false),
    sweep_interval: Some(ms_or(config.sweep_interval_ms, SWEEP_STORED_MS)),
    report: Some(report.clone()),
    read_cache_bytes: config.read_cache_bytes.map_or(READ_CACHE_BYTES, |b| b as usize),
    inline_small_batches: true,
  })?;
  let core = Core::new(config.session, Some(report))?;
  // Its own thread, spinning as Redis's dispatcher does: a small batch runs
  // right on a dispatcher that is awake instead of hopping to the blocking
  // pool and back (about half the time of a set at one call in flight).
  async_store::start(Arc::new(backend), on_done, core, async_store::DEFAULT_SPIN, async_store::Runs::OwnThread("rs-store-file"))
    .map(charged)
}

/// Options of Synchro's single-file session store.
#[napi(object)]
pub struct SnapshotStoreConfig {
  /// The JSON file, e.g. `sessions.json` (its directory must exist).
  pub session_state_file: String,
  /// Lifetime given to loaded sessions with no recorded expiry (ms).
  pub default_ttl_ms: Option<f64>,
  /// How long a burst of changes is gathered into one write (default 50 ms).
  pub coalesce_ms: Option<u32>,
  pub max_entries: Option<u32>,
  pub max_bytes: Option<f64>,
  /// Session size limit and codec.
  pub session: Option<SessionOptions>,
  pub sweep_interval_ms: Option<u32>,
}

/// Synchro's FileSessionStore: sessions in memory, persisted to one JSON file.
#[napi(catch_unwind, ts_args_type = "config: SnapshotStoreConfig, onReport: (err: Error) => void")]
pub fn snapshot_store(config: SnapshotStoreConfig, on_report: Function<'_, JsReply, ()>) -> napi::Result<External<SyncStore>, Code> {
  let report = async_store::reporter(on_report)?;
  let core = Core::new(config.session, Some(report.clone()))?;
  let backend = SnapshotBackend::new(SnapshotOptions {
    binary: core.codec.is_active(),
    file: config.session_state_file.into(),
    memory: MemoryOptions {
      max_entries: config.max_entries.map(|n| n as usize),
      max_bytes: config.max_bytes.map(|n| n as usize),
      sweep_interval: Some(ms_or(config.sweep_interval_ms, SWEEP_IN_MEMORY_MS)),
      // sessions.json keeps no user index on disk yet: refused by Core::new.
      rules: UserRules::default(),
    },
    default_ttl: config.default_ttl_ms.filter(|t| t.is_finite() && *t >= 0.0).map(|t| Duration::from_millis(t as u64)),
    coalesce: Duration::from_millis(config.coalesce_ms.unwrap_or(50) as u64),
    report: Some(report),
  })?;
  Ok(charged(SyncStore::new(Arc::new(backend), core)))
}
