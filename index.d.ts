// Hand-written types of the public entry (index.js). The native layer's
// types are generated from the Rust doc comments into native/index.d.ts.

/** Error codes carried in `error.code` by every error rs-store produces. */
export type StoreErrorCode =
  | 'ERR_INVALID_ID'
  | 'ERR_INVALID_TIMEOUT'
  | 'ERR_INVALID_OPTION'
  | 'ERR_NOT_SERIALIZABLE'
  | 'ERR_SESSION_TOO_LARGE'
  | 'ERR_STORE_CLOSED'
  | 'ERR_STORE_UNAVAILABLE'
  | 'ERR_STORE_AUTH'
  | 'ERR_STORE_READONLY'
  | 'ERR_CORRUPT_DATA'
  | 'ERR_STORE_IO'
  | 'ERR_LOCK_TIMEOUT'
  | 'ERR_LOCK_LOST'
  | 'ERR_STORE_IN_USE'
  | 'ERR_INVALID_PATH'
  | 'ERR_NOT_FOUND'
  | 'ERR_ALREADY_EXISTS'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INTERNAL'

export interface StoreOptions {
  /** Unit of every timeout passed to set/update/resetTimer and of defaultTtl. Default 'ms' (simpleS). */
  timeoutUnit?: 'ms' | 's' | 'min'
  /** Lifetime used when a call gives no timeout, in timeoutUnit. Default: one day. */
  defaultTtl?: number
  /** Largest serialized session accepted, in bytes. Default 1 MiB. */
  maxSessionBytes?: number
  /** Encryption secret (at least 64 characters). */
  secret?: string
  /** Secrets for rotation: the first encrypts, all decrypt. */
  secrets?: string[]
  /** Compress sessions with zstd when it pays. */
  compress?: boolean
  /** Problems that answer no call (a session that fails to decrypt, a corrupt file). Default: console.warn. */
  onError?: (err: Error & { code: StoreErrorCode }) => void
  /** Take locks from another store (e.g. `daemon(lockPort)` for a `--lock` daemon) instead of this one's. */
  lockManager?: LockingStore
  /**
   * Per-user sessions (memory and sessions.json stores, Redis on one server or through Sentinel; see the README, "Per-user sessions"):
   * whose a session is, read from the session object at every
   * set/add/replace; `undefined` is anonymous.
   */
  userOf?: (session: Record<string, any>) => string | undefined
  /** A write that would give a user more live sessions removes the user's least recently written ones. */
  maxSessionsPerUser?: number
  /** Absolute lifetime counted from a session's first write, in timeoutUnit: no write or update extends a session past it. */
  maxLifetime?: number
}

/** One of a user's sessions, as `sessionsOf` lists them. */
export interface UserSession {
  id: string
  session: Record<string, any>
  /** Seconds left, as `ttl()`. */
  ttl: number
}

/** Client of `rs-store-daemon` (see docs/daemon.md). */
export interface DaemonOptions extends StoreOptions {
  /** TCP port on 127.0.0.1. */
  port?: number
  /** UNIX socket path (instead of a port). */
  socket?: string
  /** Key prefix inside the daemon. Default ''. */
  prefix?: string
  /** Default 5000. */
  connectTimeoutMs?: number
  /** Every call settles within this (ERR_STORE_UNAVAILABLE). Default 5000. */
  commandTimeoutMs?: number
}

export interface MemoryOptions extends StoreOptions {
  /** Most sessions kept; least recently used are evicted beyond it. */
  maxEntries?: number
  /** Most bytes kept: ids + serialized sessions + 96 bytes per entry. */
  maxBytes?: number
  /** How often expired sessions are reclaimed in the background. Default 1000 ms. */
  sweepIntervalMs?: number
}

/** Session data: an object (serialized with JSON.stringify at call time) or JSON text. */
export type SessionInput = object | string

/**
 * The store shape shared by every backend. All methods are own properties
 * that work detached, and all return native Promises.
 */
