'use strict'
// What observability costs (docs/observability.md): the same store three
// ways in one run, on memory and on Redis (one redis-server started here):
// without lib/observe.js's wrapper (a copy of rs-store loaded with a
// method that only makes the Promise, as store methods did before it), as
// shipped with nobody subscribed to `rs-store:op`, and with a subscriber to
// every event of it (handlers that do nothing). Ratios against the first.
const dc = require('node:diagnostics_channel')
const path = require('node:path')
const { startRedis } = require('../__test__/support/redis-servers')
const { benchSession, ids, fill, compare, table } = require('./harness')

const N = 10_000
const TTL_MS = 3_600_000
const ROOT = path.join(__dirname, '..')

/** A second copy of rs-store whose store methods are not observed. */
function unobserved() {
  const observe = require('../lib/observe')
  const shipped = observe.method
  const mine = (k) => k.startsWith(ROOT + path.sep) && !k.includes(`${path.sep}node_modules${path.sep}`) && !k.endsWith('.node')
  const keep = new Set(['lib/observe.js', 'lib/native.js', 'native/index.js'].map((f) => path.join(ROOT, f)))
  const drop = () => {
    for (const k of Object.keys(require.cache)) if (mine(k) && !keep.has(k)) delete require.cache[k]
  }
  drop()
  observe.method = (meter, name, impl, reject) =>
    function plain(a, b, c, d) {
      try {
        const v = impl(a, b, c, d)
        return v instanceof Promise ? v : Promise.resolve(v)
      } catch (e) {
        return reject(e)
      }
    }
  try {
    return require('..')
  } finally {
    observe.method = shipped
    drop() // the shipped copy is loaded again by whoever requires it next
  }
}

const channel = dc.tracingChannel('rs-store:op')
const noop = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} }
let subscribed = false
/** Subscribes a handler to every event, or takes it away. */
function subscribe(on) {
  if (on === subscribed) return
  if (on) channel.subscribe(noop)
  else channel.unsubscribe(noop)
  subscribed = on
}

module.exports = async function observeBench({ ms }) {
  const raw = unobserved()
  const rs = require('..')
  const server = await startRedis()
  const keys = ids(N)
  const sess = benchSession()
  const rows = []
  try {
    for (const [kind, make, inflight] of [
      ['memory', (m) => m.memory({ maxEntries: 100_000 }), 1],
      ['redis', (m, p) => m.redis({ url: server.url, prefix: p }), 50],
    ]) {
      const contenders = [
        ['rs-store, no observe wrapper', make(raw, 'raw:'), false],
        ['rs-store, nobody subscribed', make(rs, 'obs:'), false],
        ['rs-store, a subscriber', make(rs, 'sub:'), true],
      ].map(([name, s, sub]) => ({ name, sub, set: (id, v) => s.set(id, v, TTL_MS), get: s.get, close: s.close }))
      await fill(contenders, keys, sess)
      const cases = {
        [`set@${inflight}`]: { inflight, op: (c) => (subscribe(c.sub), (i) => c.set(keys[i % N], sess)) },
        [`get@${inflight}`]: { inflight, op: (c) => (subscribe(c.sub), (i) => c.get(keys[i % N])) },
      }
      const r = await compare(contenders, cases, { ms: ms * 2, rounds: 5 })
      subscribe(false)
      for (const c of contenders) await c.close()
      table(`Observability on ${kind} (ops/s and CPU µs per call, ${inflight} in flight)`, r, Object.keys(cases), 'rs-store, no observe wrapper')
      rows.push(...r.map((x) => ({ kind, ...x })))
    }
  } finally {
    subscribe(false)
    await server.stop()
  }
  return rows
}
