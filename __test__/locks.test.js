'use strict'
// Locks (memory, Redis and file lock managers), HTTP Sessions' storage shape
// and the memoized store. The daemon's locks are in daemon.test.js.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const rs = require('..')
const { startRedis, sleep, waitFor } = require('./support/redis-servers')
const { counterRace, lockHolder } = require('./support/counter-race')


test('memory locks: exclusive, FIFO within a process, ERR_LOCK_TIMEOUT, lost updates prevented', async () => {
  const store = rs.memory()
  await store.set('counter', { n: 0 }, 60_000)
  // 200 concurrent read-increment-write cycles with an await between read and write
  const cycle = () =>
    store.withLock('counter', async () => {
      const s = await store.get('counter')
      await sleep(0)
      await store.set('counter', { n: s.n + 1 }, 60_000)
    })
  await Promise.all(Array.from({ length: 200 }, cycle))
  assert.equal((await store.get('counter')).n, 200)
  // the same without locks loses updates (proves the test can fail)
  await store.set('counter', { n: 0 }, 60_000)
  await Promise.all(
    Array.from({ length: 200 }, async () => {
      const s = await store.get('counter')
      await sleep(0)
      await store.set('counter', { n: s.n + 1 }, 60_000)
    }),
  )
  assert.ok((await store.get('counter')).n < 200, 'unlocked cycles lose updates')

  // FIFO order of waiters
  const order = []
  const first = await store.lock('q')
  const waiters = [1, 2, 3].map((i) => store.lock('q').then((l) => (order.push(i), l.release())))
  await sleep(10)
  await first.release()
  await Promise.all(waiters)
  assert.deepEqual(order, [1, 2, 3])

  // waitMs exceeded
  const held = await store.lock('busy', { ttlMs: 60_000 })
  await assert.rejects(store.lock('busy', { waitMs: 30 }), (e) => e.code === 'ERR_LOCK_TIMEOUT')
  await held.release()
  const again = await store.lock('busy', { waitMs: 30 })
  await again.release()
  await assert.rejects(store.lock('x', { ttlMs: -1 }), (e) => e.code === 'ERR_INVALID_TIMEOUT')
  await store.close()
})

test('HTTP Sessions shape: read / write(expiresAt, release) / purge, with a bare id or a lock', async () => {
  const store = rs.memory()
  await store.write('s1', { a: 1 }, Date.now() + 60_000)
  assert.deepEqual(await store.read('s1'), { a: 1 })
  const lock = await store.lock('s1')
  assert.deepEqual(await store.read(lock), { a: 1 })
  await store.write(lock, { a: 2 }, Date.now() + 30 * 86_400_000, true)
  assert.equal(lock.released, true, 'write(…, release) released the lock')
  assert.equal(await store.ttl('s1'), 30 * 86_400, 'a 30-day expiry survives (no timer overflow)')
  await store.purge('s1')
  assert.equal(await store.read('s1'), null)
  const l2 = await store.lock('s2')
  await store.write(l2, { b: 1 })
  await store.purge(l2)
  assert.equal(l2.released, true, 'purge releases')
  // DummyStorage: the backend grants every lock and stores nothing; waiters
  // of one process still queue (the in-process FIFO is every store's)
  const d = rs.dummy()
  const a = await d.lock('x')
  const b = d.lock('x', { waitMs: 1000 })
  await a.release()
  await (await b).release()
  await d.write('x', { y: 1 })
  assert.equal(await d.read('x'), null)
  await store.close()
})

test('redis locks: two OS processes × 5,000 locked cycles lose nothing; without locks they do', { timeout: 180_000 }, async () => {
  const redis = await startRedis()
  try {
    const expr = `rs.redis({ url: ${JSON.stringify(redis.url)}, prefix: 'cnt:' })`
    const setup = rs.redis({ url: redis.url, prefix: 'cnt:' })
    const run = (locked, cycles) => counterRace(expr, setup, { locked, cycles })
    assert.equal(await run(true, 5000), 10_000, 'exact with the Redis lock')
    assert.ok((await run(false, 2000)) < 4000, 'without locks, updates are lost')
    await setup.close()
    // lock keys never show up as sessions
    const s = rs.redis({ url: redis.url, prefix: 'cnt:' })
    const l = await s.lock('counter')
    assert.equal(await s.length(), 1)
    assert.equal(await redis.cli('eval', "return #redis.call('keys', '*lock:cnt:counter')", '0'), '1')
    await l.release()
    assert.equal(await redis.cli('eval', "return #redis.call('keys', '*lock:cnt:counter')", '0'), '0')
    await s.close()
  } finally {
    await redis.stop()
  }
})