export interface Store {
  /** The session as a fresh plain object, or null when missing or expired. */
  get(id: string): Promise<Record<string, any> | null>
  /** Stores the session for `timeout` (in timeoutUnit; default defaultTtl). */
  set(id: string, session: SessionInput, timeout?: number): Promise<void>
  /**
   * Stores `session` only when no live session has `id` (Redis `SET … NX`):
   * true when written, false when one was there. Atomic on memory, Redis,
   * the daemon and object storage; on the file store among adds of every
   * process (a plain set is not held back).
   */
  add(id: string, session: SessionInput, timeout?: number): Promise<boolean>
  /**
   * Stores `session` only while a live session has `id` (Redis `SET … XX`):
   * true when written. A session removed meanwhile is never created again.
   */
  replace(id: string, session: SessionInput, timeout?: number): Promise<boolean>
  /** Removes the session; true when one was removed. */
  remove(id: string): Promise<boolean>
  /** Sliding expiry; never recreates a removed session. True when found. */
  update(id: string, timeout?: number): Promise<boolean>
  /** approuter's name for remove. */
  destroy(id: string): Promise<boolean>
  /** approuter's name for update. */
  resetTimer(id: string, timeout?: number): Promise<boolean>
  /** Seconds left, Redis TTL style: -2 missing, -1 no expiry. */
  ttl(id: string): Promise<number>
  exists(id: string): Promise<boolean>
  /** Number of live sessions. */
  length(): Promise<number>
  /** Removes every session; resolves how many there were. */
  clear(): Promise<number>
  /** Ids of every live session. */
  ids(): Promise<string[]>
  /** Every live session. */
  all(): Promise<Array<Record<string, any>>>
  /** Every live session with its id. */
  entries(): Promise<Array<{ id: string; session: Record<string, any> }>>
  /** A user's live sessions, least recently written first (needs the store option userOf). */
  sessionsOf(user: string): Promise<UserSession[]>
  /** Removes every session of `user` but the ids in `except`; resolves how many were removed (needs userOf). */
  revokeUser(user: string, options?: { except?: string[] }): Promise<number>
  /** Moves a live session to a free id (data, ttl, user, absolute end) at once; false when `oldId` has none or `newId` is taken. */
  rotate(oldId: string, newId: string): Promise<boolean>
  /**
   * A round trip to the backend (Redis PING, a query of the PostgreSQL table,
   * a look at the directory or bucket): resolves the ms it took; rejects with
   * the coded error a call would get (ERR_STORE_UNAVAILABLE, …).
   */
  ping(): Promise<number>
  /** Stops background work; later calls reject with ERR_STORE_CLOSED. */
  close(): Promise<void>
  /** This store's counters now (docs/observability.md). */
  stats(): StoreStats
}

/** What `store.stats()` answers (docs/observability.md says what each field means). */
export interface StoreStats {
  /** memory, dummy, file, sessions.json, redis, daemon, object, memoized, … */
  store: string
  /** Where a network store connects: host:port or a socket path (Cluster, Sentinel: the seeds, comma-separated). */
  server?: string
  /** Calls made, per method (aliases count as their method: destroy as remove, resetTimer as update). */
  calls: Record<string, number>
  /** Failed calls, per error code. */
  errors: Partial<Record<StoreErrorCode, number>>
  /** Calls made and not yet settled. */
  inFlight: number
  /** Timed calls per method: every call of an I/O store, one in 16 of an in-process store. */
  latency: Record<string, { count: number; p50Ms: number; p99Ms: number }>
  /** Stores with locks: locks taken, taken after waiting, waits that timed out, locks lost. */
  locks?: { acquired: number; waited: number; timeouts: number; lost: number }
  /** Redis (one server, the JS socket) and the daemon: connections opened, connect attempts failed, connections lost under calls. */
  connections?: { opened: number; failed: number; lost: number }
  /** memory and sessions.json: entries held (expired ones until swept), their bytes (as maxBytes counts), live sessions evicted by maxEntries/maxBytes. */
  memory?: { entries: number; bytes: number; evictions: number }
  /** file store: gets answered from its read cache or not; memoized: calls answered from its cache, what it holds. */
  cache?: { hits: number; misses: number; entries?: number; bytes?: number }
}

export interface Lock {
  id: string
  released: boolean
  /** True once a renewal found the lock gone or taken (the backend restarted, or it outlived ttlMs unrenewed). */
  lost: boolean
  /** Aborted with an ERR_LOCK_LOST error when the lock is lost (the store's onError hears of it too). */
  signal: AbortSignal
  release(): Promise<void>
}

