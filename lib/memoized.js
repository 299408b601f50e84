'use strict'
// HTTP Sessions' MemoizedStorage: an in-memory cache in front of any store
// (read-through, write-through), bounded by maxEntries / maxBytes (least
// recently used evicted), that holds the inner store's lock while a session is
// cached, so another process cannot change it underneath. The lock is
// renewed while held and released on eviction, remove and close().
// Expiry is an absolute time, checked on read: no per-session timer, so a
// 30-day (or 10-year) expiry works (the original's setTimeout overflows at
// 24.8 days and purges at once).
//
// Calls on one id run one after the other (in call order), so concurrent
// calls of this process share one cached entry and its lock instead of
// waiting for a lock their own process holds.
//
// The store shape of every rs-store store, except locks (lock, withLock,
// read, write, purge): the cache itself holds the inner store's locks.
// Whole-store calls (length, ids, all, entries, clear) go to the inner store.
const { codedError, invalidType, fromNative } = require('./errors')
const options = require('./options')
const { serialize, parse, checkId, readable, noCallback, TIMEOUT_UNIT_MS } = require('./store')
const { Meter, METER, method } = require('./observe')

const { MAX_ID_BYTES } = require('./native')

function memoized(inner, opts) {
  if (!inner || typeof inner.lock !== 'function' || typeof inner.get !== 'function') {
    throw invalidType('ERR_INVALID_OPTION', 'memoized(inner) needs a store with locks (memory, file, redis)')
  }
  const o = options.only(options.object(opts, 'memoized'), 'memoized', ['maxEntries', 'maxBytes', 'lockTtlMs', 'waitMs'])
  const maxEntries = options.number(o, 'maxEntries', { min: 1, integer: true, def: 10_000 })
  const maxBytes = options.number(o, 'maxBytes', { min: 1, def: 64 * 1024 * 1024 })
  const lockTtlMs = options.number(o, 'lockTtlMs', { min: 1, def: 30_000 })
  const waitMs = options.number(o, 'waitMs', { min: 0, def: 10_000 })
  const cache = new Map() // id → { text, expiresAt, lock }, in LRU order (oldest first)
  const chains = new Map() // id → the last call queued on it
  let bytes = 0
  let closed = false
  let hits = 0 // calls answered from the cache, for stats()
  let misses = 0

  /** Runs `fn` after every earlier call on `id` (in call order). */
  const serial = (id, fn) => {
    const prev = chains.get(id)
    const run = prev ? prev.then(fn, fn) : fn()
    const tail = run.catch(() => {})
    chains.set(id, tail)
    tail.then(() => {
      if (chains.get(id) === tail) chains.delete(id)
    })
    return run
  }
  /** A session id a write can use (reads of any other answer "missing"). */
  const writable = (id) => {
    checkId(id)
    if (id === '' || Buffer.byteLength(id) > MAX_ID_BYTES) throw codedError('ERR_INVALID_ID', `session id must be 1 to ${MAX_ID_BYTES} bytes`)
  }
  const nameable = (id) => readable(id) && id !== '' && Buffer.byteLength(id) <= MAX_ID_BYTES
  const open = () => {
    if (closed) throw codedError('ERR_STORE_CLOSED', 'the store is closed')
  }

  const drop = async (id) => {
    const e = cache.get(id)
    if (!e) return
    cache.delete(id)
    bytes -= e.text === null ? 0 : e.text.length
    await e.lock.release().catch(() => {})
  }
  const evict = async () => {
    while (cache.size > maxEntries || bytes > maxBytes) await drop(cache.keys().next().value)
  }
  const touchLru = (id, e) => {
    cache.delete(id)
    cache.set(id, e)
  }
  const expiry = (ttlS) => (ttlS >= 0 ? Date.now() + ttlS * 1000 : Infinity)
  /** The cached entry of `id`, loading it (and taking the inner lock) on a miss. */
  const entry = async (id) => {
    open()
    let e = cache.get(id)
    if (e) {
      hits++
      touchLru(id, e)
      return e
    }
    misses++
    const lock = await inner.lock(id, { ttlMs: lockTtlMs, waitMs })
    try {
      const [session, ttlS] = await Promise.all([inner.get(id), inner.ttl(id)])
      e = { text: session === null ? null : JSON.stringify(session), expiresAt: expiry(ttlS), lock }
    } catch (err) {
      await lock.release().catch(() => {})
      throw err
    }
    cache.set(id, e)
    bytes += e.text === null ? 0 : e.text.length
    await evict()
    return e
  }
  const live = (e) => e.text !== null && e.expiresAt > Date.now()
  /** Writes through to the inner store (holding its lock), then caches what it holds. */
  const write = async (id, text, put) => {
    const e = await entry(id)
    const written = await put(text)
    const ttlS = await inner.ttl(id)
    bytes -= e.text === null ? 0 : e.text.length
    // Gone (-2), or refused by add/replace (what is stored stays), or written.
    e.text = ttlS === -2 ? null : written === false ? e.text : text
    bytes += e.text === null ? 0 : e.text.length
    e.expiresAt = expiry(ttlS)
    await evict()
    return written
  }
  /** A call on one id: checked, then queued behind the earlier calls on it. */
  const on = (id, isRead, fn, missing, extra) => {
    try {
      noCallback(extra)
      open()
      if (isRead) {
        if (!nameable(id)) return Promise.resolve(missing)
      } else writable(id)
      return serial(id, fn)
    } catch (e) {
      return Promise.reject(fromNative(e))
    }
  }
  const whole = (fn) => {
    try {
      open()
      return Promise.resolve(fn())
    } catch (e) {
      return Promise.reject(fromNative(e))
    }
  }

  const serialized = (session, then) => {
    let text
    try {
      text = serialize(session)
    } catch (e) {
      return Promise.reject(e)
    }
    return then(text)
  }
  const remove = (id, cb) =>
    on(
      id,
      false,
      async () => {
        await entry(id)
        const r = await inner.remove(id)
        await drop(id)
        return r
      },
      undefined,
      cb,
    )
  const update = (id, timeout) =>
    on(id, false, async () => {
      const e = await entry(id)
      const found = await inner.update(id, timeout)
      e.expiresAt = expiry(await inner.ttl(id))
      if (!found) e.text = null
      return found
    })

  const store = {
    get: (id, cb) =>
      on(
        id,
        true,
        async () => {
          const e = await entry(id)
          return live(e) ? parse(e.text) : null
        },
        null,
        cb,
      ),
    set: (id, session, timeout) => serialized(session, (text) => on(id, false, () => write(id, text, (t) => inner.set(id, t, timeout)).then(() => undefined))),
    /** Written only when no live session has `id` (decided under the held lock). */
    add: (id, session, timeout) => serialized(session, (text) => on(id, false, () => write(id, text, (t) => inner.add(id, t, timeout)))),
    /** Written only while a live session has `id`. */
    replace: (id, session, timeout) => serialized(session, (text) => on(id, false, () => write(id, text, (t) => inner.replace(id, t, timeout)))),
    remove,
    destroy: remove,
    update,
    resetTimer: update,
    ttl: (id) =>
      on(id, true, async () => {
        const e = await entry(id)
        return live(e) ? (e.expiresAt === Infinity ? -1 : Math.round((e.expiresAt - Date.now()) / 1000)) : -2
      }, -2),
    exists: (id) => on(id, true, async () => live(await entry(id)), false),
    length: () => whole(() => inner.length()),
    ids: () => whole(() => inner.ids()),
    all: () => whole(() => inner.all()),
    entries: () => whole(() => inner.entries()),
    /** The inner store's round trip (the cache answers nothing for it). */
    ping: () => whole(() => inner.ping()),
    /** Removes every session of the inner store and empties the cache (its locks released). */
    clear: () =>
      whole(async () => {
        const n = await inner.clear()
        for (const id of [...cache.keys()]) await drop(id)
        return n
      }),
    /** Sessions cached right now (held locks). */
    cached: () => cache.size,
    [TIMEOUT_UNIT_MS]: inner[TIMEOUT_UNIT_MS],
    /** Releases every held lock; the inner store stays open (its owner closes it). */
    async close() {
      closed = true
      await Promise.all([...chains.values()])
      for (const id of [...cache.keys()]) await drop(id)
    },
  }
  // Counted and traced as store 'memoized' (the inner store's calls as its own).
  const meter = new Meter('memoized', undefined)
  const wrapped = new Map()
  for (const [name, fn] of Object.entries(store)) {
    if (typeof fn !== 'function' || name === 'cached') continue
    if (!wrapped.has(fn)) wrapped.set(fn, method(meter, name, fn, (e) => Promise.reject(fromNative(e))))
    store[name] = wrapped.get(fn)
  }
  store.stats = () => meter.stats({ cache: { entries: cache.size, bytes, hits, misses } })
  store[METER] = meter
  return store
}

module.exports = { memoized }
