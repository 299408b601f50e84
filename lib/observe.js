'use strict'
// What every store call does, seen from outside (docs/observability.md):
//
// * The TracingChannel `rs-store:op` (node:diagnostics_channel): one context
//   per store call, { op, store, server? }, with start/end and, as the call
//   settles, asyncStart/asyncEnd (error first when it fails, `context.error`
//   the coded error). It is TracingChannel#tracePromise's sequence, except
//   that `context.result` is never set: a result is session data. Neither
//   the session id nor the session is ever in a context. While nobody
//   subscribes, nothing is published and no context is made.
// * The counters behind store.stats(): calls and latency per op, errors per
//   code, calls in flight. Always on, so they must cost next to nothing
//   (README "Observability" has the figures): a call's counters are fields
//   of one record per method, made when the store is; a call of a batched
//   store (lib/batch.js) is timed from being queued to its reply, which the
//   batch engine records (`meter.current`: the call being made, which the
//   engine takes); a call of an in-process store is timed one in SYNC_SAMPLE
//   (a clock read costs ~80 ns on a VM, a memory get ~5 µs).
//
// One wrapper (`method`) gives every public method of lib/store.js all of
// this; methods added there get it by being listed in its table.
const dc = require('node:diagnostics_channel')
const { performance } = require('node:perf_hooks')

const CHANNEL = 'rs-store:op'
const channel = dc.tracingChannel(CHANNEL)
const { start, end, asyncStart, asyncEnd, error } = channel

/** In-process stores: one call in SYNC_SAMPLE per op is timed (the first one is). */
const SYNC_SAMPLE = 16

/**
 * Latency buckets, upper bounds in ms: 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6,
 * 7.5 per decade from 1 µs to 75 s (a bucket is at most 1.33× wider than
 * the one before, so p50/p99 read from them are within that), and +Inf.
 */
const STEPS = [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5]
const BOUNDS_MS = []
for (let e = -3; e <= 4; e++) for (const s of STEPS) BOUNDS_MS.push(Number((s * 10 ** e).toPrecision(3)))

function bucketOf(ms) {
  let lo = 0
  let hi = BOUNDS_MS.length // the +Inf bucket
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (ms <= BOUNDS_MS[mid]) hi = mid
    else lo = mid + 1
  }
  return lo
}

/** Marks the call being made as taken by the batch engine (see lib/batch.js). */
const TAKEN = Object.freeze({ name: null })

/** One op's counters (one per public method name of a store). */
class OpRecord {
  constructor(name, sample) {
    this.name = name
    this.calls = 0
    this.count = 0 // timed calls
    this.sumMs = 0
    this.minMs = Infinity
    this.maxMs = 0
    this.buckets = null // Float64Array(BOUNDS_MS.length + 1), from the first timed call
    this.sample = sample
    this.next = 1 // calls left until the next timed one (sync stores)
  }

  time(ms) {
    this.count++
    this.sumMs += ms
    if (ms > this.maxMs) this.maxMs = ms
    if (ms < this.minMs) this.minMs = ms
    ;(this.buckets || (this.buckets = new Float64Array(BOUNDS_MS.length + 1)))[bucketOf(ms)]++
  }

  /** The q-quantile in ms, interpolated within its bucket (within the fastest and slowest calls). */
  quantile(q) {
    const b = this.buckets
    if (!b || this.count === 0) return 0
    const rank = q * this.count
    let seen = 0
    for (let i = 0; i < b.length; i++) {
      if (b[i] === 0 || seen + b[i] < rank) {
        seen += b[i]
        continue
      }
      const lo = Math.max(i === 0 ? 0 : BOUNDS_MS[i - 1], this.minMs)
      const hi = i === BOUNDS_MS.length ? this.maxMs : Math.min(BOUNDS_MS[i], this.maxMs)
      return round3(lo + ((hi - lo) * (rank - seen)) / b[i])
    }
    return round3(this.maxMs)
  }
}

const round3 = (ms) => Math.round(ms * 1000) / 1000

/**
 * A store's counters. `kind`: the store's `store` name (memory, file,
 * sessions.json, redis, daemon, object, …); `server`: where a network
 * store connects (host:port, a socket path), or undefined.
 */
