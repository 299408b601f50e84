'use strict'
// rs-store as a catbox engine (rs-store/hapi) under the real @hapi/hapi 21 +
// @hapi/yar 11 (server-side sessions, maxCookieSize: 0), driven over HTTP
// with a cookie jar, on a real redis-server and on the file store; and a
// hapi cache policy over it.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { CatboxEngine } = require('rs-store/hapi')
const { startRedis } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')
const { startApp, spawnApp, client } = require('./support/web-apps')

const servers = redisAndDaemon(test)
const COOKIE = 'sid'

const specs = () => ({
  file: { kind: 'file', dir: fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-hapi-')) },
  redis: { kind: 'redis', url: servers.redis.url },
})

for (const kind of ['redis', 'file']) {
  test(`hapi + yar (${kind}): a counter, logout`, async () => {
    const spec = specs()[kind]
    const app = await startApp('hapi', { spec })
    const peek = kind === 'redis' ? rs.redis(servers.redis.url) : rs.file({ dir: spec.dir, readCacheBytes: 0 })
    try {
      const c = client(app.port, COOKIE)
      for (let i = 1; i <= 3; i++) assert.equal((await c.get('/')).text, `visits: ${i}`)
      const key = `hapi-cache:!%40hapi%2Fyar:${(await c.get('/id')).text}` // yar's segment is '!@hapi/yar'
      const stored = await peek.get(key)
      assert.equal(stored.item.s.visits, 3, 'yar keeps its data in the store')
      // yar's expiresIn is ms; the store keeps it (Redis: seconds)
      const ttl = await peek.ttl(key)
      assert.ok(ttl > 3590 && ttl <= 3600, `ttl ${ttl}`)
      assert.equal((await c.get('/logout')).text, 'bye')
      assert.equal(await peek.get(key), null)
      assert.equal((await c.get('/peek')).text, 'visits: 0')
    } finally {
      await app.close()
      await peek.close()
    }
  })
}

test('hapi + yar (redis): sessions survive a restart of the app process', async () => {
  let app = await spawnApp('hapi', { spec: specs().redis })
  const c = client(app.port, COOKIE)
  try {
    assert.equal((await c.get('/')).text, 'visits: 1')
    await app.stop()
    app = await spawnApp('hapi', { spec: specs().redis })
    c.port = app.port
    assert.equal((await c.get('/')).text, 'visits: 2')
  } finally {
    await app.stop()
  }
})

test('hapi: a cache policy over the engine: value kinds, the remaining ttl, expiry, drop', async () => {
  const Hapi = require('@hapi/hapi')
  const store = rs.redis({ url: servers.redis.url, prefix: 'policy:' })
  const server = Hapi.server({ cache: [{ name: 'rs', provider: { constructor: CatboxEngine, options: { store } } }] })
  const policy = server.cache({ cache: 'rs', segment: 'things', expiresIn: 60_000, getDecoratedValue: true })
  await server.initialize()
  try {
    for (const [id, value] of [
      ['obj', { a: [1, 'two', null] }],
      ['str', 'text'],
      ['num', 42],
      ['a:b', true],
    ]) {
      await policy.set(id, value)
      const got = await policy.get(id)
      assert.deepEqual(got.value, value)
      assert.ok(got.cached.ttl > 55_000 && got.cached.ttl <= 60_000, `the remaining ms: ${got.cached.ttl}`)
      assert.ok(Math.abs(got.cached.stored - Date.now()) < 5000)
    }
    assert.ok((await servers.redis.cli('exists', 'policy:hapi-cache:things:a%3Ab')) === '1', 'ids are URI-encoded in the key')
    await policy.set('short', 'x', 300)
    assert.ok(Number(await servers.redis.cli('pttl', 'policy:hapi-cache:things:short')) <= 300)
    await policy.drop('obj')
    assert.equal((await policy.get('obj')).value, null)
  } finally {
    await server.stop()
    await store.close()
  }
})

test('hapi + yar: a Redis that is down fails the request with a coded error within the timeout', async () => {
  const r = await startRedis()
  const app = await startApp('hapi', { spec: { kind: 'redis', url: r.url, options: { commandTimeoutMs: 300, connectTimeoutMs: 300 } } })
  try {
    const c = client(app.port, COOKIE)
    assert.equal((await c.get('/')).text, 'visits: 1')
    await r.stop()
    const t = Date.now()
    const res = await c.get('/', { timeoutMs: 5000 })
    assert.equal(res.status, 500)
    assert.equal(res.text, 'error: ERR_STORE_UNAVAILABLE')
    assert.ok(Date.now() - t < 2000, `answered in ${Date.now() - t} ms`)
  } finally {
    await app.close()
  }
})

test('CatboxEngine: lifecycle, segment names, options checked', async () => {
  const inner = rs.memory()
  try {
    const e = new CatboxEngine({ store: inner, partition: 'p' })
    assert.equal(e.isReady(), false)
    await e.start()
    assert.equal(e.isReady(), true)
    assert.equal(e.validateSegmentName('ok'), null)
    assert.ok(e.validateSegmentName('') instanceof Error)
    await e.set({ segment: 's', id: 'i' }, { n: 1 }, 10_000)
    const got = await e.get({ segment: 's', id: 'i' })
    assert.deepEqual(got.item, { n: 1 })
    assert.equal(got.ttl, 10_000, 'the ttl it was set with (catbox subtracts the age)')
    await e.stop()
    assert.equal(e.isReady(), false)
    assert.deepEqual((await inner.get('p:s:i')).item, { n: 1 }, 'stop() leaves the store open')
    assert.throws(() => new CatboxEngine({ store: inner, expiresIn: 5 }), { code: 'ERR_INVALID_OPTION' })
    assert.throws(() => new CatboxEngine({}), { code: 'ERR_INVALID_OPTION' })
  } finally {
    await inner.close()
  }
})
