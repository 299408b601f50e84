'use strict'
// @fastify/session adapter: `new FastifyStore({ store, ttl })` over any
// rs-store store. @fastify/session 11 calls set(id, session, cb),
// get(id, cb) and destroy(id, cb), always with a callback; a Promise is
// returned as well. The session is the live Session: JSON.stringify keeps
// its data and its cookie's toJSON (`expires`, `originalMaxAge`, …), so the
// ttl follows connect-redis's rule (common.js) and a ttl <= 0 destroys.
// Backend errors reach fastify's error handler with their code; a down
// backend fails each call within the store's commandTimeoutMs.
const { codedError } = require('../errors')
const { wrapped, adapterOptions, ttlRule, answer, warn } = require('./common')

class FastifyStore {
  /** @param {object} opts { store, ttl, onError } */
  constructor(opts) {
    const o = adapterOptions(opts, 'FastifyStore', ['store', 'ttl', 'onError'])
    this.store = o.store
    this._timeout = wrapped(o.store, 'FastifyStore')
    this._ttl = ttlRule(o.ttl, 'FastifyStore')
    if (o.onError !== undefined && typeof o.onError !== 'function') throw codedError('ERR_INVALID_OPTION', 'FastifyStore: option onError must be a function')
    this._orphan = o.onError || warn
  }

  set(sid, session, cb) {
    let p
    try {
      const ttl = this._ttl(session)
      p = ttl <= 0 ? this.store.remove(sid) : this.store.set(sid, session, this._timeout(ttl))
    } catch (e) {
      p = Promise.reject(e)
    }
    return answer(p.then(() => undefined), cb, this._orphan)
  }

  get(sid, cb) {
    return answer(this.store.get(sid), cb, this._orphan)
  }

  destroy(sid, cb) {
    return answer(this.store.remove(sid).then(() => undefined), cb, this._orphan)
  }
}

module.exports = { FastifyStore }
