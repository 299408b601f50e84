'use strict'
// What the framework adapters (this folder's express.js, fastify.js, …) share:
// the rs-store store they wrap, connect-redis's TTL rule, and answers that
// go to a callback and a Promise at once.
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

module.exports = { wrapped, adapterOptions, ttlRule, answer, warn, DAY_S }
