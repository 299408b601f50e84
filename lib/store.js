'use strict'
// The one store shape every backend is exposed through (simpleS 0.9 +
// approuter UserCustomStore method names), built over a native engine.
//
// * Methods are own properties (closures), so they work detached:
//   `const { get } = store; get(id)` and `simples.store(store)` (which calls
//   them unbound) both work.
// * Every method returns a native Promise. Sync engines (memory, dummy) run on
//   the JS thread and return an already-resolved Promise; async engines return
//   Promises from native code. Both go through `settle`.
// * Sessions cross into Rust as JSON text (V8's JSON.stringify, at call time)
//   and come back as text parsed with JSON.parse: `get` returns a fresh plain
//   object every call, so callers can never mutate stored data.
// * Units are converted here, once: `timeoutUnit` ('ms' | 's' | 'min') for
//   set/update/resetTimer timeouts and `defaultTtl`; `ttl(id)` always answers
//   in seconds, like Redis TTL (-2 missing, -1 no expiry).
const { codedError, invalidType, fromNative, reporter } = require('./errors')
const options = require('./options')
const { locking } = require('./lock')
const native = require('./native')
const { Meter, METER, method } = require('./observe')
const { performance } = require('node:perf_hooks')

const { MAX_ID_BYTES } = native

const UNIT_MS = Object.freeze({ ms: 1, s: 1000, min: 60_000 })
/** Default lifetime when a call gives no timeout: one day (as connect-redis). */
const DEFAULT_TTL_MS = 86_400_000
/** Where a store keeps the lock engine another store may borrow (`lockManager`). */
const LOCK_ENGINE = Symbol('rs-store.lockEngine')
/**
 * Milliseconds per unit of the store's timeouts (`timeoutUnit`), for the
 * framework adapters, which compute ttls themselves.
 */
const TIMEOUT_UNIT_MS = Symbol.for('rs-store.timeoutUnitMs')

/**
 * A session id a write may use: a string without lone surrogates (two ids
 * that differ only there would be one stored key: UTF-8 cannot hold them).
 * The native layer refuses empty ids and ids over MAX_ID_BYTES.
 */
function checkId(id) {
  if (typeof id !== 'string') throw invalidType('ERR_INVALID_ID', `session id must be a string, got ${id === null ? 'null' : typeof id}`)
  if (!id.isWellFormed()) throw codedError('ERR_INVALID_ID', 'session id contains a lone UTF-16 surrogate')
}

/**
 * Type-checks a read's id; false when no session can have it, and the read
 * answers "missing" without asking the store. Ids come from cookies:
 * simpleS answers a rejected get with a 500 and then hangs the response on
 * the follow-up update, whereas "missing" makes it issue a fresh session.
 */
function readable(id) {
  if (typeof id !== 'string') throw invalidType('ERR_INVALID_ID', `session id must be a string, got ${id === null ? 'null' : typeof id}`)
  // (A UTF-16 unit is at most 3 UTF-8 bytes: short ids need no count.)
  return id !== '' && (id.length * 3 <= MAX_ID_BYTES || Buffer.byteLength(id) <= MAX_ID_BYTES) && id.isWellFormed()
}

/** rs-store's methods return Promises: a callback where a timeout (or nothing) goes is a mistake to point out. */
/** How to plug a store into a callback-style host: the adapters, by host. */
const ADAPTERS =
  "wrap it in its adapter: express-session: session({ store: new ExpressStore({ store }) }) with const { ExpressStore } = require('rs-store/express'); " +
  "@fastify/session: new FastifyStore({ store }) from require('rs-store/fastify'); simpleS 0.8.8: require('rs-store/simples-0.8')(store)"
/** The callback a misused method was given (see noCallback and makeStore's rejectNative). */
const CALLBACK = Symbol('rs-store.callback')

function noCallback(x) {
  if (typeof x === 'function') {
    const err = invalidType('ERR_INVALID_ARGUMENT', `rs-store's store methods return Promises and take no callback: this store was given to a callback-style host; ${ADAPTERS}`)
    err[CALLBACK] = x
    throw err
  }
}

