'use strict'
// The engine adapter for native stores that do I/O (src/binding/async_store.rs).
// `create(onDone)` returns the native store, or { native, io } when its I/O
// is driven from JS (lib/redis-wire.js): native queues the calls, io sends
// them (`flush(n)`) and closes.
// Each call is an op as data (`call(op, id, text, ms, map)`), queued natively
// at once (arguments checked at call time); one flush per tick hands the
// tick's calls over as one batch, and the replies come back in call order
// through `onDone`, so the pending Promises are settled from a FIFO. A call's
// `map` is applied to its reply before resolving (one Promise per call, not
// two). While calls are pending a ref'd timer handle keeps Node alive; when
// idle it is unref'd, so an idle store never holds a process open.
//
// A tick is one turn of the event loop: the flush is a setImmediate, as
// node-redis schedules its writes, so the calls of every I/O callback of one
// turn (the HTTP requests that arrived together) go out as one batch: one
// write to Redis, one hand-over to the file store's thread. A microtask per
// callback made that a write per request in an express app (the README's
// benchmarks have the figures).
//
// `getNow` (the file store's fast reads): a get asks native.getNow(id) first,
// which answers at once when it can do so without waiting on I/O, but only
// while no change to that id (set/remove/update, or a clear) is pending, so
// calls on one id still apply in call order.
const { performance } = require('node:perf_hooks')
const { codedError, fromNative } = require('./errors')
const { Meter, TAKEN } = require('./observe')

const noop = () => {}
const EAGER = 32
const COMPACT = 256
const ALL = Symbol('every id')

/**
 * The calls awaiting replies, in call order, and `onDone`, which settles
 * them. Made outside batchEngine's scope on purpose: the native store holds
 * `onDone` through a threadsafe function, which is a GC root, so nothing
 * `onDone` reaches may lead back to the native store, or a store dropped
 * without close() would never be collected (nor its threads, files and
 * memory released by its finalizer).
 */
function replyQueue(getNow, keepAlive) {
  const q = {
    resolvers: [],
    rejecters: [],
    mappers: [], // per call: maps the raw reply before resolving (or null)
    changes: [], // per call (getNow only): the id it changes, ALL, or undefined
    tags: [], // per call: the store method's OpRecord (lib/observe.js), or null
    starts: [], // per call: when it was queued (performance.now())
    meter: new Meter('', undefined), // the store's (makeStore sets it): stats()
    changing: new Map(), // id → pending changes (getNow only)
    changingAll: 0,
    head: 0,
    flushedTo: 0,
    /** The engine was garbage-collected: stop the keep-alive timer once idle. */
    dropped: false,
    mark,
    onDone,
  }

  function mark(change, by) {
    if (change === undefined) return
    if (change === ALL) q.changingAll += by
    else {
      const n = (q.changing.get(change) || 0) + by
      if (n === 0) q.changing.delete(change)
      else q.changing.set(change, n)
    }
  }

  function onDone(replies) {
    const { resolvers, rejecters, mappers, changes, tags, starts, meter } = q
    const now = performance.now()
    for (let k = 0; k < replies.length; k++) {
      const r = replies[k]
      const i = q.head++
      if (getNow) mark(changes[i], -1)
      const tag = tags[i]
      if (r instanceof Error) {
        const e = fromNative(r)
        if (tag !== null) done(meter, tag, starts[i], e, now)
        rejecters[i](e)
      } else if (mappers[i] === null) {
        if (tag !== null) done(meter, tag, starts[i], undefined, now)
        resolvers[i](r)
      } else {
        let v
        try {
          v = mappers[i](r)
        } catch (e) {
          if (tag !== null) done(meter, tag, starts[i], e, now)
          rejecters[i](e)
          continue
        }
        if (tag !== null) done(meter, tag, starts[i], undefined, now)
        resolvers[i](v)
      }
    }
    if (q.head === resolvers.length) {
      q.resolvers = []
      q.rejecters = []
      q.mappers = []
      q.changes = []
      q.tags = []
      q.starts = []
      q.head = 0
      q.flushedTo = 0
      if (q.dropped) clearInterval(keepAlive)
      else keepAlive.unref()
    } else if (q.head >= COMPACT && q.head * 2 >= resolvers.length) {
      // Under steady load the queue is never empty at this point: drop the
      // answered calls, or it grows with every call made (and the GC pays).
      resolvers.splice(0, q.head)
      rejecters.splice(0, q.head)
      mappers.splice(0, q.head)
      tags.splice(0, q.head)
      starts.splice(0, q.head)
      if (getNow) changes.splice(0, q.head)
      q.flushedTo -= q.head
      q.head = 0
    }
  }
  return q
}