class Meter {
  constructor(kind, server, { sync = false } = {}) {
    this.kind = kind
    this.server = server
    this.sample = sync ? SYNC_SAMPLE : 1
    this.ops = new Map() // name → OpRecord, in the order methods were made
    this.errors = new Map() // code → n
    this.inFlight = 0
    /** The OpRecord of the call being made (set around a method's body), TAKEN, or null. */
    this.current = null
    this.t0 = 0
    /** Gets every timed call: (name, ms) (lib/prometheus.js), or null. */
    this.onTime = null
  }

  op(name) {
    let r = this.ops.get(name)
    if (!r) this.ops.set(name, (r = new OpRecord(name, this.sample)))
    return r
  }

  /** A call of `r` that was timed from `t0` (0: not timed) ended; `err` when it failed. */
  settle(r, t0, err, now) {
    if (err !== undefined) {
      const code = (err && typeof err.code === 'string' && err.code) || 'ERR_INTERNAL'
      this.errors.set(code, (this.errors.get(code) || 0) + 1)
    }
    if (t0 > 0) {
      const ms = (now || performance.now()) - t0
      r.time(ms)
      if (this.onTime !== null) this.onTime(r.name, ms)
    }
  }

  /** store.stats()'s common part; `extra` adds what the backend counts. */
  stats(extra) {
    const calls = {}
    const latency = {}
    for (const r of this.ops.values()) {
      if (r.calls) calls[r.name] = r.calls
      if (r.count) latency[r.name] = { count: r.count, p50Ms: r.quantile(0.5), p99Ms: r.quantile(0.99) }
    }
    const server = this.server === undefined ? {} : { server: this.server }
    return { store: this.kind, ...server, calls, errors: Object.fromEntries(this.errors), inFlight: this.inFlight, latency, ...extra }
  }
}

/**
 * One call of method `r` through `impl(a, b, c, d)`, which returns a value
 * (an in-process store's answer), a Promise, or throws; `reject(e)` turns
 * what it throws into the store's rejected Promise. Resolves what the
 * method resolves; never throws.
 */
function run(meter, r, impl, reject, a, b, c, d) {
  r.calls++
  let t0 = 0
  if (--r.next === 0) {
    r.next = r.sample
    t0 = performance.now()
  }
  const outer = meter.current
  meter.current = r
  meter.t0 = t0
  let v
  try {
    v = impl(a, b, c, d)
  } catch (e) {
    meter.current = outer
    meter.settle(r, t0, e)
    return reject(e)
  }
  const taken = meter.current === TAKEN
  meter.current = outer
  if (taken) return v // the batch engine settles it (lib/batch.js)
  if (v instanceof Promise) {
    // An async method (locks, close): few calls, a `then` of its own.
    meter.inFlight++
    return v.then(
      (x) => {
        meter.inFlight--
        meter.settle(r, t0)
        return x
      },
      (e) => {
        meter.inFlight--
        meter.settle(r, t0, e)
        throw e
      },
    )
  }
  meter.settle(r, t0)
  return Promise.resolve(v)
}

/** run() inside the channel's start/end, publishing as the call settles. */
function traced(meter, r, impl, reject, a, b, c, d) {
  const ctx = meter.server === undefined ? { op: r.name, store: meter.kind } : { op: r.name, store: meter.kind, server: meter.server }
  return start.runStores(ctx, () => {
    let p
    try {
      p = run(meter, r, impl, reject, a, b, c, d)
    } finally {
      end.publish(ctx)
    }
    return p.then(
      (x) => {
        asyncStart.publish(ctx)
        asyncEnd.publish(ctx)
        return x
      },
      (e) => {
        ctx.error = e
        error.publish(ctx)
        asyncStart.publish(ctx)
        asyncEnd.publish(ctx)
        throw e
      },
    )
  })
}

/** Store method `name` over `impl`, observed (see the module comment). */
function method(meter, name, impl, reject) {
  const r = meter.op(name)
  return function observed(a, b, c, d) {
    return channel.hasSubscribers ? traced(meter, r, impl, reject, a, b, c, d) : run(meter, r, impl, reject, a, b, c, d)
  }
}

/** Where a store keeps its Meter (for lib/prometheus.js). */
const METER = Symbol.for('rs-store.meter')

module.exports = { CHANNEL, channel, Meter, TAKEN, METER, method, BOUNDS_MS, SYNC_SAMPLE }
