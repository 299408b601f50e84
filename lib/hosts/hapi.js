'use strict'
// hapi catbox engine over any rs-store store:
//   Hapi.server({ cache: [{ name, provider: { constructor: CatboxEngine, options: { store } } }] })
// so @hapi/yar (with `maxCookieSize: 0`) and any hapi cache policy keep
// their data in rs-store. What catbox 12 calls (its lib/client.js): start(),
// stop(), isReady(), validateSegmentName(name), get({ segment, id }),
// set(key, value, ttl) with ttl in ms, drop(key). Its Client answers the
// remaining ttl as `stored + ttl - now` from what the engine's get gives, so
// the engine answers `{ item, stored, ttl }` with the ttl the item was set
// with (as catbox-memory and catbox-redis do), and the policy sees the
// remaining ms. Items are JSON values (a Buffer comes back as its JSON
// form). Keys: `<partition>:<segment>:<id>` (segment and id URI-encoded, so
// a `:` in an id cannot reach another segment's keys). stop() leaves the
// store open: whoever made it closes it. Backend errors reject with their
// code, within the store's commandTimeoutMs.
const { codedError } = require('../errors')
const { wrapped, adapterOptions } = require('./common')

class CatboxEngine {
  /** @param {object} opts { store, partition } (catbox adds `partition`, default 'catbox', hapi 'hapi-cache') */
  constructor(opts) {
    const o = adapterOptions(opts, 'CatboxEngine', ['store', 'partition'])
    this.store = o.store
    this._timeout = wrapped(o.store, 'CatboxEngine')
    if (o.partition !== undefined && typeof o.partition !== 'string') throw codedError('ERR_INVALID_OPTION', 'CatboxEngine: option partition must be a string')
    this._partition = o.partition || 'catbox'
    this._ready = false
  }

  async start() {
    this._ready = true
  }

  async stop() {
    this._ready = false
  }

  isReady() {
    return this._ready
  }

  validateSegmentName(name) {
    if (typeof name !== 'string' || name === '') return new Error('Empty string')
    if (name.includes('\0')) return new Error('Includes null character')
    return null
  }

  async get(key) {
    const env = await this.store.get(this._id(key))
    if (env === null || typeof env !== 'object') return null
    return { item: env.item, stored: env.stored, ttl: env.ttl }
  }

  async set(key, value, ttl) {
    await this.store.set(this._id(key), { item: value, stored: Date.now(), ttl }, this._timeout(ttl / 1000))
  }

  async drop(key) {
    await this.store.remove(this._id(key))
  }

  _id(key) {
    return `${this._partition}:${encodeURIComponent(key.segment)}:${encodeURIComponent(key.id)}`
  }
}

module.exports = { CatboxEngine }
