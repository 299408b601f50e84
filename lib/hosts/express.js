'use strict'
// express-session adapter: `new ExpressStore({ store, ... })` is a subclass of
// express-session's own Store over any rs-store store. What express-session
// 1.19 calls and how (its index.js and session/store.js):
// * get/set/destroy/touch/all/length/clear/ids take an optional callback,
//   called once and asynchronously, and return a Promise as well.
// * TTL as connect-redis computes it (common.js); <= 0 destroys instead.
// * A session loaded from the store is saved with `replace` (written only
//   while it still exists) and `touch` only moves the expiry: a request in
//   flight never brings back a session that a logout destroyed meanwhile.
//   A new session (or a regenerated one) is saved with `set`.
// * lockRequests: the backend's lock on a session id is taken before the
//   request loads it and released once the response has been sent (after
//   express-session saved it), so concurrent requests of one browser apply
//   one after the other instead of the last save wiping the others.
// * failClosed (default true): backend errors reach the app (`next(err)`).
//   With false, an unreachable backend emits 'disconnect' (express-session
//   then serves requests without `req.session`) and 'connect' once a probe
//   finds it back; meanwhile failed reads count as "no session" and failed
//   writes are dropped. A failed destroy always reaches the app: a logout
//   is never lost silently.
const { Store } = require('express-session')
const options = require('../options')
const { codedError } = require('../errors')
const { wrapped, adapterOptions, ttlRule, answer, warn } = require('./common')

const OPTIONS = ['store', 'ttl', 'disableTouch', 'touchAfter', 'lockRequests', 'failClosed', 'onError']
/** Marks a session that was loaded from the store (saved with replace). */
const LOADED = Symbol('rs-store.loaded')
/** How often an unreachable backend is probed (failClosed: false). */
const PROBE_MS = 1000
/** Ids whose last write time is remembered for touchAfter. */
const TOUCH_MEMORY = 100_000

class ExpressStore extends Store {
  /**
   * @param {object} opts { store, ttl, disableTouch, touchAfter, lockRequests, failClosed, onError }
   */
  constructor(opts) {
    super()
    const o = adapterOptions(opts, 'ExpressStore', OPTIONS)
    this.store = o.store
    this._timeout = wrapped(o.store, 'ExpressStore')
    this._ttl = ttlRule(o.ttl, 'ExpressStore')
    this._disableTouch = options.boolean(o, 'disableTouch', { def: false })
    this._touchAfterMs = options.number(o, 'touchAfter', { min: 0, def: 0 }) * 1000
    this._written = new Map() // id → when this process last wrote it (touchAfter)
    this._failClosed = options.boolean(o, 'failClosed', { def: true })
    if (o.onError !== undefined && typeof o.onError !== 'function') throw codedError('ERR_INVALID_OPTION', 'ExpressStore: option onError must be a function')
    this._orphan = o.onError || warn
    this._down = false
    this._probe = null
    const lr = o.lockRequests
    if (lr === undefined || lr === false) this._lock = null
    else {
      if (lr !== true && (typeof lr !== 'object' || lr === null)) throw codedError('ERR_INVALID_OPTION', 'ExpressStore: option lockRequests must be true, false or { ttlMs, waitMs }')
      if (typeof o.store.lock !== 'function') {
        throw codedError('ERR_INVALID_OPTION', 'ExpressStore: lockRequests needs a store with locks (memory, file, redis, daemon)')
      }
      this._lock = lr === true ? {} : options.only({ ...lr }, 'lockRequests', ['ttlMs', 'waitMs'])
    }
    this._handoffs = new Map() // sid → lock: offered by get to the createSession it calls back
    this._reloading = false
  }

  /** Resolves the session (with its `cookie`) or null. */
  get(sid, cb) {
    const reload = this._reloading
    this._reloading = false
    if (!this._lock || reload) return answer(this._call(this.store.get(sid), null), cb, this._orphan)
    const release = (lock) => lock.release().catch(this._orphan)
    const locked = this.store.lock(sid, this._lock).then(async (lock) => {
      try {
        return { lock, sess: await this.store.get(sid) }
      } catch (e) {
        await lock.release().catch(() => {})
        throw e
      }
    })
    const loaded = this._call(locked, { sess: null }).then(({ lock, sess }) => {
      if (sess === null && lock) release(lock)
      return sess === null ? null : { lock, sess }
    })
    // No request to hand the lock to (the Promise form, or load()): released at once.
    if (typeof cb !== 'function') return answer(loaded.then((l) => l && (release(l.lock), l.sess)), cb, this._orphan)
    // express-session calls createSession(req, sess) inside the callback, so
    // the lock is offered under this id for exactly that synchronous call:
    // gets of other ids answered in the same tick cannot take it, and a lock
    // nobody claimed there is released at once.
    const p = loaded.then((l) => l && l.sess)
    loaded.then(
      (l) => {
        if (!l) return cb(null, null)
        if (l.lock) this._handoffs.set(sid, l.lock)
        try {
          cb(null, l.sess)
        } finally {
          if (l.lock && this._handoffs.get(sid) === l.lock) {
            this._handoffs.delete(sid)
            release(l.lock)
          }
        }
      },
      (e) => cb(e),
    )
    p.catch(() => {}) // the callback has the error
    return p
  }

