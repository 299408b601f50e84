'use strict'
// simpleS 0.8.8 (what `npm install simples` gives): its store is called back,
// not awaited. `server.config({ session: { enabled: true, store, timeout } })`
// with `store = require('rs-store/simples-0.8')(rsStore)`:
// * get(id, cb(sessionOrNull)): one argument, no error; a failure counts as
//   "no session" (simpleS then issues a new one) and goes to onError.
// * set(id, session, cb()): called after the response was sent; `session` is
//   { id, hash, expire, container } with `expire` in epoch ms. It is stored
//   until `expire` (without a `timeout` setting simpleS passes NaN: the
//   store's defaultTtl is used); an `expire` already past removes it.
const { codedError, invalidType } = require('../errors')
const options = require('../options')
const { wrapped, warn } = require('./common')

/** simpleS 0.8.8's callback store over `store`; `opts`: { onError }. */
function simples08(store, opts) {
  const timeout = wrapped(store, 'simples-0.8')
  const o = options.only(options.object(opts, 'simples-0.8'), 'simples-0.8', ['onError'])
  if (o.onError !== undefined && typeof o.onError !== 'function') throw invalidType('ERR_INVALID_OPTION', 'simples-0.8: option onError must be a function')
  const report = o.onError || warn
  return {
    get(id, cb) {
      store.get(id).then(
        (s) => cb(s),
        (e) => {
          report(e)
          cb(null)
        },
      )
    },
    set(id, session, cb) {
      let p
      if (!session || typeof session !== 'object') p = Promise.reject(codedError('ERR_NOT_SERIALIZABLE', 'simpleS 0.8 session must be an object'))
      else {
        const ms = session.expire - Date.now()
        if (ms <= 0) p = store.remove(id)
        else p = store.set(id, session, Number.isNaN(ms) ? undefined : timeout(Math.ceil(ms) / 1000))
      }
      p.then(
        () => cb(),
        (e) => {
          report(e)
          cb()
        },
      )
    },
  }
}

module.exports = simples08
