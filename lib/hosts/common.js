'use strict'
// What the framework adapters (this folder's express.js, fastify.js, …) share:
// the rs-store store they wrap, connect-redis's TTL rule, answers that go to
// a callback and a Promise at once, and (`sessionAdapter`) the options and
// behaviour ExpressStore and FastifyStore have in common: ttl writes,
// touchAfter, lockRequests options, failClosed with its events, onError,
// and the per-user calls (sessionsOf, revokeUser, rotate) passed through.
const { codedError, invalidType } = require('../errors')
const { TIMEOUT_UNIT_MS } = require('../store')
const options = require('../options')

const DAY_S = 86_400

/**
 * Checks that `store` is an rs-store store and returns how its timeouts are
 * given: `timeout(seconds)` is the value to pass to its set/update.
 */
function wrapped(store, what) {
  if (!store || typeof store !== 'object' || ['get', 'set', 'remove', 'update'].some((m) => typeof store[m] !== 'function')) {
    throw invalidType('ERR_INVALID_OPTION', `${what}: option store must be an rs-store store, e.g. rs.redis(url) or rs.memory()`)
  }
  const unitMs = store[TIMEOUT_UNIT_MS] || 1
  return (seconds) => (seconds * 1000) / unitMs
}

/**
 * An adapter's options, checked against `known`; a store passed instead of
 * `{ store }` is refused with how to pass it.
 */
function adapterOptions(opts, what, known) {
  if (opts && opts[TIMEOUT_UNIT_MS]) throw codedError('ERR_INVALID_OPTION', `${what} takes the store as an option: new ${what}({ store }), not new ${what}(store)`)
  return options.only(options.object(opts, what), what, known)
}

/**
 * connect-redis's TTL rule, in seconds: the `ttl` option (seconds, or a
 * function of the session) wins; else the cookie's `expires` minus now
 * (rounded up); else one day. A result <= 0 means "destroy".
 */
function ttlRule(ttl, what) {
  if (ttl !== undefined && typeof ttl !== 'function' && !(typeof ttl === 'number' && ttl > 0)) {
    throw codedError('ERR_INVALID_OPTION', `${what}: option ttl must be a number of seconds > 0 or a function of the session`)
  }
  return (sess) => {
    let s
    if (typeof ttl === 'function') s = ttl(sess)
    else if (ttl !== undefined) s = ttl
    else {
      const expires = sess && sess.cookie && sess.cookie.expires
      const ms = expires ? new Date(expires).getTime() - Date.now() : NaN
      s = Number.isNaN(ms) ? DAY_S : Math.ceil(ms / 1000)
    }
    if (typeof s !== 'number' || Number.isNaN(s)) throw codedError('ERR_INVALID_TIMEOUT', `${what}: the ttl function returned ${String(s)}, not a number of seconds`)
    return s
  }
}

/**
 * Hands `promise`'s outcome to `cb(err, value)` when a callback is given
 * (called once, asynchronously) and returns the Promise too. Without a
 * callback, a failure nobody awaits goes to `orphan` rather than becoming an
 * unhandled rejection (express-session's `req.session.destroy()` drops what
 * the store returns).
 */
function answer(promise, cb, orphan) {
  if (typeof cb === 'function') promise.then((v) => cb(null, v), (e) => cb(e))
  else promise.catch(orphan)
  return promise
}

/** The default `onError`: a warning with the error's code. */
function warn(e) {
  console.warn(`rs-store: ${e && e.code ? `${e.code}: ` : ''}${e && e.message}`)
}

/** The options of a session-middleware adapter (ExpressStore, FastifyStore). */
const SESSION_ADAPTER_OPTIONS = ['store', 'ttl', 'disableTouch', 'touchAfter', 'lockRequests', 'failClosed', 'onError']
/** How often an unreachable backend is probed (failClosed: false). */
const PROBE_MS = 1000
/** Ids whose last write time is remembered for touchAfter. */
const TOUCH_MEMORY = 100_000

/**
 * Methods mixed into an adapter class that is an EventEmitter (ExpressStore,
 * FastifyStore): `_setup(opts, what)` in its constructor, then `_call`,
 * `_write`, `_touchSkipped`, `_wrote`, `close`.
 */
