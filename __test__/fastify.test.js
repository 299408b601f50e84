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
const { startRedis, sleep, waitFor } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')
const { startApp, spawnApp, client, logoutDuringSlowRequest } = require('./support/web-apps')

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

for (const write of [true, false]) {
  test(`fastify: a slow ${write ? 'writing' : 'reading'} request started before a logout does not bring the session back`, () =>
    logoutDuringSlowRequest('fastify', servers.redis, { cookie: 'sessionId', write }))
}

/** 20 concurrent requests of one browser over two app processes, each adding an item. */
async function concurrentAdds(spec, adapter) {
  const apps = [await spawnApp('fastify', { spec, adapter }), await spawnApp('fastify', { spec, adapter })]
  try {
    const c = client(apps[0].port, 'sessionId')
    assert.equal((await c.get('/login?user=ada')).text, 'hello ada')
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const one = client(apps[i % 2].port, 'sessionId')
        for (const [k, v] of c.jar) one.jar.set(k, v)
        return one.get(`/add?item=${i}&ms=20`)
      }),
    )
    return JSON.parse((await c.get('/items')).text)
  } finally {
    await Promise.all(apps.map((a) => a.stop()))
  }
}

test('fastify: without lockRequests, concurrent requests of one browser lose updates (the problem)', async () => {
  const items = await concurrentAdds(specs().redis)
  assert.ok(items.length < 20, `the last save wins: ${items.length} of 20 items kept`)
})

for (const kind of ['redis', 'file']) {
  test(`fastify (${kind}): lockRequests applies concurrent requests of one browser one after the other, across two processes`, async () => {
    const items = await concurrentAdds(specs()[kind], { lockRequests: { waitMs: 20_000 } })
    assert.deepEqual(items.map(Number).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i))
  })
}

test('fastify: an unmodified session is touched (expiry only), and touches keep it past the cookie maxAge it was written with', async () => {
  const app = await startApp('fastify', { spec: specs().redis, maxAge: 1500 })
  const stat = async (cmd) => Number((new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(await servers.redis.cli('info', 'commandstats')) || [0, 0])[1])
  try {
    const c = client(app.port, 'sessionId')
    assert.equal((await c.get('/')).text, 'visits: 1')
    await servers.redis.cli('config', 'resetstat')
    // Every 300 ms for 3 s (twice the maxAge): the stored cookie says it expired long ago.
    for (let t = Date.now(); Date.now() - t < 3000; await sleep(300)) assert.equal((await c.get('/peek')).text, 'visits: 1')
    assert.ok((await stat('pexpire')) >= 5, `touched: ${await stat('pexpire')} PEXPIRE`)
    assert.equal(await stat('set'), 0, 'no rewrite of the data')
    assert.equal((await c.get('/')).text, 'visits: 2', 'the same session')
    await sleep(2000)
    assert.equal((await c.get('/peek')).text, 'visits: 0', 'untouched for longer than maxAge: gone')
  } finally {
    await app.close()
  }
})

test('fastify failClosed: false: while Redis is down pages are served without a session and the cookie is kept; disconnect/connect events', async () => {
  const r = await startRedis()
  const app = await startApp('fastify', { spec: { kind: 'redis', url: r.url, options: { commandTimeoutMs: 300, connectTimeoutMs: 300 } }, adapter: { failClosed: false } })
  const events = []
  app.store.on('disconnect', () => events.push('disconnect'))
  app.store.on('connect', () => events.push('connect'))
  try {
    const c = client(app.port, 'sessionId')
    assert.equal((await c.get('/')).text, 'visits: 1')
    const id = c.sessionId()
    await r.cli('save') // dump.rdb: the restarted server has the session again
    await r.stop()
    const t = Date.now()
    for (let i = 0; i < 3; i++) {
      const res = await c.get('/', { timeoutMs: 5000 })
      assert.equal(res.status, 200)
      assert.equal(res.text, 'no session')
    }
    assert.ok(Date.now() - t < 3000, `answered within the timeout (${Date.now() - t} ms)`)
    assert.equal(c.sessionId(), id, 'the cookie still names the stored session')
    assert.deepEqual(events, ['disconnect'])
    const back = await r.restart()
    try {
      await waitFor('connect', async () => events.includes('connect'))
      assert.equal((await c.get('/')).text, 'visits: 2', 'the session is there again')
      assert.deepEqual(events, ['disconnect', 'connect'])
    } finally {
      await back.stop()
    }
  } finally {
    await app.close()
  }
})

test('FastifyStore: the options ExpressStore takes, checked the same way; lockRequests without its plugin is refused', async () => {
  const inner = rs.memory()
  assert.throws(() => new FastifyStore({ store: inner, lockRequests: { waitMS: 5 } }), { code: 'ERR_INVALID_OPTION', message: /waitMS.*waitMs/ })
  const noLocks = { get: inner.get, set: inner.set, remove: inner.remove, update: inner.update }
  assert.throws(() => new FastifyStore({ store: noLocks, lockRequests: true }), { code: 'ERR_INVALID_OPTION', message: /lockRequests needs a store with locks/ })
  assert.throws(() => new FastifyStore({ store: inner, failClosed: 'no' }), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => new FastifyStore({ store: inner, onError: 1 }), { code: 'ERR_INVALID_OPTION' })
  const unhooked = new FastifyStore({ store: inner, lockRequests: true })
  await assert.rejects(unhooked.get('a'), { code: 'ERR_INVALID_OPTION', message: /app\.register\(store\.plugin\)/ })
  return inner.close()
})
