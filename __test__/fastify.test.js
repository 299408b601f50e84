'use strict'
// rs-store under the real fastify + @fastify/session (rs-store/fastify),
// driven over HTTP with a cookie jar.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { FastifyStore } = require('rs-store/fastify')
const { startRedis, sleep } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')
const { startApp, spawnApp, client } = require('./support/web-apps')

const servers = redisAndDaemon(test)

const specs = () => ({
  memory: { kind: 'memory' },
  file: { kind: 'file', dir: fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-fastify-')) },
  redis: { kind: 'redis', url: servers.redis.url },
  daemon: { kind: 'daemon', port: servers.daemon.port },
})

for (const kind of ['memory', 'file', 'redis', 'daemon']) {
  test(`fastify (${kind}): login, a counter, logout`, async () => {
    const app = await startApp('fastify', { spec: specs()[kind] })
    try {
      const c = client(app.port, 'sessionId')
      assert.equal((await c.get('/login?user=ada')).text, 'hello ada')
      for (let i = 1; i <= 3; i++) assert.equal((await c.get('/')).text, `visits: ${i}`)
      const id = c.sessionId()
      if (kind === 'redis') {
        const s = JSON.parse(await servers.redis.cli('get', `sess:${id}`))
        assert.equal(s.user, 'ada')
        assert.equal(s.visits, 3)
        const ttl = Number(await servers.redis.cli('ttl', `sess:${id}`))
        assert.ok(ttl > 3590 && ttl <= 3600, `the cookie's maxAge is the ttl (${ttl})`)
      }
      assert.equal((await c.get('/logout')).text, 'bye')
      assert.equal((await c.get('/peek')).text, 'visits: 0')
      if (kind === 'redis') assert.equal(await servers.redis.cli('exists', `sess:${id}`), '0')
    } finally {
      await app.close()
    }
  })
}

test('fastify (redis): sessions survive a restart of the app process', async () => {
  let app = await spawnApp('fastify', { spec: specs().redis })
  const c = client(app.port, 'sessionId')
  try {
    assert.equal((await c.get('/')).text, 'visits: 1')
    await app.stop()
    app = await spawnApp('fastify', { spec: specs().redis })
    c.port = app.port
    assert.equal((await c.get('/')).text, 'visits: 2')
  } finally {
    await app.stop()
  }
})

test('fastify: a session that cannot be stored is a coded error, the stored one stays', async () => {
  const app = await startApp('fastify', { spec: { ...specs().redis, options: { prefix: 'fy:' } } })
  try {
    const c = client(app.port, 'sessionId')
    assert.equal((await c.get('/')).text, 'visits: 1')
    for (const [route, code] of [
      ['/circular', 'ERR_NOT_SERIALIZABLE'],
      ['/big', 'ERR_SESSION_TOO_LARGE'],
    ]) {
      const res = await c.get(route)
      assert.equal(res.status, 500)
      assert.equal(JSON.parse(res.text).code, code)
    }
    assert.deepEqual(Object.keys(JSON.parse(await servers.redis.cli('get', `fy:${c.sessionId()}`))).sort(), ['cookie', 'visits'])
    assert.equal((await c.get('/peek')).text, 'visits: 1')
  } finally {
    await app.close()
  }
})

test('fastify: a backend that is down fails the request within the timeout', async () => {
  const r = await startRedis()
  const app = await startApp('fastify', { spec: { kind: 'redis', url: r.url, options: { commandTimeoutMs: 300, connectTimeoutMs: 300 } } })
  try {
    const c = client(app.port, 'sessionId')
    assert.equal((await c.get('/')).text, 'visits: 1')
    await r.stop()
    const t = Date.now()
    const res = await c.get('/', { timeoutMs: 5000 })
    assert.equal(res.status, 500)
    assert.match(res.text, /ERR_STORE_UNAVAILABLE/)
    assert.ok(Date.now() - t < 2000, `answered in ${Date.now() - t} ms`)
  } finally {
    await app.close()
  }
})

test('FastifyStore: callbacks and Promises, the TTL rule, options checked', async () => {
  const inner = rs.memory()
  const store = new FastifyStore({ store: inner })
  try {
    const expires = new Date(Date.now() + 90_000)
    await new Promise((res, rej) => store.set('a', { cookie: { expires, originalMaxAge: 90_000 }, n: 1 }, (e) => (e ? rej(e) : res())))
    assert.equal(await inner.ttl('a'), 90)
    assert.equal((await new Promise((res, rej) => store.get('a', (e, s) => (e ? rej(e) : res(s))))).n, 1)
    await store.set('b', { cookie: { expires: null }, n: 2 })
    assert.equal(await inner.ttl('b'), 86_400, 'a browser-session cookie: one day')
    await store.set('a', { cookie: { expires: new Date(Date.now() - 1) } })
    assert.equal(await inner.exists('a'), false, 'an expiry in the past destroys')
    await new Promise((res) => store.destroy('b', res))
    assert.equal(await store.get('b'), null)
    assert.throws(() => new FastifyStore({ store: inner, tll: 3 }), { code: 'ERR_INVALID_OPTION', message: /did you mean 'ttl'/ })
    assert.throws(() => new FastifyStore({}), { code: 'ERR_INVALID_OPTION' })
  } finally {
    await inner.close()
  }
})
