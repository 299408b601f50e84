'use strict'
// Observability (docs/observability.md): the `rs-store:op` TracingChannel,
// store.stats(), store.ping() and the Prometheus entry, on every store
// kind against real servers (redis-server, the daemon, s3rver, Azurite).
const test = require('node:test')
const assert = require('node:assert/strict')
const dc = require('node:diagnostics_channel')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { startRedis, startCluster, freePort, waitFor } = require('./support/redis-servers')
const { startDaemon } = require('./support/daemon')
const { startAzurite, AZURITE_KEY } = require('./support/azurite')

const tmp = (n) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-obs-${n}-`))
// What must never be in a context: the session id and the session's data.
const SID = 'sid-7f3a9c-bearer-credential'
const SECRET = 'secret-session-payload-41d2'
const EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error']

/** Subscribes to rs-store:op; `events` are [event, context] in the order published. */
function capture() {
  const tc = dc.tracingChannel('rs-store:op')
  const events = []
  const handlers = Object.fromEntries(EVENTS.map((e) => [e, (ctx) => events.push([e, ctx, JSON.stringify({ ...ctx, error: ctx.error && { code: ctx.error.code, message: ctx.error.message } })])]))
  tc.subscribe(handlers)
  return { events, stop: () => tc.unsubscribe(handlers) }
}

/** Groups captured events by context, in call order: [{ ctx, seq: ['start', …] }]. */
function calls(events) {
  const by = new Map()
  for (const [e, ctx] of events) {
    if (!by.has(ctx)) by.set(ctx, { ctx, seq: [] })
    by.get(ctx).seq.push(e)
  }
  return [...by.values()]
}

const OK = ['start', 'end', 'asyncStart', 'asyncEnd']
const FAILED = ['start', 'end', 'error', 'asyncStart', 'asyncEnd']

/**
 * The same calls on any store, traced: each publishes one context with the
 * op, the store's kind and (network stores) server, the events in
 * tracePromise's order, the coded error on failure, and never the id or
 * the session; stats() counts them.
 */
async function exercise(store, kind, server) {
  const before = store.stats()
  assert.equal(before.store, kind)
  const cap = capture()
  try {
    await store.set(SID, { secret: SECRET }, 60_000)
    assert.deepEqual(await store.get(SID), { secret: SECRET })
    assert.equal(await store.exists(SID), true)
    assert.equal(typeof (await store.ttl(SID)), 'number')
    assert.equal(await store.update(SID, 60_000), true)
    await assert.rejects(store.set(SID, { secret: SECRET }, -1), { code: 'ERR_INVALID_TIMEOUT' })
    assert.equal(await store.destroy(SID), true) // counted as remove
    assert.equal(await store.get(SID), null)
  } finally {
    cap.stop()
  }
  const seen = calls(cap.events)
  assert.deepEqual(
    seen.map((c) => c.ctx.op),
    ['set', 'get', 'exists', 'ttl', 'update', 'set', 'remove', 'get'],
  )
  for (const { ctx, seq } of seen) {
    assert.equal(ctx.store, kind)
    if (server === undefined) assert.ok(!('server' in ctx), JSON.stringify(ctx))
    else assert.equal(ctx.server, server)
    assert.ok(!('result' in ctx), 'no result: it would be session data')
    assert.deepEqual(seq, ctx.error ? FAILED : OK, ctx.op)
  }
  const failed = seen.filter((c) => c.ctx.error)
  assert.equal(failed.length, 1)
  assert.equal(failed[0].ctx.error.code, 'ERR_INVALID_TIMEOUT')
  for (const [, , json] of cap.events) {
    assert.ok(!json.includes(SID) && !json.includes(SECRET), `no session id nor data in a context: ${json}`)
  }
  const after = store.stats()
  const delta = (o, k) => (after[o][k] || 0) - (before[o][k] || 0)
  assert.deepEqual(
    ['set', 'get', 'exists', 'ttl', 'update', 'remove'].map((op) => delta('calls', op)),
    [2, 2, 1, 1, 1, 1],
  )
  assert.equal(delta('errors', 'ERR_INVALID_TIMEOUT'), 1)
  assert.equal(after.inFlight, 0)
  for (const op of ['set', 'get', 'exists', 'ttl', 'update', 'remove']) {
    const l = after.latency[op]
    assert.ok(l && l.count >= 1 && l.p50Ms >= 0 && l.p99Ms >= l.p50Ms, `${op}: ${JSON.stringify(l)}`)
  }
  assert.ok(!JSON.stringify(after).includes(SID))
  return after
}

/** Calls at once on a batched store: all in flight together, then none; every one counted and timed. */
async function concurrent(store, n = 50) {
  const before = store.stats()
  const ps = []
  for (let i = 0; i < n; i++) ps.push(store.get(`c${i}`))
  assert.equal(store.stats().inFlight, before.inFlight + n)
  await Promise.all(ps)
  const after = store.stats()
  assert.equal(after.inFlight, 0)
  assert.equal(after.calls.get - (before.calls.get || 0), n)
  assert.equal(after.latency.get.count - ((before.latency.get && before.latency.get.count) || 0), n)
}

/** ping() up: the ms it took, traced as op ping (no id in it), counted. */
async function pingUp(store, kind) {
  const before = store.stats().calls.ping || 0
  const cap = capture()
  let ms
  try {
    ms = await store.ping()
  } finally {
    cap.stop()
  }
  assert.equal(typeof ms, 'number')
  assert.ok(ms >= 0 && ms < 60_000, String(ms))
  assert.deepEqual(calls(cap.events).map((c) => [c.ctx.op, c.ctx.store, c.seq]), [['ping', kind, OK]])
  assert.equal(store.stats().calls.ping, before + 1)
  return ms
}

/** ping() down: rejects with `code`, published as the call's error, counted. */
async function pingDown(store, code) {
  const before = store.stats().errors[code] || 0
  const cap = capture()
  try {
    await assert.rejects(store.ping(), { code })
  } finally {
    cap.stop()
  }
  const seen = calls(cap.events)
  assert.deepEqual(seen.map((c) => [c.ctx.op, c.seq]), [['ping', FAILED]])
  assert.equal(seen[0].ctx.error.code, code)
  assert.equal(store.stats().errors[code], before + 1)
}

test('memory: traced calls, stats; calls timed one in 16 per op, the first one always', async () => {
  const store = rs.memory()
  try {
    await exercise(store, 'memory')
    await pingUp(store, 'memory')
    for (let i = 0; i < 100; i++) await store.set(`k${i}`, { i }, 60_000)
    const s = store.stats()
    assert.equal(s.calls.set, 102)
    assert.equal(s.latency.set.count, Math.ceil(102 / 16))
    assert.ok(s.locks, 'memory has locks, and their counters')
    assert.deepEqual(s.memory, { entries: 100, bytes: s.memory.bytes, evictions: 0 })
    assert.ok(s.memory.bytes > 100 * 10, JSON.stringify(s.memory))
  } finally {
    await store.close()
  }
  // evictions: what the bounds cost, counted (sessions set at once by several users)
  const small = rs.memory({ maxEntries: 10 })
  await Promise.all(Array.from({ length: 25 }, (_, i) => small.set(`u${i}`, { i }, 60_000)))
  assert.deepEqual({ ...small.stats().memory, bytes: 0 }, { entries: 10, bytes: 0, evictions: 15 })
  await small.close()
  assert.equal(small.stats().memory, undefined, 'a closed store holds nothing')
  assert.equal(store.stats().calls.close, 1)
  await pingDown(store, 'ERR_STORE_CLOSED')
})

test('file and sessions.json: traced calls, stats (the file store counts its cache hits)', async () => {
  const file = rs.file({ dir: tmp('file') })
  const snap = rs.file({ sessionStateFile: path.join(tmp('json'), 'sessions.json') })
  try {
    const s = await exercise(file, 'file')
    assert.equal(s.cache.hits + s.cache.misses, 2, 'two gets, each from the cache or the disk')
    await concurrent(file)
    await pingUp(file, 'file')
    await exercise(snap, 'sessions.json')
    await pingUp(snap, 'sessions.json')
    const cap = capture()
    await snap.flush()
    cap.stop()
    assert.deepEqual(calls(cap.events).map((c) => [c.ctx.op, c.ctx.store]), [['flush', 'sessions.json']])
  } finally {
    await file.close()
    await snap.close()
  }
})

test('locks: lock, unlock and renew are traced; waits, timeouts and losses counted', async () => {
  const store = rs.memory()
  try {
    const cap = capture()
    const held = await store.lock(SID, { ttlMs: 60 })
    await assert.rejects(store.lock(SID, { waitMs: 30 }), { code: 'ERR_LOCK_TIMEOUT' })
    const next = store.lock(SID, { waitMs: 5000 })
    await new Promise((r) => setTimeout(r, 50)) // a renewal is due every ttlMs/3 = 20 ms
    await held.release()
    await (await next).release()
    cap.stop()
    const ops = calls(cap.events).map((c) => c.ctx.op)
    assert.ok(ops.includes('renew'), ops.join())
    assert.deepEqual(ops.filter((o) => o !== 'renew'), ['lock', 'lock', 'lock', 'unlock', 'unlock'])
    for (const [, , json] of cap.events) assert.ok(!json.includes(SID), json)
    const s = store.stats()
    assert.deepEqual(s.locks, { acquired: 2, waited: 1, timeouts: 1, lost: 0 })
    assert.equal(s.errors.ERR_LOCK_TIMEOUT, 1)
  } finally {
    await store.close()
  }
})

test('redis (JS socket and ioThread) and the daemon: traced with their server; concurrent calls in flight', async () => {
  const redis = await startRedis()
  const d = await startDaemon(0)
  const stores = [
    [rs.redis(redis.url), 'redis', `127.0.0.1:${redis.port}`],
    [rs.redis({ url: redis.url, ioThread: true }), 'redis', `127.0.0.1:${redis.port}`],
    [rs.daemon(d.port), 'daemon', `127.0.0.1:${d.port}`],
  ]
  try {
    for (const [store, kind, server] of stores) {
      const s = await exercise(store, kind, server)
      assert.equal(s.server, server)
      await concurrent(store)
      await pingUp(store, kind)
    }
    // the JS socket counts its connections
    assert.deepEqual(stores[0][0].stats().connections, { opened: 1, failed: 0, lost: 0 })
  } finally {
    for (const [store] of stores) await store.close()
    await redis.stop()
    await d.stop()
  }
})

test('a Redis that is down: the error event carries ERR_STORE_UNAVAILABLE; stats count it', async () => {
  const port = await freePort() // nothing listens there
  for (const ioThread of [false, true]) {
    const store = rs.redis({ port, connectTimeoutMs: 1000, commandTimeoutMs: 1000, ioThread })
    const cap = capture()
    try {
      await assert.rejects(store.get(SID), { code: 'ERR_STORE_UNAVAILABLE' })
      await assert.rejects(store.set(SID, { secret: SECRET }, 1000), { code: 'ERR_STORE_UNAVAILABLE' })
    } finally {
      cap.stop()
    }
    const seen = calls(cap.events)
    assert.deepEqual(seen.map((c) => [c.ctx.op, c.ctx.server, c.seq]), [
      ['get', `127.0.0.1:${port}`, FAILED],
      ['set', `127.0.0.1:${port}`, FAILED],
    ])
    assert.ok(seen.every((c) => c.ctx.error.code === 'ERR_STORE_UNAVAILABLE'))
    for (const [, , json] of cap.events) assert.ok(!json.includes(SID) && !json.includes(SECRET), json)
    const s = store.stats()
    assert.equal(s.errors.ERR_STORE_UNAVAILABLE, 2)
    assert.equal(s.inFlight, 0)
    if (!ioThread) assert.ok(s.connections.failed >= 1, JSON.stringify(s.connections))
    await store.close()
  }
})

test('object storage on s3rver, Azurite and a directory: traced with the endpoint as server', { timeout: 120_000 }, async () => {
  const S3rver = require('s3rver')
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: tmp('s3rver'), configureBuckets: [{ name: 'synchro-apps' }] })
  const { port } = await s3.run()
  const az = await startAzurite('sessions-bucket')
  const azPort = new URL(az.endpoint).port
  const stores = [
    [rs.objectStore({ provider: 'amazon', keyId: 'S3RVER', key: 'S3RVER', endpoint: `http://127.0.0.1:${port}` }), `127.0.0.1:${port}`],
    [rs.objectStore({ provider: 'azure', storageAccount: 'devstoreaccount1', storageAccessKey: AZURITE_KEY, endpoint: az.endpoint, container: 'sessions-bucket' }), `127.0.0.1:${azPort}`],
    [rs.objectStore({ directory: tmp('objects') }), undefined],
  ]
  try {
    for (const [store, server] of stores) {
      await exercise(store, 'object', server)
      await concurrent(store, 10)
      await pingUp(store, 'object')
    }
  } finally {
    for (const [store] of stores) await store.close()
    await s3.close()
    az.stop()
  }
})