export interface LockOptions {
  /** How long the lock lives without renewal (it is renewed while held). Default 30000. */
  ttlMs?: number
  /** How long to wait for it before ERR_LOCK_TIMEOUT. Default 10000. */
  waitMs?: number
}

/** Stores with a lock manager (memory, file, Redis, dummy). */
export interface LockingStore extends Store {
  lock(id: string, options?: LockOptions): Promise<Lock>
  withLock<T>(id: string, fn: (lock: Lock) => Promise<T> | T, options?: LockOptions): Promise<T>
  /** HTTP Sessions' StorageInterface: a bare id means lock, operate, release. */
  read(idOrLock: string | Lock): Promise<Record<string, any> | null>
  write(idOrLock: string | Lock, data: SessionInput, expiresAt?: number, release?: boolean): Promise<void>
  purge(idOrLock: string | Lock): Promise<void>
}

export interface RedisNode {
  host: string
  port?: number
}

export interface RedisOptions extends StoreOptions {
  url?: string
  host?: string
  port?: number
  /** UNIX socket path. */
  path?: string
  username?: string
  password?: string
  db?: number
  /**
   * TLS (`rediss://`; for Sentinel, to the master): `true` trusts the public
   * roots; `{ ca }` a private CA instead; `cert` + `key` add mutual TLS. PEM
   * strings or Buffers. Certificates are always verified.
   */
  tls?: boolean | { ca?: string | Buffer | Array<string | Buffer>; cert?: string | Buffer; key?: string | Buffer }
  /** Key prefix. Default 'sess:'. */
  prefix?: string
  connectTimeoutMs?: number
  /** Every call rejects with ERR_STORE_UNAVAILABLE within this. Default 5000. */
  commandTimeoutMs?: number
  /** Redis Cluster seed nodes. */
  nodes?: Array<string | RedisNode>
  /** Sentinels, with `name` the monitored master. */
  sentinels?: Array<string | RedisNode>
  name?: string
  /** I/O thread spin while lightly loaded, µs. Default 100; 0 = never. */
  spinMicros?: number
}

export interface PostgresOptions extends StoreOptions {
  /** `postgres://user:pass@host:port/db?sslmode=require`, or libpq `key=value` settings. */
  url?: string
  /** connect-pg-simple's / node-postgres's name of `url`. */
  conString?: string
  connectionString?: string
  /** A host name, or the directory of the server's unix socket. Default PGHOST, else localhost. */
  host?: string
  port?: number
  user?: string
  username?: string
  password?: string
  database?: string
  /** TLS with verified certificates: `true` trusts the public roots; `{ ca }` a private CA; `cert` + `key` mutual TLS. */
  tls?: boolean | { ca?: string | Buffer | Array<string | Buffer>; cert?: string | Buffer; key?: string | Buffer }
  /** node-postgres's name of `tls`. */
  ssl?: boolean | { ca?: string | Buffer | Array<string | Buffer>; cert?: string | Buffer; key?: string | Buffer }
  /** Default 'public'. */
  schema?: string
  schemaName?: string
  /** Default 'session' (connect-pg-simple's). */
  table?: string
  tableName?: string
  /** Create the table (and its lock table) when missing. Default true. */
  createTable?: boolean
  createTableIfMissing?: boolean
  /** Connections kept. Default 4. */
  poolSize?: number
  connectTimeoutMs?: number
  /** Every call rejects with ERR_STORE_UNAVAILABLE within this. Default 5000. */
  commandTimeoutMs?: number
  /** How often expired rows are deleted (one process of the fleet at a time). Default 60000; 0: never by this process. */
  sweepIntervalMs?: number
  /** connect-pg-simple's name, in seconds; `false`: never. */
  pruneSessionInterval?: number | false
}

