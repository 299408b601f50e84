'use strict'
// rs-store public entry: one factory per backend, each returning the store
// shape built in lib/store.js. The native addon (generated loader and types
// in native/, built by `npm install`) is only reached through these.
const native = require('./lib/native')
const options = require('./lib/options')
const { makeStore, syncEngine, units } = require('./lib/store')
const { batchEngine } = require('./lib/batch')
const { wireIo, endpoint } = require('./lib/redis-wire')
const { redisConfig, daemonConfig } = require('./lib/redis')
const { postgresConfig, postgresServer } = require('./lib/postgres')
const path = require('node:path')
const errors = require('./lib/errors')
const { CODES, fromNative, invalidType, settled } = errors
const { flushAtExit } = require('./lib/at-exit')

function nativeCall(fn) {
  try {
    return fn()
  } catch (e) {
    throw fromNative(e)
  }
}

/**
 * In-process store: sessions kept as serialized bytes in Rust, LRU-bounded by
 * `maxEntries`/`maxBytes`, expired sessions invisible at once and reclaimed by
 * a background sweep.
 */
function memory(opts) {
  const o = options.known(opts, 'memory')
  // No report callback: what this process encoded in memory always
  // decodes, and a callback (a threadsafe function) per store is memory
  // that Node frees only when its event loop turns.
  const engine = nativeCall(() => native.memoryStore(memoryConfig(o)))
  return makeStore(syncEngine(native.syncStore(engine), 'memory'), o)
}

/** The memory store's native options, also sessions.json's sessions in memory (src/binding/memory.rs). */
function memoryConfig(o) {
  return {
    maxEntries: options.number(o, 'maxEntries', { min: 1, max: 2 ** 32 - 1, integer: true }),
    maxBytes: options.number(o, 'maxBytes', { min: 1 }),
    sweepIntervalMs: options.number(o, 'sweepIntervalMs', { min: 1, max: 2 ** 31 - 1, integer: true }),
    session: options.session(o),
  }
}

/** Stores nothing: every get misses, every write succeeds (HTTP Sessions' DummyStorage). */
function dummy(opts) {
  return makeStore(syncEngine(native.syncStore(nativeCall(() => native.dummyStore())), 'dummy'), options.known(opts, 'dummy'))
}

/**
 * Redis store: a URL, a port on 127.0.0.1, or { url | host, port, username, password, db, tls,
 * prefix, connectTimeoutMs, commandTimeoutMs, nodes (Cluster), sentinels +
 * name (Sentinel) }; see lib/redis.js. Expiry is Redis's own (SET PX).
 */
function redis(cfg) {
  if (typeof cfg === 'number') cfg = { port: cfg } // rs.redis(6379), as rs.daemon(7411)
  const o = typeof cfg === 'string' ? {} : options.known(cfg, 'redis')
  return redisStore({ ...redisConfig(cfg), session: options.session(o) }, o)
}

/**
 * One server (or the daemon): the connection is a socket on the JS thread
 * (lib/redis-wire.js). Cluster and Sentinel: the redis crate's clients on
 * rs-store's I/O thread.
 */
function redisStore(config, o) {
  const report = reporter(o)
  const create =
    (config.mode === 'single' || config.mode === 'daemon') && !config.ioThread
      ? (onDone) => {
          const store = native.wireStore(nativeCall(() => native.redisWireStore(config, report)))
          return { native: store, io: wireIo(store, onDone, config) }
        }
      : (onDone) => native.batchStore(nativeCall(() => native.dispatchStore({ kind: 'redis', config }, onDone, report)))
  // (Cluster and Sentinel: the seed nodes or sentinels, comma-separated.)
  const server = config.urls.map((url) => endpoint({ ...config, urls: [url] }).name).join(',')
  return makeStore(batchEngine(create, { locks: true, kind: config.mode === 'daemon' ? 'daemon' : 'redis', server }), o)
}

/**
 * Client of rs-store's session daemon (`npx rs-store-daemon <port | socket>
 * [storage-dir]`, see docs/daemon.md): a port, a socket path, or { port |
 * socket, prefix, connectTimeoutMs, commandTimeoutMs, secret(s), compress,
 * onError }. Its locks are shared by every client of the daemon and end with
 * their ttl or, sooner, with the connection that holds them. For a `--lock`
 * daemon, pass this store as another store's `lockManager`.
 */
function daemon(cfg) {
  const o = typeof cfg === 'object' && cfg !== null ? options.known(cfg, 'daemon') : {}
  return redisStore({ ...daemonConfig(cfg), session: options.session(o) }, o)
}

/**
 * PostgreSQL store on connect-pg-simple's table: a URL, or { url | host,
 * port, user, password, database, ssl | tls, schema, table, createTable,
 * poolSize, connectTimeoutMs, commandTimeoutMs, sweepIntervalMs }; see
 * lib/postgres.js and src/backend/postgres/.
 */
function postgres(cfg) {
  const o = typeof cfg === 'string' ? {} : options.known(cfg, 'postgres')
  const config = { ...postgresConfig(cfg), session: options.session(o) }
  const report = reporter(o)
  return makeStore(batchEngine((onDone) => native.batchStore(nativeCall(() => native.dispatchStore({ kind: 'postgres', config }, onDone, report))), { locks: true, kind: 'postgres', server: postgresServer(config) }), o)
}