test('nothing is published and no context made while nobody subscribes', async () => {
  const store = rs.memory()
  const tc = dc.tracingChannel('rs-store:op')
  assert.equal(tc.hasSubscribers, false)
  // every context enters through start.runStores (lib/observe.js): count its uses
  let entered = 0
  const through = tc.start.runStores
  tc.start.runStores = function (...args) {
    entered++
    return through.apply(this, args)
  }
  try {
    await store.set('a', { n: 1 }, 1000)
    await store.get('a')
    assert.equal(entered, 0)
    // a subscriber to asyncEnd alone is a subscriber: contexts are made
    const seen = []
    const onEnd = (ctx) => seen.push(ctx.op)
    tc.asyncEnd.subscribe(onEnd)
    await store.get('a')
    tc.asyncEnd.unsubscribe(onEnd)
    assert.deepEqual(seen, ['get'])
    assert.equal(entered, 1)
    await store.get('a')
    assert.equal(entered, 1)
  } finally {
    delete tc.start.runStores
  }
  assert.equal(store.stats().calls.get, 3)
  await store.close()
})

test('postgres: traced with its server; stats; calls in flight', { timeout: 120_000 }, async () => {
  const { startPostgres } = require('./support/postgres-server')
  let server = await startPostgres()
  const store = rs.postgres({ url: server.url, table: 'obs_sessions' })
  try {
    const s = await exercise(store, 'postgres', `127.0.0.1:${server.port}`)
    assert.ok(s.locks, 'postgres has locks')
    await concurrent(store)
    await pingUp(store, 'postgres')
    // the server stopped: the health check fails with the code calls get; back once it is
    await server.stop()
    await pingDown(store, 'ERR_STORE_UNAVAILABLE')
    server = await server.restart()
    await waitFor('the pool to reach the restarted server', async () => (await store.ping().then(() => true, () => false)))
    await pingUp(store, 'postgres')
  } finally {
    await store.close()
    await server.destroy()
  }
})

