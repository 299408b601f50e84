'use strict'
// require('rs-store/prometheus'): prom-client metrics over stores' counters
// (docs/observability.md). prom-client is an optional peer dependency:
// only this entry loads it.
//
// Counts are read from store.stats() when Prometheus scrapes (nothing is
// done per call for them); the duration histogram is fed by every timed
// call (lib/observe.js: every call of an I/O store, one in SYNC_SAMPLE of an
// in-process one), so its _count is the timed calls, rs_store_calls_total
// every call. One set of metrics per registry; every store registered on it
// is a `store` label value (its `name`, by default its kind).
const { codedError, invalidType } = require('./errors')
const { METER } = require('./observe')

let prom
try {
  prom = require('prom-client')
} catch (e) {
  if (e && e.code !== 'MODULE_NOT_FOUND') throw e
  throw codedError('ERR_NOT_FOUND', "rs-store/prometheus needs prom-client, an optional peer dependency: npm install prom-client", e)
}

/** Bucket upper bounds of rs_store_call_duration_seconds, in seconds: 100 µs to 10 s. */
const BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** registry → { stores: Map(name → store), duration } */
const perRegistry = new WeakMap()

function metricsOf(registry) {
  let m = perRegistry.get(registry)
  if (m) return m
  const stores = new Map()
  const registers = [registry]
  // A metric read from every store's stats() when Prometheus scrapes:
  // `fill(metric, name, stats)` sets its values for one store.
  const scraped = (Metric, name, help, labelNames, fill) =>
    new Metric({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset()
        for (const [store, s] of stores) fill(this, store, s.stats())
      },
    })
  // A counter per store and key of one of its stats' maps (calls by op, errors by code).
  const perKey = (name, help, label, field) =>
    scraped(prom.Counter, name, help, ['store', label], (c, store, s) => {
      for (const [key, n] of Object.entries(s[field])) c.inc({ store, [label]: key }, n)
    })
  m = {
    stores,
    calls: perKey('rs_store_calls_total', 'rs-store store calls made, per store and method', 'op', 'calls'),
    errors: perKey('rs_store_errors_total', 'rs-store store calls failed, per store and error code', 'code', 'errors'),
    inFlight: scraped(prom.Gauge, 'rs_store_in_flight', 'rs-store store calls made and not yet settled', ['store'], (g, store, s) => g.set({ store }, s.inFlight)),
    duration: new prom.Histogram({
      name: 'rs_store_call_duration_seconds',
      help: 'rs-store store call durations (every call of a network or file store, one in 16 of an in-process store)',
      labelNames: ['store', 'op'],
      buckets: BUCKETS_S,
      registers,
    }),
  }
  perRegistry.set(registry, m)
  return m
}

/**
 * Exports `store`'s counters on `registry` (a prom-client Registry) under
 * the label store=`name` (default: the store's kind, e.g. redis). Returns a
 * function that unregisters the store.
 */
function register(registry, store, { name, ...rest } = {}) {
  if (!registry || typeof registry.registerMetric !== 'function') {
    throw invalidType('ERR_INVALID_ARGUMENT', 'register(registry, store): registry must be a prom-client Registry (e.g. require(\'prom-client\').register)')
  }
  const meter = store && store[METER]
  if (!meter) throw invalidType('ERR_INVALID_ARGUMENT', 'register(registry, store): store must be an rs-store store')
  const unknown = Object.keys(rest)
  if (unknown.length) throw codedError('ERR_INVALID_OPTION', `unknown option ${unknown[0]} of register() (known: name)`)
  const label = name === undefined ? meter.kind : name
  if (typeof label !== 'string' || label === '') throw invalidType('ERR_INVALID_OPTION', 'register(): name must be a non-empty string')
  const m = metricsOf(registry)
  if (m.stores.has(label)) {
    throw codedError('ERR_ALREADY_EXISTS', `a store named ${JSON.stringify(label)} is already registered on this registry: give each store its own name`)
  }
  m.stores.set(label, store)
  const byOp = new Map()
  const before = meter.onTime
  const onTime = (op, ms) => {
    let h = byOp.get(op)
    if (h === undefined) byOp.set(op, (h = m.duration.labels({ store: label, op })))
    h.observe(ms / 1000)
    if (before !== null) before(op, ms)
  }
  meter.onTime = onTime
  return function unregister() {
    if (m.stores.get(label) !== store) return
    m.stores.delete(label)
    if (meter.onTime === onTime) meter.onTime = before
    for (const op of byOp.keys()) m.duration.remove({ store: label, op })
  }
}

module.exports = { register, BUCKETS_S }
