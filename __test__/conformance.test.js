'use strict'
// One op matrix over every backend: the store shape's contract (ping, get,
// set, add, replace, remove, update, ttl, exists, length, clear, ids, all,
// entries, scan, locks where the backend has them, expiry invisible at
// once), run against each store as users make it, on real servers. A new
// backend is checked by adding one line to BACKENDS.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { startRedis, startCluster } = require('./support/redis-servers')
const { startDaemon } = require('./support/daemon')
const { startPostgres } = require('./support/postgres-server')
const { startAzurite, AZURITE_KEY } = require('./support/azurite')

const tmp = (n) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-conformance-${n}-`))

/** The servers every line may use, started once for the file. */
const servers = {}
const starters = {
  redis: () => startRedis(),
  cluster: () => startCluster(3),
  daemon: () => startDaemon(0),
  postgres: () => startPostgres(),
  // Azure Blob's emulator: it honours conditional writes, which add()
  // relies on (s3rver ignores If-None-Match, so add() overwrites there).
  azurite: () => startAzurite('sessions'),
}

/**
 * One line a backend: its name, whether it has locks, whether a second
 * store (another process's, as far as the backend can tell) shares its
 * sessions, and `make(n)`, which opens store n of a fresh namespace (the
 * same `n` for two stores that share it).
 */
const BACKENDS = [
  { name: 'memory', locks: true, shared: false, make: () => rs.memory() },
  { name: 'sessions.json', locks: true, shared: false, make: (n) => rs.file({ sessionStateFile: path.join(dirOf(`json-${n}`), 'sessions.json') }) },
  { name: 'file', locks: true, shared: true, make: (n) => rs.file({ dir: dirOf(`file-${n}`) }) },
  { name: 'redis', locks: true, shared: true, make: (n) => rs.redis({ url: servers.redis.url, prefix: `conf${n}:` }) },
  { name: 'redis ioThread', locks: true, shared: true, make: (n) => rs.redis({ url: servers.redis.url, prefix: `confio${n}:`, ioThread: true }) },
  { name: 'redis cluster', locks: true, shared: true, make: (n) => rs.redis({ nodes: servers.cluster.nodes.map((s) => `127.0.0.1:${s.port}`), prefix: `conf${n}:` }) },
  { name: 'daemon', locks: true, shared: true, make: (n) => rs.daemon({ port: servers.daemon.port, prefix: `conf${n}:` }) },
  { name: 'postgres', locks: true, shared: true, make: (n) => rs.postgres({ url: servers.postgres.url, table: `conformance_${n}` }) },
  { name: 'object storage (directory)', locks: false, shared: true, make: (n) => rs.objectStore({ directory: dirOf(`objects-${n}`) }) },
  {
    name: 'object storage (Azure Blob, Azurite)',
    locks: false,
    shared: true,
    make: (n) => rs.objectStore({ provider: 'azure', storageAccount: 'devstoreaccount1', storageAccessKey: AZURITE_KEY, endpoint: servers.azurite.endpoint, container: 'sessions', prefix: `conf${n}` }),
  },
]

const dirs = new Map()
/** One folder per namespace, so the stores of one namespace share it. */
function dirOf(name) {
  if (!dirs.has(name)) dirs.set(name, tmp(name))
  return dirs.get(name)
}

test.before(async () => {
  const started = await Promise.allSettled(Object.entries(starters).map(async ([k, start]) => (servers[k] = await start())))
  const failed = started.find((r) => r.status === 'rejected')
  if (failed) throw failed.reason
})
test.after(async () => {
  await Promise.all(Object.values(servers).map((s) => (s.destroy ? s.destroy() : s.stop())))
})

const SHORT_MS = 1000 // the lifetime of the session whose expiry is checked
let namespace = 0

for (const backend of BACKENDS) {
  test(`conformance: ${backend.name}`, { timeout: 30_000 }, async () => {
    const n = namespace++
    const store = backend.make(n)
    const other = backend.shared ? backend.make(n) : store
    const stores = [...new Set([store, other])]
    try {
      // A session that expires while the matrix runs; checked at the end.
      const before = Date.now()
      await store.set('short', { short: true }, SHORT_MS)
      const written = Date.now() // (Redis counts its PX from when it got the SET)
      if (written - before < SHORT_MS / 2) assert.deepEqual(await other.get('short'), { short: true }, 'live before its expiry')

      // A round trip to where the sessions are.
      for (const s of stores) assert.ok((await s.ping()) >= 0, 'ping resolves the ms it took')

      // Missing.
      assert.equal(await store.get('a'), null)
      assert.equal(await store.exists('a'), false)
      assert.equal(await store.ttl('a'), -2)
      assert.equal(await store.remove('a'), false)
      assert.equal(await store.update('a', 60_000), false)
      assert.equal(await store.replace('a', { n: 0 }, 60_000), false)
      assert.equal(await other.get('a'), null, 'replace never creates a session')

      // Written, read back from the other store.
      await store.set('a', { n: 1, s: 'ünïcødé', list: [1, 2] }, 60_000)
      assert.deepEqual(await other.get('a'), { n: 1, s: 'ünïcødé', list: [1, 2] })
      assert.equal(await other.exists('a'), true)
      const ttl = await other.ttl('a')
      assert.ok(ttl > 0 && ttl <= 60, `ttl ${ttl}`)

      // add only when absent, replace only when present.
      assert.equal(await other.add('a', { n: 'lost' }, 60_000), false)
      assert.deepEqual(await store.get('a'), { n: 1, s: 'ünïcødé', list: [1, 2] })
      assert.equal(await other.add('b', { n: 'b' }, 60_000), true)
      assert.deepEqual(await store.get('b'), { n: 'b' })
      assert.equal(await other.replace('a', { n: 2 }, 60_000), true)
      assert.deepEqual(await store.get('a'), { n: 2 })

      // update extends the lifetime and keeps the data.
      assert.equal(await other.update('a', 120_000), true)
      const extended = await store.ttl('a')
      assert.ok(extended > 60 && extended <= 120, `ttl after update ${extended}`)
      assert.deepEqual(await store.get('a'), { n: 2 })

      // remove, once.
      assert.equal(await other.remove('b'), true)
      assert.equal(await store.remove('b'), false)
      assert.equal(await store.get('b'), null)
      assert.equal(await store.exists('b'), false)

      // A timeout of 0 removes.
      await store.set('zero', { z: 1 }, 60_000)
      await store.set('zero', { z: 2 }, 0)
      assert.equal(await other.get('zero'), null)

      // Whole-store ops: length, ids, entries, scan (page by page), clear.
      const ids = ['k0', 'k1', 'k2', 'k3', 'k4']
      await Promise.all(ids.map((id, i) => store.set(id, { i }, 60_000)))
      await waitPastShort(written)
      const live = ['a', ...ids].sort()
      for (const s of stores) {
        assert.equal(await s.length(), live.length, `${backend.name}: length`)
        assert.deepEqual((await s.ids()).sort(), live)
        const entries = await s.entries()
        assert.deepEqual(entries.map((e) => e.id).sort(), live)
        assert.deepEqual(entries.find((e) => e.id === 'k3').session, { i: 3 })
        assert.deepEqual((await s.all()).filter((x) => 'i' in x).map((x) => x.i).sort(), [0, 1, 2, 3, 4])
        const scanned = []
        let cursor = ''
        let pages = 0
        do {
          const page = await s.scan(cursor, 2)
          for (const x of page.sessions) {
            scanned.push(x.id)
            if (x.id === 'k1') assert.deepEqual(JSON.parse(x.text), { i: 1 })
          }
          cursor = page.cursor
          assert.ok(++pages < 50, 'the scan ends')
        } while (cursor !== '')
        assert.deepEqual([...new Set(scanned)].sort(), live, 'scan lists every live session, and none expired')
      }

      // Expired: invisible at once to every read, before any sweep.
      for (const s of stores) {
        assert.equal(await s.get('short'), null, 'an expired session is not read')
        assert.equal(await s.exists('short'), false)
        assert.equal(await s.ttl('short'), -2)
        assert.equal(await s.update('short', 60_000), false, 'an expired session is not brought back by update')
        assert.equal(await s.replace('short', { back: true }, 60_000), false)
      }
      assert.equal(await store.add('short', { again: true }, 60_000), true, 'an expired id is free for add')
      assert.deepEqual(await other.get('short'), { again: true })

      // Locks, where the backend has them: one holder among the stores.
      assert.equal(typeof store.lock === 'function', backend.locks, `${backend.name} ${backend.locks ? 'has' : 'has no'} locks`)
      if (backend.locks) {
        const held = await store.lock('a', { ttlMs: 30_000, waitMs: 1000 })
        await assert.rejects(other.lock('a', { ttlMs: 30_000, waitMs: 200 }), (e) => e.code === 'ERR_LOCK_TIMEOUT')
        await held.release()
        const next = await other.lock('a', { ttlMs: 30_000, waitMs: 5000 })
        assert.equal(next.released, false)
        await next.release()
        assert.equal(await store.withLock('a', async () => (await store.get('a')).n), 2)
      }

      assert.equal(await other.clear(), live.length + 1)
      for (const s of stores) {
        assert.equal(await s.length(), 0)
        assert.deepEqual(await s.ids(), [])
      }
    } finally {
      for (const s of stores) await s.close()
    }
  })
}

/** Waits until the short session's lifetime has surely passed (from when its set was answered). */
async function waitPastShort(written) {
  const left = written + SHORT_MS + 50 - Date.now()
  if (left > 0) await new Promise((r) => setTimeout(r, left))
}
