'use strict'
// HTTP Sessions' MemoizedStorage: an in-memory cache in front of any store
// (read-through, write-through), bounded by maxEntries / maxBytes (least
// recently used evicted), that holds the inner store's lock while a session is
// cached, so another process cannot change it underneath. The lock is
// renewed while held and released on eviction, remove and close().
// Expiry is an absolute time, checked on read: no per-session timer, so a
// 30-day (or 10-year) expiry works (the original's setTimeout overflows at
// 24.8 days and purges at once).
const { codedError, invalidType } = require('./errors')
const options = require('./options')
const { serialize, parse, checkId } = require('./store')

function memoized(inner, opts) {
  if (!inner || typeof inner.lock !== 'function' || typeof inner.get !== 'function') {
    throw invalidType('ERR_INVALID_OPTION', 'memoized(inner) needs a store with locks (memory, file, redis)')
  }
  const o = options.object(opts, 'memoized')
  const maxEntries = options.number(o, 'maxEntries', { min: 1, integer: true, def: 10_000 })
  const maxBytes = options.number(o, 'maxBytes', { min: 1, def: 64 * 1024 * 1024 })
  const lockTtlMs = options.number(o, 'lockTtlMs', { min: 1, def: 30_000 })
  const waitMs = options.number(o, 'waitMs', { min: 0, def: 10_000 })
  const cache = new Map() // id → { text, expiresAt, lock }, in LRU order (oldest first)
  let bytes = 0
  let closed = false

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
  /** The cached entry of `id`, loading it (and taking the inner lock) on a miss. */
  const entry = async (id) => {
    if (closed) throw codedError('ERR_STORE_CLOSED', 'the store is closed')
    checkId(id)
    let e = cache.get(id)
    if (e) {
      touchLru(id, e)
      return e
    }
    const lock = await inner.lock(id, { ttlMs: lockTtlMs, waitMs })
    try {
      const [session, ttlS] = await Promise.all([inner.get(id), inner.ttl(id)])
      const text = session === null ? null : JSON.stringify(session)
      e = cache.get(id) // a concurrent call may have loaded it meanwhile
      if (e) {
        await lock.release()
        return e
      }
      e = { text, expiresAt: ttlS >= 0 ? Date.now() + ttlS * 1000 : Infinity, lock }
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

  return {
    async get(id) {
      const e = await entry(id)
      return live(e) ? parse(e.text) : null
    },
    /** Writes through to the inner store (holding its lock), then caches. */
    async set(id, session, timeout) {
      const text = serialize(session)
      const e = await entry(id)
      await inner.set(id, text, timeout)
      const ttlS = await inner.ttl(id)
      bytes += text.length - (e.text === null ? 0 : e.text.length)
      e.text = ttlS === -2 ? null : text
      e.expiresAt = ttlS >= 0 ? Date.now() + ttlS * 1000 : Infinity
      await evict()
    },
    async remove(id) {
      await entry(id)
      const r = await inner.remove(id)
      await drop(id)
      return r
    },
    async update(id, timeout) {
      const e = await entry(id)
      const found = await inner.update(id, timeout)
      const ttlS = await inner.ttl(id)
      e.expiresAt = ttlS >= 0 ? Date.now() + ttlS * 1000 : Infinity
      if (!found) e.text = null
      return found
    },
    async ttl(id) {
      const e = await entry(id)
      return live(e) ? (e.expiresAt === Infinity ? -1 : Math.round((e.expiresAt - Date.now()) / 1000)) : -2
    },
    async exists(id) {
      return live(await entry(id))
    },
    /** Sessions cached right now (held locks). */
    cached: () => cache.size,
    /** Releases every held lock; the inner store stays open (its owner closes it). */
    async close() {
      closed = true
      for (const id of [...cache.keys()]) await drop(id)
    },
  }
}

module.exports = { memoized }
