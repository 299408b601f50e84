'use strict'
// @fastify/session adapter: `new FastifyStore({ store, ... })` over any
// rs-store store, with what ExpressStore gives (common.js shares the code).
// What @fastify/session 11 does (its index.js, lib/session.js): set(id, session, cb),
// get(id, cb), destroy(id, cb), always with a callback (a Promise is
// returned as well); no touch: with `rolling` (its default) every response
// saves the session with `set`, modified or not; regenerate = destroy(old)
// then set(new), with a fresh random id.
// * A session loaded from the store is saved with `replace`, so a request in
//   flight never brings back a session a logout destroyed meanwhile. The
//   Session object that `set` receives does not show whether it was loaded
//   (fastify copies the loaded data into a new object), so the adapter
//   remembers the ids its `get` answered with a session (up to 100,000,
//   most recent first); new sessions have fresh random ids it never answered.
// * An unmodified loaded session (`session.isModified()` false: the rolling
//   save) is touched: only its expiry moves, its data are not rewritten (so
//   it never overwrites what a concurrent request changed) and it is never
//   recreated. For that, `get` drops a cookie's stored `expires` when the
//   cookie has a maxAge: fastify then counts the expiry from now, and the
//   store's own expiry (moved by each touch) is what ends the session.
//   Otherwise fastify would regenerate a session whose stored `expires`
//   (last written with the data) has passed, though touches kept it alive.
// * lockRequests: the backend's lock on a session id is taken before the
//   request loads it and released when the response has been sent; fastify
//   shows a store no request, so `app.register(store.plugin)` adds the
//   hooks that see the response end (onResponse, onRequestAbort); without
//   it every get fails with ERR_INVALID_OPTION saying so. reload() within
//   a request waits for the lock that request holds (ERR_LOCK_TIMEOUT after
//   waitMs): fastify's reload calls the same get.
// * failClosed (default true): backend errors reach fastify's error handler
//   with their code, within the store's commandTimeoutMs. With false, an
//   unreachable backend emits 'disconnect' and 'connect' once a probe finds
//   it back; meanwhile a request with a session cookie gets an empty session
//   that keeps the cookie's id and carries `storeUnavailable: true`, which
//   is never saved (the stored session is there again once the backend is
//   back), and other failed writes are dropped. A failed destroy always
//   reaches the app.
const { EventEmitter } = require('node:events')
const { codedError } = require('../errors')
const { answer, mixSessionAdapter, TOUCH_MEMORY } = require('./common')

class FastifyStore extends EventEmitter {
  /** @param {object} opts { store, ttl, disableTouch, touchAfter, lockRequests, failClosed, onError } */
  constructor(opts) {
    super()
    this._setup(opts, 'FastifyStore')
    this._loaded = new Map() // ids get() answered with a session: saved with replace
    this._held = new Map() // sid → the lock held for the request that loaded it (lockRequests)
    const release = (request, reply, done) => {
      this._release(request.session && request.session.sessionId)
      done()
    }
    /** A fastify plugin (hooks on the whole app) releasing each request's lock (lockRequests). */
    this._hooked = false
    this.plugin = (app, _opts, done) => {
      this._hooked = true
      app.addHook('onResponse', release)
      app.addHook('onRequestAbort', (request, done) => release(request, null, done))
      done()
    }
    this.plugin[Symbol.for('skip-override')] = true // what fastify-plugin does: the hooks apply to every route
    this.plugin[Symbol.for('fastify.display-name')] = 'rs-store-locks'
  }

  /** Resolves the stored session or null. */
  get(sid, cb) {
    if (this._lock && !this._hooked) {
      // Without the hooks no lock would ever be released.
      return answer(Promise.reject(codedError('ERR_INVALID_OPTION', 'FastifyStore: lockRequests needs app.register(store.plugin), which releases each request\'s lock once its response is sent')), cb, this._orphan)
    }
    const got = this._lock ? this._lockedGet(sid, false).then((l) => (l === false ? undefined : l && (this._hold(sid, l.lock), l.sess))) : this._call(this.store.get(sid), undefined)
    return answer(
      got.then((sess) => {
        if (sess === undefined) return { storeUnavailable: true } // down, failClosed: false
        if (sess === null) return null
        this._loaded.delete(sid)
        this._loaded.set(sid, true)
        if (this._loaded.size > TOUCH_MEMORY) this._loaded.delete(this._loaded.keys().next().value)
        const c = sess.cookie
        if (c && typeof c === 'object' && c.originalMaxAge != null) {
          delete c.expires
          delete c.originalExpires
        }
        return sess
      }),
      cb,
      this._orphan,
    )
  }

  set(sid, session, cb) {
    if (session && session.storeUnavailable === true) return answer(Promise.resolve(), cb, this._orphan)
    const loaded = this._loaded.has(sid) && typeof this.store.replace === 'function'
    let p
    if (loaded && typeof session.isModified === 'function' && !session.isModified()) {
      p = this._touchSkipped(sid) ? Promise.resolve() : this._write(sid, session, (timeout) => (this._wrote(sid), this.store.update(sid, timeout)))
    } else {
      p = this._write(sid, session, (timeout) => (this._wrote(sid), loaded ? this.store.replace(sid, session, timeout) : this.store.set(sid, session, timeout)))
    }
    return answer(p.then(() => undefined), cb, this._orphan)
  }

  destroy(sid, cb) {
    this._written.delete(sid)
    // Never dropped, even with failClosed: false (a logout must not be lost).
    return answer(this._call(this.store.remove(sid)).then(() => undefined), cb, this._orphan)
  }

  /** Holds `lock` for the request that loaded `sid`, until its response is sent. */
  _hold(sid, lock) {
    this._held.set(sid, lock)
  }

  _release(sid) {
    const lock = sid && this._held.get(sid)
    if (!lock) return
    this._held.delete(sid)
    lock.release().catch(this._orphan)
  }
}

mixSessionAdapter(FastifyStore)

module.exports = { FastifyStore }