/** Where backend problems that answer no call go (a corrupt file met by a sweep). */
const reporter = (o) => errors.reporter(o.onError)

/**
 * Synchro's FileSessionStore: sessions in memory, persisted to one JSON
 * object in `sessionStateFile` (see src/backend/snapshot.rs).
 */
function sessionStateFile(o) {
  const report = reporter(o)
  const config = {
    sessionStateFile: path.resolve(options.string(o, 'sessionStateFile')),
    defaultTtlMs: units(o).defaultTtlMs,
    coalesceMs: options.number(o, 'coalesceMs', { min: 0, max: 60_000, integer: true }),
    memory: memoryConfig(o),
  }
  const native_ = native.syncStore(nativeCall(() => native.snapshotStore(config, report)))
  const flush = () => settled(native_.flush())
  // Acknowledged writes wait up to coalesceMs in memory: written at exit too.
  const forget = flushAtExit(native_, report)
  const engine = {
    ...syncEngine(native_, 'sessions.json'),
    // Write what is pending (off the JS thread), then stop.
    close: () =>
      flush().finally(() => {
        try {
          return native_.close()
        } finally {
          forget()
        }
      }),
  }
  return makeStore(engine, o, { flush })
}

/**
 * File store. With `dir`: one file per session (see src/backend/file/):
 * { dir, durable, fastReads, readCacheBytes, sweepIntervalMs, maxSessionBytes,
 * onError }. With
 * `sessionStateFile`: Synchro's single JSON file of sessions.
 */
function file(opts) {
  const o = options.object(opts, 'file')
  if (o.sessionStateFile !== undefined) return sessionStateFile(options.known(o, 'sessionStateFile'))
  options.known(o, 'file')
  const config = {
    dir: path.resolve(options.string(o, 'dir', { def: 'sessions' })),
    durable: o.durable === undefined ? undefined : Boolean(o.durable),
    fastReads: options.boolean(o, 'fastReads'),
    sweepIntervalMs: options.number(o, 'sweepIntervalMs', { min: 1, max: 2 ** 31 - 1, integer: true }),
    readCacheBytes: options.number(o, 'readCacheBytes', { min: 0, max: 2 ** 32 - 1, integer: true }),
    session: options.session(o),
  }
  const report = reporter(o)
  const getNow = config.fastReads !== false || config.readCacheBytes !== 0
  return makeStore(batchEngine((onDone) => native.batchStore(nativeCall(() => native.dispatchStore({ kind: 'file', config }, onDone, report))), { locks: true, getNow, kind: 'file' }), o)
}

/**
 * SAP approuter entry: `EXT_SESSION_MGT.externalStoreFilePath` = 'rs-store'
 * (or this package's absolute path); see lib/approuter.js.
 */
function getStore(extSessionMgt) {
  return require('./lib/approuter').getStore(extSessionMgt)
}

/** Synchro module store (local directory, S3, Azure Blob, GCS); see lib/modules.js. */
function moduleStore(cfg) {
  return require('./lib/modules').moduleStore(cfg)
}

/**
 * Sessions in object storage (S3 and compatible, Azure Blob, GCS, a local
 * directory): the module store's settings (URL or PkgCloud-style), plus
 * { prefix ('sessions'), sweepIntervalMs, commandTimeoutMs (10000: every
 * call settles within it), maxSessionBytes, secret(s), compress, onError }. See src/backend/object/.
 */
function objectStore(cfg) {
  const { url, options: pairs } = require('./lib/modules').nativeConfig(cfg)
  const o = typeof cfg === 'string' ? {} : options.known(cfg, 'objectStore')
  const config = {
    url,
    options: pairs,
    prefix: options.string(o, 'prefix'),
    sweepIntervalMs: options.number(o, 'sweepIntervalMs', { min: 1, max: 2 ** 31 - 1, integer: true }),
    commandTimeoutMs: options.number(o, 'commandTimeoutMs', { min: 1, max: 2 ** 31 - 1, integer: true }),
    session: options.session(o),
  }
  const report = reporter(o)
  const server = require('./lib/modules').serverOf(url, pairs)
  return makeStore(batchEngine((onDone) => native.batchStore(nativeCall(() => native.dispatchStore({ kind: 'object', config }, onDone, report))), { kind: 'object', server }), o)
}

/**
 * HTTP Sessions' MemoizedStorage: a bounded cache in front of `inner` that
 * holds inner's lock while a session is cached; see lib/memoized.js.
 */
function memoized(inner, opts) {
  return require('./lib/memoized').memoized(inner, opts)
}

/** Synchro-style layered configuration (config.json + env); see lib/config.js. */
function fromConfig(opts) {
  return require('./lib/config').fromConfig(opts)
}

/**
 * What runs, for bug reports: the package's version, the addon's, which
 * binary was loaded (a local build or the platform package) and the platform.
 */
const version = Object.freeze({
  package: require('./package.json').version,
  addon: native.addonVersion(),
  binary: native.loaded.binary(),
  platform: native.loaded.platform,
})

module.exports = { memory, dummy, redis, daemon, postgres, file, objectStore, moduleStore, memoized, fromConfig, getStore, codes: Object.keys(CODES), version }
