'use strict'
// koa-session adapter: `session({ store: new KoaStore({ store }) }, app)`
// over any rs-store store. What koa-session 7 calls (its src/context.ts):
// get(key, maxAge, { rolling, ctx }), set(key, sess, maxAge, { rolling,
// changed, ctx }), destroy(key, { ctx }), each awaited; a rejection reaches
// koa's error handling with its code (`err.code`), within the store's
// commandTimeoutMs when the backend is down.
// * koa-session calls the same `set` for a new session and for one it
//   loaded: the `ctx` it passes tells them apart. A session this request's
//   `get` loaded is saved with `replace` (written only while it still
//   exists), so a slow request never brings back a session that a logout
//   destroyed meanwhile; a new or regenerated one (a fresh key) with `set`.
//   koa-session's rolling/renew saves rewrite the loaded data with a new
//   `_expire`, through `replace` too: they never recreate a session.
// * `maxAge` is milliseconds (koa-session adds 10 s to its own so that the
//   store outlives the cookie); the string 'session' (a browser-session
//   cookie) has no lifetime of its own: the store's `defaultTtl` applies.
const { wrapped, adapterOptions } = require('./common')

class KoaStore {
  /** @param {object} opts { store } */
  constructor(opts) {
    const o = adapterOptions(opts, 'KoaStore', ['store'])
    this.store = o.store
    this._timeout = wrapped(o.store, 'KoaStore')
    this._loaded = new WeakMap() // ctx → the key its request loaded
  }

  async get(key, _maxAge, { ctx } = {}) {
    const sess = await this.store.get(key)
    if (sess !== null && ctx) this._loaded.set(ctx, key)
    return sess
  }

  async set(key, sess, maxAge, { ctx } = {}) {
    const timeout = typeof maxAge === 'number' ? this._timeout(maxAge / 1000) : undefined
    if (ctx && this._loaded.get(ctx) === key) await this.store.replace(key, sess, timeout)
    else await this.store.set(key, sess, timeout)
  }

  async destroy(key) {
    await this.store.remove(key)
  }
}

module.exports = { KoaStore }