test('redis locks: a lock dies with its holder (killed process) after ttlMs; renewal keeps a live one', { timeout: 60_000 }, async () => {
  const redis = await startRedis()
  try {
    const holder = await lockHolder(`rs.redis(${JSON.stringify(redis.url)})`, 'shared', { ttlMs: 500 })
    const s = rs.redis(redis.url)
    // renewed while the holder lives: still held after 2 × ttl
    await sleep(1000)
    await assert.rejects(s.lock('shared', { waitMs: 50 }), (e) => e.code === 'ERR_LOCK_TIMEOUT')
    holder.kill('SIGKILL')
    const t0 = Date.now()
    const mine = await s.lock('shared', { waitMs: 3000 })
    assert.ok(Date.now() - t0 < 1500, 'taken over once the dead holder ttl ran out')
    await mine.release()
    await s.close()
  } finally {
    await redis.stop()
  }
})

for (const kind of ['redis', 'daemon']) {
  test(`${kind} locks: a lock the backend forgot in a restart is reported lost to its holder (lock.lost, lock.signal, onError), for every holder at once`, { timeout: 60_000 }, async () => {
    const { startDaemon } = require('./support/daemon')
    let server = kind === 'redis' ? await startRedis() : await startDaemon(0)
    const reports = []
    const open = () => (kind === 'redis' ? rs.redis({ url: server.url, onError: (e) => reports.push(e) }) : rs.daemon({ port: server.port, onError: (e) => reports.push(e) }))
    const stores = [open(), open()]
    try {
      // 10 holders over two connections, each on its own id
      const locks = await Promise.all(Array.from({ length: 10 }, (_, i) => stores[i % 2].lock(`held-${i}`, { ttlMs: 300 })))
      await sleep(400)
      assert.ok(locks.every((l) => !l.lost), 'renewed while the backend is up')
      await server.stop()
      server = kind === 'redis' ? await server.restart() : await startDaemon(server.port)
      await waitFor('every holder told', async () => locks.every((l) => l.lost))
      for (const l of locks) {
        assert.equal(l.signal.aborted, true)
        assert.equal(l.signal.reason.code, 'ERR_LOCK_LOST')
      }
      assert.equal(reports.filter((e) => e.code === 'ERR_LOCK_LOST').length, 10, 'onError heard of each lost lock once')
      // a lock released in time is never reported lost
      const kept = await stores[0].lock('kept', { ttlMs: 300 })
      await sleep(400)
      await kept.release()
      assert.equal(kept.lost, false)
      await Promise.all(locks.map((l) => l.release()))
    } finally {
      await Promise.all(stores.map((s) => s.close()))
      await server.stop()
    }
  })
}

test('file locks: two OS processes × 5,000 locked cycles on one directory lose nothing; without locks they do; stale locks are taken over', { timeout: 300_000 }, async () => {
  const fs = require('node:fs')
  const os = require('node:os')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-filelocks-'))
  const setup = rs.file({ dir })
  const expr = `rs.file({ dir: ${JSON.stringify(dir)} })`
  const lockOpts = { ttlMs: 10000, waitMs: 120000 }
  assert.equal(await counterRace(expr, setup, { locked: true, cycles: 5000, lockOpts }), 10_000, 'exact with the file lock manager')
  assert.ok((await counterRace(expr, setup, { locked: false, cycles: 1000 })) < 2000, 'without locks, updates are lost')

  // a holder killed while holding: its lock file stays, and is taken over after ttlMs
  const holder = await lockHolder(`rs.file({ dir: ${JSON.stringify(dir)} })`, 'k', { ttlMs: 300 })
  holder.kill('SIGKILL')
  await new Promise((r) => holder.once('exit', r))
  await assert.rejects(setup.lock('k', { waitMs: 20 }), (e) => e.code === 'ERR_LOCK_TIMEOUT')
  const mine = await setup.lock('k', { waitMs: 2000 })
  await mine.release()
  await setup.close()
})

test('memoized: read-through/write-through cache that holds the inner lock while cached; bounded; 30-day expiry', async () => {
  const redis = await startRedis()
  try {
    const inner = rs.redis({ url: redis.url })
    const other = rs.redis({ url: redis.url }) // "another process"
    const m = rs.memoized(inner, { maxEntries: 2, lockTtlMs: 2000 })
    await inner.set('a', { v: 1 }, 60_000)
    assert.deepEqual(await m.get('a'), { v: 1 }, 'read-through')
    await assert.rejects(other.lock('a', { waitMs: 50 }), (e) => e.code === 'ERR_LOCK_TIMEOUT', 'held while cached')
    await m.set('a', { v: 2 }, 30 * 86_400_000)
    assert.deepEqual(await inner.get('a'), { v: 2 }, 'write-through')
    assert.equal(await m.ttl('a'), 30 * 86_400, 'a 30-day expiry is kept, no timer overflow')
    assert.deepEqual(await m.get('a'), { v: 2 })
    // bounded: a third session evicts the least recently used one and frees its lock
    await m.get('b')
    await m.get('c')
    assert.equal(m.cached(), 2)
    const l = await other.lock('a', { waitMs: 500 })
    await l.release()
    await m.remove('c')
    assert.equal(await inner.get('c'), null)
    await m.close()
    const l2 = await other.lock('b', { waitMs: 500 })
    await l2.release()
    await inner.close()
    await other.close()
  } finally {
    await redis.stop()
  }
})
