'use strict'
// better-auth's `secondaryStorage` over any rs-store store with locks:
//   betterAuth({ …, secondaryStorage: secondaryStorage(store) })
// What better-auth 1.7 calls (its SecondaryStorage type; methods are taken
// off the object and called unbound, so each is a closure):
// * get(key) → string | null, set(key, value, ttl?) with ttl in seconds
//   (none: the store's defaultTtl), delete(key). Values are strings, kept as
//   JSON strings so any text round-trips.
// * getAndDelete(key): atomic, for one-time tokens (verification values are
//   consumed through it): under the store's lock on the key, so of two
//   concurrent calls, in any processes, one gets the value and the other null.
// * increment(key, ttl): atomic, for rate limiting: the count after the
//   increment; a new counter lives `ttl` seconds from its creation and later
//   increments never extend it. Kept as { count, expiresAt } under the lock.
const { codedError } = require('../errors')
const { wrapped } = require('./common')

/** @param {object} store an rs-store store with locks (memory, file, redis, daemon) */
function secondaryStorage(store) {
  const timeout = wrapped(store, 'secondaryStorage')
  if (typeof store.withLock !== 'function') throw codedError('ERR_INVALID_OPTION', 'secondaryStorage: needs a store with locks (memory, file, redis, daemon) for getAndDelete and increment')
  const text = (v) => (v === null ? null : typeof v === 'string' ? v : JSON.stringify(v))
  return {
    async get(key) {
      return text(await store.get(key))
    },
    async set(key, value, ttl) {
      await store.set(key, JSON.stringify(String(value)), ttl ? timeout(ttl) : undefined)
    },
    async delete(key) {
      await store.remove(key)
    },
    getAndDelete: (key) =>
      store.withLock(key, async () => {
        const v = await store.get(key)
        if (v !== null) await store.remove(key)
        return text(v)
      }),
    increment: (key, ttl) =>
      store.withLock(key, async () => {
        const now = Date.now()
        const c = await store.get(key)
        const live = c !== null && typeof c === 'object' && c.expiresAt > now
        const next = live ? { count: c.count + 1, expiresAt: c.expiresAt } : { count: 1, expiresAt: now + ttl * 1000 }
        await store.set(key, next, timeout((next.expiresAt - now) / 1000))
        return next.count
      }),
  }
}

module.exports = { secondaryStorage }
