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
// * rotateRequest(req): a new id for the request's session, its data kept
//   (after a login, against session fixation). The store moves the session
//   atomically (rotate); then req.sessionID and req.session follow the new
//   id, as express-session's own regenerate() leaves them: `req.session.id`
//   is a read-only property of express-session's Session, so req.session is
//   a new Session over the same data, carrying over the save/reload wrappers
//   express-session put on the old one. express-session compares
//   req.sessionID with the cookie's id when the response starts: they now
//   differ, so it sets the cookie to the new id and saves the session
//   (with replace: the rotated session exists) when the response ends.
const { Store } = require('express-session')
const { codedError, invalidType } = require('../errors')
const { answer, mixSessionAdapter } = require('./common')

/** Marks a session that was loaded from the store (saved with replace). */
const LOADED = Symbol('rs-store.loaded')

class ExpressStore extends Store {
  /**
   * @param {object} opts { store, ttl, disableTouch, touchAfter, lockRequests, failClosed, onError }
   */
  constructor(opts) {
    super()
    this._setup(opts, 'ExpressStore')
    this._handoffs = new Map() // sid → lock: offered by get to the createSession it calls back
    this._reloading = false
  }

  /** Resolves the session (with its `cookie`) or null. */
  get(sid, cb) {
    const reload = this._reloading
    this._reloading = false
    if (!this._lock || reload) return answer(this._call(this.store.get(sid), null), cb, this._orphan)
    const release = (lock) => lock.release().catch(this._orphan)
    const loaded = this._lockedGet(sid)
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
    if (this._touchSkipped(sid)) return answer(Promise.resolve(), cb, this._orphan)
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

  /**
   * Gives the request's session a new id (express-session's genid), keeping
   * its data and what is left of its ttl; resolves true when the stored
   * session moved, false when there was none to move (a new session, not
   * saved yet, or one removed meanwhile: then nothing changes). Changes to
   * req.session made before the call are saved under the new id when the
   * response ends.
   */
  rotateRequest(req, cb) {
    let moved
    try {
      moved = this._rotateRequest(req)
    } catch (e) {
      moved = Promise.reject(e)
    }
    return answer(moved, cb, this._orphan)
  }

  _rotateRequest(req) {
    if (!req || typeof req !== 'object' || !req.session || typeof req.sessionID !== 'string') {
      throw invalidType('ERR_INVALID_ARGUMENT', 'rotateRequest(req): req must be a request that express-session gave a session (req.session, req.sessionID)')
    }
    if (req.sessionStore !== this || typeof this.generate !== 'function') {
      throw codedError('ERR_INVALID_OPTION', "rotateRequest(req): this ExpressStore is not the request's session store (session({ store }) sets it)")
    }
    // express-session's generate() draws the id (its genid option) and
    // builds a fresh session: on a stand-in of req, so that req keeps its own.
    const probe = Object.create(req)
    this.generate(probe)
    const oldId = req.sessionID
    const newId = probe.sessionID
    if (typeof newId !== 'string' || newId === oldId) {
      throw codedError('ERR_INVALID_ID', `rotateRequest(req): express-session's genid gave ${JSON.stringify(newId)}, not a new session id`)
    }
    const old = req.session
    return this.rotate(oldId, newId).then((moved) => {
      // The request moved on (another rotation, a regenerate, a destroy) meanwhile: leave it.
      if (!moved || req.session !== old || req.sessionID !== oldId) return moved
      const data = JSON.parse(JSON.stringify(old)) // what express-session would save: its cookie as JSON
      req.sessionID = newId
      Store.prototype.createSession.call(this, req, data)
      Object.defineProperty(req.session, LOADED, { value: true })
      for (const name of ['save', 'reload']) {
        const own = Object.getOwnPropertyDescriptor(old, name)
        if (own) Object.defineProperty(req.session, name, own)
      }
      return moved
    })
  }
}

mixSessionAdapter(ExpressStore)

module.exports = { ExpressStore }
