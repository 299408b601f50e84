'use strict'
// rs-store under the real koa 3 + koa-session 7 (rs-store/koa), driven over
// HTTP with a cookie jar, on a real redis-server and on the file store.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { KoaStore } = require('rs-store/koa')
const { startRedis } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')
const { startApp, spawnApp, client, logoutDuringSlowRequest, SECRET } = require('./support/web-apps')

const servers = redisAndDaemon(test)
const COOKIE = 'koa.sess'

const specs = () => ({
  file: { kind: 'file', dir: fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-koa-')) },
  redis: { kind: 'redis', url: servers.redis.url },
})

for (const kind of ['redis', 'file']) {
  test(`koa (${kind}): login, a counter, logout`, async () => {
    const spec = specs()[kind]
    const app = await startApp('koa', { spec })
    const peek = kind === 'redis' ? rs.redis(servers.redis.url) : rs.file({ dir: spec.dir, readCacheBytes: 0 })
    try {
      const c = client(app.port, COOKIE)
      assert.equal((await c.get('/login?user=ada')).text, 'hello ada')
      for (let i = 1; i <= 3; i++) assert.equal((await c.get('/')).text, `visits: ${i}`)
      const id = c.sessionId()
      const s = await peek.get(id)
      assert.equal(s.user, 'ada')
      assert.equal(s.visits, 3)
      assert.equal(s._maxAge, 3_600_000, "koa-session's own fields are stored")
      // koa-session gives maxAge + 10 s in ms: the store keeps it in seconds
      const ttl = await peek.ttl(id)
      assert.ok(ttl > 3600 && ttl <= 3610, `ttl ${ttl}`)
      assert.equal((await c.get('/logout')).text, 'bye')
      assert.equal(await peek.get(id), null)
      assert.equal((await c.get('/peek')).text, 'visits: 0')
    } finally {
      await app.close()
      await peek.close()
    }
  })
}

test('koa (redis): sessions survive a restart of the app process', async () => {
  let app = await spawnApp('koa', { spec: specs().redis })
  const c = client(app.port, COOKIE)
  try {
    assert.equal((await c.get('/')).text, 'visits: 1')
    await app.stop()
    app = await spawnApp('koa', { spec: specs().redis })
    c.port = app.port
    assert.equal((await c.get('/')).text, 'visits: 2')
  } finally {
    await app.stop()
  }
})

for (const write of [true, false]) {
  test(`koa: a slow ${write ? 'writing' : 'reading'} request started before a logout does not bring the session back`, () =>
    logoutDuringSlowRequest('koa', servers.redis, { cookie: COOKIE, write }))
}

test("koa: maxAge 'session' (a browser-session cookie) lives the store's defaultTtl", async () => {
  const app = await startApp('koa', { spec: { ...specs().redis, options: { timeoutUnit: 's', defaultTtl: 600, prefix: 'koa-s:' } }, maxAge: 'session' })
  try {
    const c = client(app.port, COOKIE)
    assert.equal((await c.get('/')).text, 'visits: 1')
    assert.equal((await c.get('/')).text, 'visits: 2')
    const ttl = Number(await servers.redis.cli('ttl', `koa-s:${c.sessionId()}`))
    assert.ok(ttl > 590 && ttl <= 600, `ttl ${ttl}`)
    assert.equal(JSON.parse(await servers.redis.cli('get', `koa-s:${c.sessionId()}`))._session, true)
  } finally {
    await app.close()
  }
})

test("koa: a session koa-redis wrote (its JSON under the bare key, SETEX) is read by rs.redis({ prefix: '' })", async () => {
  const key = 'from-koa-redis'
  await servers.redis.cli('setex', key, '3610', JSON.stringify({ visits: 41, _expire: Date.now() + 3_600_000, _maxAge: 3_600_000 }))
  const app = await startApp('koa', { spec: { ...specs().redis, options: { prefix: '' } } })
  try {
    const c = client(app.port, COOKIE)
    // koa's signed cookie: <name>.sig is keygrip's HMAC-SHA1 of "<name>=<value>" with app.keys[0]
    const sig = require('node:crypto').createHmac('sha1', SECRET).update(`${COOKIE}=${key}`).digest('base64url')
    c.jar.set(COOKIE, key)
    c.jar.set(`${COOKIE}.sig`, sig)
    assert.equal((await c.get('/')).text, 'visits: 42')
    assert.equal(JSON.parse(await servers.redis.cli('get', key)).visits, 42)
  } finally {
    await app.close()
  }
})

test('koa: a Redis that is down fails the request with a coded error within the timeout', async () => {
  const r = await startRedis()
  const app = await startApp('koa', { spec: { kind: 'redis', url: r.url, options: { commandTimeoutMs: 300, connectTimeoutMs: 300 } } })
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

test('KoaStore: units, new vs loaded, options checked', async () => {
  const inner = rs.memory({ timeoutUnit: 'min' })
  const store = new KoaStore({ store: inner })
  try {
    const ctx = {}
    await store.set('a', { n: 1 }, 120_000, { ctx, changed: true })
    assert.equal(await inner.ttl('a'), 120, "ms from koa-session, minutes for this store's set")
    assert.equal((await store.get('a', 120_000, { ctx })).n, 1)
    await inner.remove('a')
    await store.set('a', { n: 2 }, 120_000, { ctx, changed: true })
    assert.equal(await inner.get('a'), null, 'a session this ctx loaded is not recreated')
    await store.set('a', { n: 3 }, 120_000, { ctx: {}, changed: true })
    assert.equal((await inner.get('a')).n, 3, 'a new one is written')
    await store.destroy('a', { ctx })
    assert.equal(await inner.exists('a'), false)
    assert.throws(() => new KoaStore({ store: inner, maxAge: 5 }), { code: 'ERR_INVALID_OPTION' })
    assert.throws(() => new KoaStore(inner), { code: 'ERR_INVALID_OPTION', message: /new KoaStore\(\{ store \}\)/ })
  } finally {
    await inner.close()
  }
})