const sessionAdapter = {
  /** Reads and checks the options every session-middleware adapter takes. */
  _setup(opts, what) {
    const o = adapterOptions(opts, what, SESSION_ADAPTER_OPTIONS)
    this.store = o.store
    this._timeout = wrapped(o.store, what)
    this._ttl = ttlRule(o.ttl, what)
    this._disableTouch = options.boolean(o, 'disableTouch', { def: false })
    this._touchAfterMs = options.number(o, 'touchAfter', { min: 0, def: 0 }) * 1000
    this._written = new Map() // id → when this process last wrote it (touchAfter)
    this._failClosed = options.boolean(o, 'failClosed', { def: true })
    if (o.onError !== undefined && typeof o.onError !== 'function') throw codedError('ERR_INVALID_OPTION', `${what}: option onError must be a function`)
    this._orphan = o.onError || warn
    this._down = false
    this._probe = null
    const lr = o.lockRequests
    if (lr === undefined || lr === false) this._lock = null
    else {
      if (lr !== true && (typeof lr !== 'object' || lr === null)) throw codedError('ERR_INVALID_OPTION', `${what}: option lockRequests must be true, false or { ttlMs, waitMs }`)
      if (typeof o.store.lock !== 'function') {
        throw codedError('ERR_INVALID_OPTION', `${what}: lockRequests needs a store with locks (memory, file, redis, daemon)`)
      }
      this._lock = lr === true ? {} : options.only({ ...lr }, 'lockRequests', ['ttlMs', 'waitMs'])
    }
  },

  /**
   * lockRequests: takes the lock on `sid`, then reads the session under it.
   * Resolves `{ lock, sess }`, or null when there is no session (the lock is
   * then released at once), or `down` when the backend is unreachable
   * (failClosed: false).
   */
  _lockedGet(sid, down = null) {
    const locked = this.store.lock(sid, this._lock).then(async (lock) => {
      try {
        return { lock, sess: await this.store.get(sid) }
      } catch (e) {
        await lock.release().catch(() => {})
        throw e
      }
    })
    return this._call(locked, down).then((l) => {
      if (l === down) return down
      if (l.sess === null) {
        l.lock.release().catch(this._orphan)
        return null
      }
      return l
    })
  },

  /**
   * Per-user sessions, passed through to the store (made with `userOf`):
   * a user's live sessions `[{ id, session, ttl }]`; each takes an
   * optional callback too, as the adapter's other methods.
   */
  sessionsOf(user, cb) {
    return answer(this._call(call(this.store, 'sessionsOf', user)), cb, this._orphan)
  },

  /** Removes every session of `user` but the ids in `except`; resolves how many. */
  revokeUser(user, opts, cb) {
    if (typeof opts === 'function') [opts, cb] = [undefined, opts]
    return answer(this._call(call(this.store, 'revokeUser', user, opts)), cb, this._orphan)
  },

  /** Moves a live session to a free id (data, ttl, user, absolute end); resolves true when moved. */
  rotate(oldId, newId, cb) {
    return answer(
      this._call(call(this.store, 'rotate', oldId, newId)).then((moved) => {
        if (moved) this._rotated(oldId, newId)
        return moved
      }),
      cb,
      this._orphan,
    )
  },

  /** What the adapter remembers of `oldId` now belongs to `newId`. */
  _rotated(oldId, newId) {
    const at = this._written.get(oldId)
    this._written.delete(oldId)
    if (at !== undefined) this._written.set(newId, at)
  },

  /** Stops the adapter's own probe timer; the wrapped store stays open (its owner closes it). */
  close() {
    clearInterval(this._probe)
    this._probe = null
  },

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
  },

  /** True when a touch of `sid` is not to be written (disableTouch, or touchAfter since this process's last write). */
  _touchSkipped(sid) {
    return this._disableTouch || (this._touchAfterMs > 0 && Date.now() - (this._written.get(sid) ?? -Infinity) < this._touchAfterMs)
  },

  _wrote(sid) {
    if (this._touchAfterMs <= 0) return
    this._written.delete(sid)
    this._written.set(sid, Date.now())
    if (this._written.size > TOUCH_MEMORY) this._written.delete(this._written.keys().next().value)
  },

  /**
   * A backend call. With failClosed: false an unreachable backend flips the
   * adapter to "disconnected" until a probe reaches it again, and the call
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
  },

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
  },
}

/** `store[name](...args)` as a Promise; a store without the method (not an rs-store store of this version) is a coded error. */
function call(store, name, ...args) {
  if (typeof store[name] !== 'function') return Promise.reject(codedError('ERR_INVALID_OPTION', `the wrapped store has no ${name}() (an rs-store store made with userOf has it)`))
  try {
    return Promise.resolve(store[name](...args))
  } catch (e) {
    return Promise.reject(e)
  }
}

/** Gives `Class` the shared adapter methods it does not define itself. */
function mixSessionAdapter(Class) {
  for (const [name, fn] of Object.entries(sessionAdapter)) {
    if (!Object.prototype.hasOwnProperty.call(Class.prototype, name)) Object.defineProperty(Class.prototype, name, { value: fn, writable: true, configurable: true })
  }
  return Class
}

module.exports = { wrapped, adapterOptions, ttlRule, answer, warn, mixSessionAdapter, DAY_S, TOUCH_MEMORY }