  /**
   * express-session's hook when it loads a session for a request: marks the
   * session as loaded (saved with replace) and, with lockRequests, holds the
   * lock until the response is sent.
   */
  createSession(req, sess) {
    const session = super.createSession(req, sess)
    Object.defineProperty(session, LOADED, { value: true })
    const lock = this._handoffs.get(req.sessionID)
    if (lock) {
      this._handoffs.delete(req.sessionID)
      const release = () => lock.release().catch(this._orphan)
      if (req.res && !req.res.writableFinished && !req.res.destroyed) {
        req.res.once('finish', release)
        req.res.once('close', release)
      } else release()
    }
    if (this._lock) {
      // reload() reads again within the request that holds the lock.
      const store = this
      const reload = session.reload
      Object.defineProperty(session, 'reload', {
        configurable: true,
        writable: true,
        value(fn) {
          store._reloading = true
          try {
            return reload.call(this, fn)
          } finally {
            store._reloading = false
          }
        },
      })
    }
    return session
  }

  set(sid, sess, cb) {
    return answer(
      this._write(sid, sess, (timeout) => {
        this._wrote(sid)
        return sess && sess[LOADED] && typeof this.store.replace === 'function' ? this.store.replace(sid, sess, timeout) : this.store.set(sid, sess, timeout)
      }).then(() => undefined),
      cb,
      this._orphan,
    )
  }

  /** Moves the expiry only (never rewrites the data, never recreates a destroyed session). */
  touch(sid, sess, cb) {
    if (this._disableTouch || (this._touchAfterMs > 0 && Date.now() - (this._written.get(sid) ?? -Infinity) < this._touchAfterMs)) {
      return answer(Promise.resolve(), cb, this._orphan)
    }
    return answer(
      this._write(sid, sess, (timeout) => {
        this._wrote(sid)
        return this.store.update(sid, timeout)
      }).then(() => undefined),
      cb,
      this._orphan,
    )
  }

  destroy(sid, cb) {
    this._written.delete(sid)
    // Never dropped, even with failClosed: false (a logout must not be lost).
    return answer(this._call(this.store.remove(sid)).then(() => undefined), cb, this._orphan)
  }

  /** Every session, each with its `id`. */
  all(cb) {
    return answer(this._call(this.store.entries()).then((es) => es.map(({ id, session }) => ({ ...session, id }))), cb, this._orphan)
  }

  length(cb) {
    return answer(this._call(this.store.length()), cb, this._orphan)
  }

  clear(cb) {
    this._written.clear()
    return answer(this._call(this.store.clear()).then(() => undefined), cb, this._orphan)
  }

  ids(cb) {
    return answer(this._call(this.store.ids()), cb, this._orphan)
  }

  /** Stops the adapter's own probe timer; the wrapped store stays open (its owner closes it). */
  close() {
    clearInterval(this._probe)
    this._probe = null
  }

  /** A write with the session's ttl; a ttl <= 0 destroys instead (as connect-redis does). */
  _write(sid, sess, write) {
    let ttl
    try {
      ttl = this._ttl(sess)
    } catch (e) {
      return Promise.reject(e)
    }
    if (ttl <= 0) {
      this._written.delete(sid)
      return this._call(this.store.remove(sid))
    }
    return this._call(write(this._timeout(ttl)), undefined) // dropped while down
  }

  _wrote(sid) {
    if (this._touchAfterMs <= 0) return
    this._written.delete(sid)
    this._written.set(sid, Date.now())
    if (this._written.size > TOUCH_MEMORY) this._written.delete(this._written.keys().next().value)
  }

  /**
   * A backend call. With failClosed: false an unreachable backend flips the
   * store to "disconnected" until a probe reaches it again, and the call
   * answers `[whenDown]` instead of failing when one is given.
   */
  _call(promise, ...whenDown) {
    if (this._failClosed) return promise
    return promise.catch((e) => {
      if (e && e.code === 'ERR_STORE_UNAVAILABLE') {
        this._disconnected()
        if (whenDown.length) return whenDown[0]
      }
      throw e
    })
  }

  _disconnected() {
    if (this._down) return
    this._down = true
    this.emit('disconnect')
    this._probe = setInterval(() => {
      this.store.ttl('rs-store:probe').then(
        () => {
          if (!this._down) return
          this._down = false
          this.close()
          this.emit('connect')
        },
        () => {},
      )
    }, PROBE_MS)
    this._probe.unref()
  }
}

module.exports = { ExpressStore }