function serialize(session) {
  // JSON text (approuter passes text): exactly one JSON value, checked in Rust.
  if (typeof session === 'string') {
    try {
      native.checkJson(session)
    } catch (e) {
      throw fromNative(e)
    }
    return session
  }
  if (session === null || typeof session !== 'object') {
    throw invalidType('ERR_NOT_SERIALIZABLE', `session must be an object or JSON text, got ${session === null ? 'null' : typeof session}`)
  }
  let text
  try {
    text = JSON.stringify(session)
  } catch (e) {
    throw codedError('ERR_NOT_SERIALIZABLE', `session cannot be serialized: ${e.message}`, e)
  }
  if (typeof text !== 'string') throw codedError('ERR_NOT_SERIALIZABLE', 'session serializes to nothing')
  return text
}

function parse(text) {
  if (text === null) return null
  try {
    return JSON.parse(text)
  } catch (e) {
    throw codedError('ERR_CORRUPT_DATA', `stored session is not valid JSON: ${e.message}`, e)
  }
}

const toSeconds = (ms) => (ms < 0 ? ms : Math.round(ms / 1000))

/** A user as the per-user index keeps it (a user for sessionsOf/revokeUser, or what userOf answered). */
function checkUser(user, what) {
  if (typeof user !== 'string') throw invalidType('ERR_INVALID_ARGUMENT', `${what} must be a string, got ${user === null ? 'null' : typeof user}`)
  if (user === '' || user.includes('\0') || !user.isWellFormed() || Buffer.byteLength(user) > MAX_ID_BYTES) {
    throw codedError('ERR_INVALID_ARGUMENT', `${what} must be a non-empty, well-formed string without NUL, at most ${MAX_ID_BYTES} bytes`)
  }
  return user
}

/**
 * A write of a store with `userOf`: the op (`uset`, `uadd`, `ureplace`)
 * and its text, the session's JSON, a NUL, then its user ('' anonymous),
 * read from the session object before it is serialized. JSON text never
 * holds a NUL, nor may a user.
 */
function userWrite(userOf, op, session) {
  const text = serialize(session)
  let user
  try {
    user = userOf(typeof session === 'string' ? JSON.parse(session) : session)
  } catch (e) {
    throw codedError('ERR_INVALID_ARGUMENT', `userOf threw: ${e && e.message}`, e)
  }
  return ['u' + op, text + '\0' + (user === undefined || user === null ? '' : checkUser(user, 'what userOf returns'))]
}

/**
 * A Promise for an engine result: sync engines return the value (resolved
 * here), async engines return a Promise that already applied `map` and
 * coded its errors.
 */
function settle(value) {
  return value instanceof Promise ? value : Promise.resolve(value)
}

/**
 * The engine over a sync native store (memory, dummy, sessions.json): the
 * batch engine's `call` (lib/batch.js), answered at once.
 */
function syncEngine(native, kind) {
  return {
    kind,
    sync: true,
    locks: true,
    call: (op, id, text, ms, map) => (map ? map(native.call(op, id, text, ms)) : native.call(op, id, text, ms)),
    close: () => native.close(),
    /** stats().memory of an in-memory store: { entries, bytes, evictions }. */
    counters: () => {
      const held = native.held()
      return held ? { memory: held } : {}
    },
  }
}

/** A store's units: `timeoutUnit` in ms, and `defaultTtl` in ms. */
function units(opts) {
  const unitMs = UNIT_MS[options.string(opts, 'timeoutUnit', { choices: Object.keys(UNIT_MS), def: 'ms' })]
  return { unitMs, defaultTtlMs: options.number(opts, 'defaultTtl', { min: 0, max: Infinity, def: DEFAULT_TTL_MS / unitMs }) * unitMs }
}

/**
 * Builds the public store over `engine` (a native store).
 * @param {object} engine syncEngine() or batchEngine(): call(op, id, text, ms, map), close(), locks
 * @param {object} opts validated by the caller's factory; reads timeoutUnit, defaultTtl
 */