test('ping() down and back: a stopped Redis (both paths), a Cluster master, the daemon, a removed directory, a stopped s3rver', { timeout: 120_000 }, async () => {
  // a Cluster: every master answers, or the ping fails
  const cluster = await startCluster(3)
  const spread = rs.redis({ nodes: cluster.nodes.map((n) => `127.0.0.1:${n.port}`), commandTimeoutMs: 2000 })
  try {
    await pingUp(spread, 'redis')
    const memo = rs.memoized(spread)
    assert.equal(typeof (await memo.ping()), 'number', 'memoized pings its inner store')
    await memo.close()
    await cluster.nodes[2].stop()
    await pingDown(spread, 'ERR_STORE_UNAVAILABLE')
  } finally {
    await spread.close()
    await cluster.stop()
  }

  let redis = await startRedis()
  const stores = [rs.redis({ url: redis.url, commandTimeoutMs: 2000 }), rs.redis({ url: redis.url, ioThread: true, commandTimeoutMs: 2000 })]
  try {
    for (const store of stores) await pingUp(store, 'redis')
    await redis.stop()
    for (const store of stores) await pingDown(store, 'ERR_STORE_UNAVAILABLE')
    redis = await redis.restart()
    for (const store of stores) {
      await waitFor('the store to reconnect', async () => store.ping().then(() => true, () => false))
      await pingUp(store, 'redis')
    }
  } finally {
    for (const store of stores) await store.close()
    await redis.stop()
  }

  const d = await startDaemon(0)
  const daemon = rs.daemon({ port: d.port, commandTimeoutMs: 2000 })
  try {
    await pingUp(daemon, 'daemon')
    await d.stop()
    await pingDown(daemon, 'ERR_STORE_UNAVAILABLE')
  } finally {
    await daemon.close()
  }

  const dir = tmp('gone')
  const file = rs.file({ dir })
  try {
    await pingUp(file, 'file')
    fs.rmSync(dir, { recursive: true, force: true })
    await pingDown(file, 'ERR_STORE_IO')
  } finally {
    await file.close()
  }

  const S3rver = require('s3rver')
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: tmp('s3down'), configureBuckets: [{ name: 'synchro-apps' }] })
  const { port } = await s3.run()
  const object = rs.objectStore({ provider: 'amazon', keyId: 'S3RVER', key: 'S3RVER', endpoint: `http://127.0.0.1:${port}`, commandTimeoutMs: 3000 })
  try {
    await pingUp(object, 'object')
    await s3.close()
    await pingDown(object, 'ERR_STORE_UNAVAILABLE')
  } finally {
    await object.close()
  }
})

