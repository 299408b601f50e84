'use strict'
// unstorage driver over any rs-store store (Nitro/Nuxt/h3, Hono, Auth.js's
// unstorage adapter): createStorage({ driver: rsStore({ store }) }).
// unstorage serializes before the driver (its dist/index.cjs): setItem gets
// text (an object's JSON, a string as is, a number as its digits) and what
// getItem answers is parsed back by unstorage (destr), so the driver keeps
// each value as a JSON string and answers it as it was given. `ttl` is in
// seconds (setItem's option, else the driver's `ttl` option, else the
// store's defaultTtl: every rs-store entry expires). getKeys/clear walk the
// store's ids, so give the driver a store of its own (a Redis `prefix`).
// dispose() closes the store, as unstorage's own drivers close their
// connection.
const { codedError } = require('../errors')
const { wrapped, adapterOptions } = require('./common')

const DRIVER = 'rs-store'

/** @param {object} opts { store, ttl } (ttl: default seconds for items set without one) */
function rsStore(opts) {
  const o = adapterOptions(opts, 'rs-store/unstorage', ['store', 'ttl'])
  const store = o.store
  const timeout = wrapped(store, 'rs-store/unstorage')
  if (o.ttl !== undefined && !(typeof o.ttl === 'number' && o.ttl > 0)) throw codedError('ERR_INVALID_OPTION', 'rs-store/unstorage: option ttl must be a number of seconds > 0')
  const keys = async (base) => (await store.ids()).filter((k) => !base || k.startsWith(base))
  return {
    name: DRIVER,
    options: o,
    flags: { ttl: true },
    getInstance: () => store,
    hasItem: (key) => store.exists(key),
    async getItem(key) {
      const v = await store.get(key)
      return v === null ? null : v
    },
    async setItem(key, value, tOpts) {
      const ttl = (tOpts && tOpts.ttl) || o.ttl
      await store.set(key, JSON.stringify(String(value)), ttl ? timeout(ttl) : undefined)
    },
    async removeItem(key) {
      await store.remove(key)
    },
    getKeys: (base) => keys(base),
    async clear(base) {
      if (!base) return void (await store.clear())
      await Promise.all((await keys(base)).map((k) => store.remove(k)))
    },
    dispose: () => store.close(),
  }
}

module.exports = rsStore
module.exports.default = rsStore