/** A store method's call answered (see lib/observe.js). */
function done(meter, tag, t0, err, now) {
  meter.inFlight--
  meter.settle(tag, t0, err, now)
}

/** Ends the keep-alive timer of an engine dropped without close(). */
const dropped = new FinalizationRegistry(({ q, keepAlive }) => {
  q.dropped = true
  if (q.head === q.resolvers.length) clearInterval(keepAlive)
})

/**
 * `locks`: the backend has a lock manager (the lock/unlock/renew ops);
 * `kind`, `server`: what stats() and the tracing channel call the store
 * (lib/observe.js).
 */
function batchEngine(create, { locks = false, getNow = false, kind, server } = {}) {
  let scheduled = false
  let closed = false
  const keepAlive = setInterval(noop, 2 ** 30)
  keepAlive.unref()
  const q = replyQueue(getNow, keepAlive)
  const { mark } = q
  const made = create(q.onDone)
  const native = made.native || made
  const io = made.io || native

  function flush() {
    scheduled = false
    const n = q.resolvers.length
    if (q.flushedTo === n) return
    const from = q.flushedTo
    try {
      // (io may answer calls at once, e.g. when it cannot connect.)
      q.flushedTo = n
      io.flush(n - from)
    } catch (e) {
      // Nothing of this tick reached the dispatcher: fail exactly those calls.
      q.flushedTo = from
      const failed = q.rejecters.splice(from)
      q.resolvers.splice(from)
      q.mappers.splice(from)
      const tags = q.tags.splice(from)
      const starts = q.starts.splice(from)
      if (getNow) for (const c of q.changes.splice(from)) mark(c, -1)
      if (q.head === q.resolvers.length) keepAlive.unref()
      const err = fromNative(e)
      const now = performance.now()
      for (let i = 0; i < failed.length; i++) {
        if (tags[i] !== null) done(q.meter, tags[i], starts[i], err, now)
        failed[i](err)
      }
    }
  }

  function pending(map = null, change = undefined) {
    if (q.head === q.resolvers.length) keepAlive.ref()
    const promise = new Promise((resolve, reject) => {
      q.resolvers.push(resolve)
      q.rejecters.push(reject)
    })
    q.mappers.push(map)
    // The store method being called (lib/observe.js) is answered here.
    const m = q.meter
    const tag = m.current
    if (tag !== null && tag !== TAKEN) {
      m.current = TAKEN
      m.inFlight++
      q.tags.push(tag)
      q.starts.push(m.t0 > 0 ? m.t0 : performance.now())
    } else {
      q.tags.push(null)
      q.starts.push(0)
    }
    if (getNow) {
      q.changes.push(change)
      mark(change, 1)
    }
    // Flush early once EAGER calls are queued, so Redis works on them while
    // this tick goes on producing more; the rest goes at the end of the tick.
    if (q.resolvers.length - q.flushedTo >= EAGER) flush()
    else if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
    return promise
  }

  function open() {
    if (closed) throw codedError('ERR_STORE_CLOSED', 'the store is closed')
  }

  let hits = 0 // gets answered by getNow
  let misses = 0 // gets that went to the backend
  const engine = {
    kind,
    server,
    locks,
    /** The store's counters (lib/observe.js), which this engine's replies settle. */
    observe(meter) {
      q.meter = meter
    },
    /** What stats() adds for this engine. */
    counters: () => ({ ...(getNow && { cache: { hits, misses } }), ...(io.counters && io.counters()) }),
    /** One op, given as data (see Op::from_call in src/backend/op.rs). */
    call(op, id, text, ms, map = null) {
      open()
      if (getNow && op === 'get') {
        const now = q.changingAll === 0 && !q.changing.has(id) ? native.getNow(id) : undefined
        if (now !== undefined) {
          hits++
          return map(now)
        }
        misses++
      }
      // What the op changes: 0 nothing, 1 its id, 2 every session.
      const changes = native.q(op, id, text, ms)
      return pending(map, changes === 0 ? undefined : changes === 1 ? id : ALL)
    },
    close() {
      if (closed) return undefined
      closed = true
      flush()
      io.close() // closes once every call is answered; one more reply
      q.flushedTo = q.resolvers.length + 1
      const done = pending()
      scheduled = true // nothing more to flush: the scheduled flush must not run native.flush
      return done.finally(() => clearInterval(keepAlive))
    },
  }
  dropped.register(engine, { q, keepAlive })
  return engine
}

module.exports = { batchEngine }