test('rs-store/prometheus: calls, errors, in flight and durations of two stores, parsed from the registry', async () => {
  const prom = require('prom-client')
  const { register } = require('rs-store/prometheus')
  const registry = new prom.Registry()
  const redis = await startRedis()
  const mem = rs.memory()
  const net = rs.redis(redis.url)
  try {
    const off = register(registry, mem)
    register(registry, net, { name: 'sessions' })
    assert.throws(() => register(registry, rs.memory()), { code: 'ERR_ALREADY_EXISTS' }, 'one name per registry')
    assert.throws(() => register(registry, {}), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => register({}, mem), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => register(registry, net, { nmae: 'x' }), { code: 'ERR_INVALID_OPTION' })
    // several users at once on each store
    await Promise.all(Array.from({ length: 40 }, (_, i) => mem.set(`m${i}`, { i }, 60_000)))
    await Promise.all(Array.from({ length: 40 }, (_, i) => net.set(`r${i}`, { i }, 60_000)))
    await Promise.all(Array.from({ length: 40 }, (_, i) => net.get(`r${i}`)))
    await assert.rejects(net.set('x', {}, -1), { code: 'ERR_INVALID_TIMEOUT' })
    const pending = Array.from({ length: 10 }, (_, i) => net.get(`r${i}`))
    const during = await registry.getSingleMetric('rs_store_in_flight').get()
    await Promise.all(pending)

    const text = await registry.metrics()
    const sample = (name, labels) => {
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
      const line = text.split('\n').find((l) => l.startsWith(name + '{') && want.every((w) => l.includes(w)) && (labels.le !== undefined || !l.includes('le=')))
      assert.ok(line, `${name} ${JSON.stringify(labels)} in\n${text}`)
      return Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    assert.match(text, /# TYPE rs_store_calls_total counter/)
    assert.match(text, /# TYPE rs_store_call_duration_seconds histogram/)
    assert.equal(sample('rs_store_calls_total', { store: 'memory', op: 'set' }), 40)
    assert.equal(sample('rs_store_calls_total', { store: 'sessions', op: 'set' }), 41)
    assert.equal(sample('rs_store_calls_total', { store: 'sessions', op: 'get' }), 50)
    assert.equal(sample('rs_store_errors_total', { store: 'sessions', code: 'ERR_INVALID_TIMEOUT' }), 1)
    assert.equal(during.values.find((v) => v.labels.store === 'sessions').value, 10)
    assert.equal(sample('rs_store_in_flight', { store: 'sessions' }), 0)
    // every Redis call is timed; the in-process store one in 16 (its first one)
    assert.equal(sample('rs_store_call_duration_seconds_count', { store: 'sessions', op: 'get' }), 50)
    assert.equal(sample('rs_store_call_duration_seconds_bucket', { store: 'sessions', op: 'get', le: '+Inf' }), 50)
    assert.equal(sample('rs_store_call_duration_seconds_count', { store: 'memory', op: 'set' }), mem.stats().latency.set.count)
    // the counts follow the stores between scrapes; an unregistered store is gone
    await mem.get('m1')
    off()
    await net.get('r1')
    const again = await registry.metrics()
    assert.ok(!again.includes('store="memory"'), again)
    assert.match(again, /rs_store_calls_total\{store="sessions",op="get"\} 51/)
  } finally {
    await mem.close()
    await net.close()
    await redis.stop()
  }
})
