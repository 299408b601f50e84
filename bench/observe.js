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

/**
 * The wrapper alone around a method that does next to nothing, nobody
 * subscribed: ns per call, the best of 9 rounds (a round a busy machine
 * preempted counts for nothing). An in-process store times one call in 16;
 * a batched store (Redis, the daemon, …) times every call: a clock read at
 * the call, and its reply settled as lib/batch.js does (one clock read per
 * reply batch, here per 64 calls).
 */
function wrapperNs() {
  const { Meter, TAKEN, method } = require('../lib/observe')
  const reject = (e) => Promise.reject(e)
  const promise = Promise.resolve(null)
  const plainOf = (impl) => (a) => {
    try {
      const v = impl(a)
      return v instanceof Promise ? v : Promise.resolve(v)
    } catch (e) {
      return reject(e)
    }
  }
  const inProcessImpl = (a) => a
  const meter = new Meter('redis', 'x')
  const tags = []
  const starts = []
  // What lib/batch.js's pending() does for the meter, with and without it.
  const batchedImpl = () => {
    const tag = meter.current
    if (tag !== null && tag !== TAKEN) {
      meter.current = TAKEN
      meter.inFlight++
      tags.push(tag)
      starts.push(meter.t0 > 0 ? meter.t0 : performance.now())
    }
    return promise
  }
  const replies = () => {
    const now = performance.now()
    for (let i = 0; i < tags.length; i++) {
      meter.inFlight--
      meter.settle(tags[i], starts[i], undefined, now)
    }
    tags.length = 0
    starts.length = 0
  }
  const cases = {
    'in-process, no wrapper': plainOf(inProcessImpl),
    'in-process': method(new Meter('memory', undefined, { sync: true }), 'get', inProcessImpl, reject),
    'batched, no wrapper': plainOf(() => promise),
    batched: method(meter, 'get', batchedImpl, reject),
  }
  const N = 192_000
  const time = (fn) => {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < N; i += 64) {
      for (let k = 0; k < 64; k++) fn(i)
      replies()
    }
    return Number(process.hrtime.bigint() - t0) / N
  }
  const best = Object.fromEntries(Object.keys(cases).map((k) => [k, Infinity]))
  for (let r = 0; r < 9; r++) for (const [k, fn] of Object.entries(cases)) best[k] = Math.min(best[k], time(fn))
  return best
}

module.exports = async function observeBench({ ms }) {
  const ns = wrapperNs()
  console.log(`\n## The observe wrapper alone, nobody subscribed (ns per call, best of 9 rounds)`)
  console.log(`| store | no wrapper | wrapper | cost |\n|---|---|---|---|`)
  for (const kind of ['in-process', 'batched']) {
    const [off, on] = [ns[`${kind}, no wrapper`], ns[kind]]
    console.log(`| ${kind} | ${off.toFixed(0)} | ${on.toFixed(0)} | +${(on - off).toFixed(0)} ns |`)
  }
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