function makeStore(engine, opts, extra = {}) {
  const { unitMs, defaultTtlMs } = units(opts)
  const report = reporter(opts.onError)
  const meter = new Meter(engine.kind, engine.server, { sync: engine.sync === true })
  if (engine.observe) engine.observe(meter)
  // A store handed to a callback-style host (session({ store: rs.redis() })
  // on fastify or simpleS 0.8.8): the host's callback gets the error, which
  // names the adapter, and so does onError, once; no rejection is left
  // unhandled to crash the process.
  let misusedOnce = false
  const rejectNative = (e) => {
    const cb = e && e[CALLBACK]
    const p = Promise.reject(fromNative(e))
    if (typeof cb !== 'function') return p
    p.catch(() => {})
    if (!misusedOnce) report(e)
    misusedOnce = true
    process.nextTick(cb, e)
    return p
  }

  function ttlMsOf(timeout) {
    if (timeout === undefined || timeout === null) return defaultTtlMs
    noCallback(timeout)
    if (typeof timeout !== 'number') throw invalidType('ERR_INVALID_TIMEOUT', `timeout must be a number, got ${typeof timeout}`)
    if (!(timeout >= 0)) throw codedError('ERR_INVALID_TIMEOUT', `timeout must be >= 0, got ${timeout}`)
    return timeout * unitMs
  }
  // With a codec, a session that no longer decodes (tampered, an old secret
  // dropped) reads as missing, so it does not exist either: exists() reads
  // and decodes it (on Redis a GET instead of an EXISTS).
  const decodes = opts.secret !== undefined || opts.secrets !== undefined || opts.compress === true
  const found = (text) => text !== null
  // Per-user sessions: writes carry their user; a store without pays nothing.
  const userOf = opts.userOf
  const write = (op, id, session, ms) => {
    if (userOf === undefined) return engine.call(op, id, serialize(session), ms)
    const [uop, text] = userWrite(userOf, op, session)
    return engine.call(uop, id, text, ms)
  }

  // The methods' bodies: each returns its answer (in-process stores), the
  // engine's Promise, or throws; `observed` (lib/observe.js) makes them
  // store methods: Promises, counted, timed and traced.
  const observed = (name, impl) => method(meter, name, impl, rejectNative)
  const get = (id, extra) => {
    noCallback(extra)
    return readable(id) ? engine.call('get', id, undefined, undefined, parse) : null
  }
  const set = (id, session, timeout) => {
    checkId(id)
    return write('set', id, session, ttlMsOf(timeout))
  }
  const add = (id, session, timeout) => {
    checkId(id)
    if (userOf === undefined) {
      const text = serialize(session)
      const ms = ttlMsOf(timeout)
      // Already expired: nothing to write (set() would remove the session).
      return ms === 0 ? false : engine.call('add', id, text, ms)
    }
    const ms = ttlMsOf(timeout)
    const [op, text] = userWrite(userOf, 'add', session)
    return ms === 0 ? false : engine.call(op, id, text, ms)
  }
  const replace = (id, session, timeout) => {
    checkId(id)
    return write('replace', id, session, ttlMsOf(timeout))
  }
  const remove = (id, extra) => {
    noCallback(extra)
    checkId(id)
    return engine.call('remove', id)
  }
  const touch = (id, timeout) => {
    checkId(id)
    return engine.call('touch', id, undefined, ttlMsOf(timeout))
  }
  const ttl = (id, extra) => {
    noCallback(extra)
    return readable(id) ? engine.call('ttl', id, undefined, undefined, toSeconds) : -2
  }
  const exists = (id, extra) => {
    noCallback(extra)
    if (!readable(id)) return false
    return engine.call(decodes ? 'get' : 'exists', id, undefined, undefined, decodes ? found : null)
  }
  // entries' reply: [id, text, id, text, …]
  const parseEntries = (flat) => {
    const out = []
    for (let i = 0; i < flat.length; i += 2) out.push({ id: flat[i], session: parse(flat[i + 1]) })
    return out
  }
  const parseAll = (flat) => {
    const out = []
    for (let i = 1; i < flat.length; i += 2) out.push(parse(flat[i]))
    return out
  }
  const pageOf = (flat) => {
    const sessions = []
    for (let i = 1; i < flat.length; i += 4) sessions.push({ id: flat[i], text: flat[i + 1], ttl: toSeconds(flat[i + 2]), bytes: flat[i + 3] })
    return { cursor: flat[0], sessions }
  }
  const scan = observed('scan', (cursor = '', count = 1000) => {
    if (typeof cursor !== 'string') throw invalidType('ERR_INVALID_ARGUMENT', 'scan(cursor, count): cursor must be a string (\'\' for the first page)')
    if (!Number.isInteger(count) || count < 1 || count > 100_000) throw codedError('ERR_INVALID_ARGUMENT', 'scan(cursor, count): count must be an integer from 1 to 100000')
    return engine.call('page', cursor, undefined, count, pageOf)
  })
  const needUsers = (what) => {
    if (userOf === undefined) throw codedError('ERR_INVALID_OPTION', `${what}() needs the store's userOf option (which user a session is)`)
  }
  // sessionsOf's reply: a page, [cursor, id, text, pttl, bytes, …]
  const userSessions = (flat) => {
    const out = []
    for (let i = 1; i < flat.length; i += 4) if (flat[i + 1] !== null) out.push({ id: flat[i], session: parse(flat[i + 1]), ttl: toSeconds(flat[i + 2]) })
    return out
  }
  const sessionsOf = observed('sessionsOf', (user, extra) => {
    noCallback(extra)
    needUsers('sessionsOf')
    return engine.call('sessionsOf', checkUser(user, 'user'), undefined, undefined, userSessions)
  })
  const revokeUser = observed('revokeUser', (user, { except = [] } = {}) => {
    noCallback(except)
    needUsers('revokeUser')
    checkUser(user, 'user')
    if (!Array.isArray(except) || !except.every((x) => typeof x === 'string')) {
      throw invalidType('ERR_INVALID_ARGUMENT', 'revokeUser(user, { except }): except must be an array of session ids')
    }
    return engine.call('revokeUser', user, JSON.stringify(except))
  })
  // A round trip to where the sessions are, in ms (3 decimals), timed from
  // the call: what a health check sees, queueing included.
  const ping = observed('ping', (extra) => {
    noCallback(extra)
    const t0 = performance.now()
    return engine.call('ping', undefined, undefined, undefined, () => Math.round((performance.now() - t0) * 1000) / 1000)
  })
  const rotate = observed('rotate', (oldId, newId, extra) => {
    noCallback(extra)
    checkId(oldId)
    checkId(newId)
    return engine.call('rotate', oldId, newId)
  })

  // Locks and HTTP Sessions' read/write/purge, where the engine has locks,
  // or from another store given as `lockManager` (e.g. a --lock daemon).
  let lockEngine = engine.locks ? engine : null
  if (opts.lockManager !== undefined) {
    lockEngine = opts.lockManager && opts.lockManager[LOCK_ENGINE]
    if (!lockEngine) throw invalidType('ERR_INVALID_OPTION', 'option lockManager must be an rs-store store with locks (e.g. rs.daemon(port), rs.redis(cfg))')
  }
  // (read/write/purge are counted as themselves, not as the get/set/remove they make.)
  const plain = (impl) => (a, b) => {
    try {
      return settle(impl(a, b))
    } catch (e) {
      return Promise.reject(fromNative(e))
    }
  }
  const { releaseAll, counts: lockCounts, ...locks } = !lockEngine
    ? {}
    : locking(lockEngine, {
        checkId,
        get: plain(get),
        setMs: (id, data, ms) => settle(write('set', id, data, ms === undefined ? defaultTtlMs : ms)),
        remove: plain(remove),
        report,
        observed,
      })
  // (lock, and the unlock and renew calls, are observed in lib/lock.js; withLock is a lock and an unlock.)
  const observedLocks = lockEngine ? { lock: locks.lock, withLock: locks.withLock, read: observed('read', locks.read), write: observed('write', locks.write), purge: observed('purge', locks.purge) } : {}

  const removeMethod = observed('remove', remove)
  const updateMethod = observed('update', touch)
  const close = observed('close', () => (releaseAll ? releaseAll().then(() => engine.close()) : engine.close()))
  const observedExtra = {}
  for (const [name, fn] of Object.entries(extra)) observedExtra[name] = observed(name, fn)

  return {
    /** Resolves the session as a fresh plain object, or null. */
    get: observed('get', get),
    /** Stores `session` (object or JSON text) for `timeout` (timeoutUnit). */
    set: observed('set', set),
    /**
     * Stores `session` only when no live session has `id` (Redis `SET … NX`);
     * resolves true when written, false when one was there. Atomic on
     * memory, Redis, the daemon and object storage; on the file store among
     * adds of every process (a plain set is not held back).
     */
    add: observed('add', add),
    /**
     * Stores `session` only while a live session has `id` (Redis `SET …
     * XX`); resolves true when written. A session removed meanwhile (a
     * logout) is never created again by a late write.
     */
    replace: observed('replace', replace),
    /** Removes the session; resolves true when one was removed. */
    remove: removeMethod,
    /** Sliding expiry (simpleS): never creates a removed session again. */
    update: updateMethod,
    /** approuter name of `remove`. */
    destroy: removeMethod,
    /** approuter name of `update`. */
    resetTimer: updateMethod,
    /** Seconds left (Redis TTL semantics): -2 missing, -1 no expiry. */
    ttl: observed('ttl', ttl),
    exists: observed('exists', exists),
    /** Number of live sessions. */
    length: observed('length', () => engine.call('len')),
    /** Removes all sessions; resolves how many were removed. */
    clear: observed('clear', () => engine.call('clear')),
    /** Ids of all live sessions. */
    ids: observed('ids', () => engine.call('keys')),
    /**
     * A page of up to `count` sessions after `cursor` (`''`: the first):
     * `{ cursor, sessions: [{ id, text, ttl, bytes }] }`, `cursor` `''` when
     * it was the last. `text` is the session's JSON (null when it does not
     * decode), `ttl` seconds (-1: no expiry), `bytes` its stored size. Walks
     * a store of any size with bounded memory (SCAN, a directory or object
     * listing); sessions changed during a walk may be seen twice or not.
     */
    scan,
    /** Every session, page by page: `for await (const s of store.walk()) …` (see scan). */
    async *walk({ count = 1000 } = {}) {
      let cursor = ''
      do {
        const page = await scan(cursor, count)
        yield* page.sessions
        cursor = page.cursor
      } while (cursor !== '')
    },
    /** A user's live sessions (store option userOf): [{ id, session, ttl }], least recently written first. */
    sessionsOf,
    /** Removes every session of `user` but those in `except`; resolves how many. */
    revokeUser,
    /** Moves a live session to a free id (data, ttl, user, absolute end); resolves true when moved. */
    rotate,
    /**
     * A round trip to the backend (a Redis PING, a PostgreSQL query of the
     * table, a look at the directory or bucket): resolves the ms it took,
     * rejects with the coded error a call would get (for health checks).
     */
    ping,
    /** All live sessions, as an array of session objects. */
    all: observed('all', () => engine.call('entries', undefined, undefined, undefined, parseAll)),
    /** All live sessions with their ids: [{ id, session }]. */
    entries: observed('entries', () => engine.call('entries', undefined, undefined, undefined, parseEntries)),
    /**
     * Releases the locks still held (ending their renewals), stops
     * background work and connections; later calls reject ERR_STORE_CLOSED.
     */
    close,
    /**
     * This store's counters, now (docs/observability.md): { store, calls,
     * errors, inFlight, latency, … what the backend counts }.
     */
    stats: () => meter.stats({ ...(lockCounts && { locks: { ...lockCounts } }), ...(engine.counters && engine.counters()) }),
    ...observedLocks,
    ...observedExtra,
    /** express-session calls store.on() at startup: say which adapter to use instead. */
    on() {
      throw invalidType('ERR_INVALID_ARGUMENT', `an rs-store store is not an express-session store (store.on was called); ${ADAPTERS}`)
    },
    ...(lockEngine && { [LOCK_ENGINE]: lockEngine }),
    [TIMEOUT_UNIT_MS]: unitMs,
    [METER]: meter,
  }
}

module.exports = { makeStore, syncEngine, serialize, parse, checkId, readable, noCallback, units, TIMEOUT_UNIT_MS }