export interface FileOptions extends StoreOptions {
  /** One file per session in this directory (default ./sessions). */
  dir?: string
  /** fsync the file and the directory on every write. Default false. */
  durable?: boolean
  /** Read on the JS thread when the kernel serves the file from its caches (never waits on the disk). Default true. */
  fastReads?: boolean
  /** Bytes of recently read sessions kept in memory, served while no process has changed their files (see README "File stores"). Default 32 MiB; 0: off. */
  readCacheBytes?: number
  sweepIntervalMs?: number
  /** Synchro's single JSON file of sessions instead of `dir`. */
  sessionStateFile?: string
  coalesceMs?: number
}

/** Object storage: a URL, a directory, or Synchro's PkgCloud settings. */
export type ObjectStorageConfig =
  | string
  | {
      url?: string
      options?: Record<string, string>
      directory?: string
      provider?: 'amazon' | 'azure' | 'google'
      keyId?: string
      key?: string
      region?: string
      storageAccount?: string
      storageAccessKey?: string
      keyFilename?: string
      credentials?: string | object
      container?: string
      endpoint?: string
    }

export interface AppModuleStore {
  getAppDefinition(): Promise<Record<string, any> | null>
  listModules(): Promise<string[]>
  getModuleSource(path: string): Promise<string | null>
  putModuleSource(path: string, content: string): Promise<void>
  removeModuleSource(path: string): Promise<boolean>
}

export interface ModuleStore {
  getStoreFile(name: string): Promise<string | null>
  putStoreFile(name: string, content: string): Promise<void>
  getAppContainers(): Promise<string[]>
  createAppContainer(name: string): Promise<void>
  deleteAppContainer(name: string): Promise<void>
  getAppModuleStore(name: string): AppModuleStore
  watch(cb: (eventType: string, path: string) => void): void
  unwatch(): void
}

/** In-process store, LRU-bounded, expired sessions swept in the background. */
export function memory(options?: MemoryOptions): LockingStore
/** Stores nothing (tests); grants every lock. */
export function dummy(options?: StoreOptions): LockingStore
/** Redis: single server, Cluster (`nodes`) or Sentinel (`sentinels` + `name`): a URL (`redis://…`, `rediss://…`), a port on 127.0.0.1, or options. */
export function redis(config: string | number | RedisOptions): LockingStore
/** Client of the session daemon (`npx rs-store-daemon <port | socket> [dir]`): a port, a socket path or options. */
export function daemon(config: number | string | DaemonOptions): LockingStore
/** PostgreSQL on connect-pg-simple's table (made when missing). */
export function postgres(config?: string | PostgresOptions): LockingStore
/** One file per session (`dir`), or Synchro's `sessionStateFile` (adds `flush()`). */
export function file(options?: FileOptions): LockingStore & { flush?: () => Promise<void> }
/** Sessions in object storage (S3, Azure Blob, GCS, a directory). */
export function objectStore(config: ObjectStorageConfig & StoreOptions & { prefix?: string; sweepIntervalMs?: number; commandTimeoutMs?: number }): Store
/** Synchro's module store. */
export function moduleStore(config: ObjectStorageConfig & { commandTimeoutMs?: number }): ModuleStore
/** HTTP Sessions' MemoizedStorage over a store with locks. */
export function memoized(
  inner: LockingStore,
  options?: { maxEntries?: number; maxBytes?: number; lockTtlMs?: number; waitMs?: number },
): Pick<Store, 'get' | 'set' | 'remove' | 'update' | 'ttl' | 'exists' | 'ping' | 'close' | 'stats'> & { cached(): number }
/** Synchro-style layered configuration: config.json + SYNCHRO__/RS_STORE__ env. */
export function fromConfig(options?: { configFile?: string; env?: Record<string, string | undefined> }): {
  config: Record<string, any>
  sessionStore: Store
  moduleStore: ModuleStore
}
/** SAP approuter's entry (externalStoreFilePath = 'rs-store'). */
export function getStore(extSessionMgt: Record<string, any>): Record<string, (...args: any[]) => any>
/** Every error code rs-store uses. */
export const codes: StoreErrorCode[]

/** What runs, for bug reports. */
export const version: {
  /** This package's version. */
  package: string
  /** The native addon's version ("(debug build)" appended for one). */
  addon: string
  /** `local build (native/<file>)` or the platform package `<name>@<version>`. */
  binary: string
  /** linux-x64-gnu, linux-arm64-musl, darwin-arm64, win32-x64-msvc, … */
  platform: string
}
