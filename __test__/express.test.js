'use strict'
// rs-store under the real express + express-session (rs-store/express),
// driven over HTTP with a cookie jar, against real servers: redis-server,
// the session daemon, files, and connect-redis for the migration.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { ExpressStore } = require('rs-store/express')
const { startRedis, waitFor, sleep } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')
const { startApp, spawnApp, client, logoutDuringSlowRequest } = require('./support/web-apps')

const tmp = (name) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-${name}-`))

const servers = redisAndDaemon(test)

/** A store description for the app (see web-apps.js), and a way to look into that backend. */
function backend(kind) {
  switch (kind) {
    case 'memory':
      return { spec: { kind } }
    case 'file': {
      const dir = tmp('express-file')
      return { spec: { kind, dir }, peek: () => rs.file({ dir, readCacheBytes: 0 }) }
    }
    case 'redis':
      return { spec: { kind, url: servers.redis.url }, peek: () => rs.redis(servers.redis.url) }
    case 'daemon':
      return { spec: { kind, port: servers.daemon.port }, peek: () => rs.daemon(servers.daemon.port) }
  }
}

/** Is the session `id` in the backend (looked at with a store of its own)? */
async function stored(b, id) {
  const s = b.peek()
  try {
    return await s.get(id)
  } finally {
    await s.close()
  }
}

for (const kind of ['memory', 'file', 'redis', 'daemon']) {
  test(`express (${kind}): login, a counter, logout`, async () => {
    const b = backend(kind)
    const app = await startApp('express', { spec: b.spec })
    try {
      const c = client(app.port)
      assert.equal((await c.get('/login?user=ada')).text, 'hello ada')
      for (let i = 1; i <= 3; i++) assert.equal((await c.get('/')).text, `visits: ${i}`)
      assert.equal((await c.get('/peek')).text, 'visits: 3')
      const id = c.sessionId()
      if (b.peek) {
        const s = await stored(b, id)
        assert.equal(s.user, 'ada')
        assert.equal(s.visits, 3)
        assert.equal(typeof s.cookie.expires, 'string', 'the cookie is stored with the session')
      }
      assert.equal((await c.get('/logout')).text, 'bye')
      assert.equal((await c.get('/peek')).text, 'visits: 0', 'the old cookie finds no session')
      if (b.peek) assert.equal(await stored(b, id), null)
    } finally {
      await app.close()
    }
  })
}

for (const kind of ['redis', 'file', 'daemon']) {
  test(`express (${kind}): sessions survive a restart of the app process`, async () => {
    const b = backend(kind)
    let app = await spawnApp('express', { spec: b.spec })
    const c = client(app.port)
    try {
      assert.equal((await c.get('/')).text, 'visits: 1')
      assert.equal((await c.get('/')).text, 'visits: 2')
      await app.stop()
      app = await spawnApp('express', { spec: b.spec })
      c.port = app.port
      assert.equal((await c.get('/')).text, 'visits: 3')
    } finally {
      await app.stop()
    }
  })
}

test('express: sessions move between connect-redis and rs-store on one redis-server, both ways', async () => {
  await servers.redis.cli('flushall')
  const peer = await startApp('express', { spec: { kind: 'connect-redis', url: servers.redis.url } })
  const ours = await startApp('express', { spec: { kind: 'redis', url: servers.redis.url } })
  try {
    const c = client(peer.port)
    assert.equal((await c.get('/login?user=grace')).text, 'hello grace')
    assert.equal((await c.get('/')).text, 'visits: 1')
    // connect-redis's value is the session's JSON text under sess:<id>
    const raw = JSON.parse(await servers.redis.cli('get', `sess:${c.sessionId()}`))
    assert.equal(raw.user, 'grace')
    c.port = ours.port
    assert.equal((await c.get('/')).text, 'visits: 2', 'rs-store reads what connect-redis wrote')
    assert.equal((await c.get('/')).text, 'visits: 3')
    const ttl = Number(await servers.redis.cli('ttl', `sess:${c.sessionId()}`))
    assert.ok(ttl > 3590 && ttl <= 3600, `rs-store keeps the cookie's ttl (${ttl})`)
    assert.equal(JSON.parse(await servers.redis.cli('get', `sess:${c.sessionId()}`)).visits, 3, 'and writes plain JSON')
    c.port = peer.port
    assert.equal((await c.get('/')).text, 'visits: 4', 'connect-redis reads what rs-store wrote')
    assert.equal((await c.get('/peek')).text, 'visits: 4')
  } finally {
    await peer.close()
    await ours.close()
  }
})

/** 20 concurrent requests of one browser, spread over two app processes, each adding an item. */
async function concurrentAdds(spec, adapter) {
  const apps = [await spawnApp('express', { spec, adapter }), await spawnApp('express', { spec, adapter })]
  try {
    const c = client(apps[0].port)
    assert.equal((await c.get('/login?user=ada')).text, 'hello ada')
    const jar = c.jar
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const one = client(apps[i % 2].port)
        for (const [k, v] of jar) one.jar.set(k, v)
        return one.get(`/add?item=${i}&ms=20`)
      }),
    )
    return JSON.parse((await c.get('/items')).text)
  } finally {
    await Promise.all(apps.map((a) => a.stop()))
  }
}

test('express: without lockRequests, concurrent requests of one browser lose updates (the problem)', async () => {
  const items = await concurrentAdds({ kind: 'redis', url: servers.redis.url })
  assert.ok(items.length < 20, `the last save wins: ${items.length} of 20 items kept`)
})

for (const kind of ['redis', 'daemon', 'file']) {
  test(`express (${kind}): lockRequests applies concurrent requests of one browser one after the other, across two processes`, async () => {
    const b = backend(kind)
    const items = await concurrentAdds(b.spec, { lockRequests: true })
    assert.deepEqual(items.map(Number).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i))
  })
}

/**
 * `browsers` browsers with a session each, over two app processes with
 * lockRequests, each sending one request at a time, all at once, for
 * `rounds` rounds: every request is answered (a leaked lock shows as a 500
 * ERR_LOCK_TIMEOUT once waitMs has passed) and every count is right.
 */
async function manyBrowsers(spec, { browsers = 20, rounds = 4 } = {}) {
  const adapter = { lockRequests: { waitMs: 3000 } }
  const apps = [await spawnApp('express', { spec, adapter }), await spawnApp('express', { spec, adapter })]
  try {
    const cs = Array.from({ length: browsers }, (_, i) => client(apps[i % 2].port))
    await Promise.all(cs.map(async (c, i) => assert.equal((await c.get(`/login?user=u${i}`)).text, `hello u${i}`)))
    const wrong = []
    for (let round = 1; round <= rounds; round++) {
      await Promise.all(
        cs.map(async (c, i) => {
          c.port = apps[(i + round) % 2].port // each browser alternates between the processes
          const res = await c.get('/')
          if (res.text !== `visits: ${round}`) wrong.push(`round ${round}, browser ${i}: ${res.status} ${res.text}`)
        }),
      )
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${browsers * rounds} requests went wrong`)
  } finally {
    await Promise.all(apps.map((a) => a.stop()))
  }
}

for (const kind of ['redis', 'daemon', 'file', 'redis-io']) {
  test(`express (${kind}): lockRequests with 20 browsers at once over two processes leaves no lock behind`, async () => {
    const b = kind === 'redis-io' ? { spec: { kind: 'redis', url: servers.redis.url, options: { ioThread: true } } } : backend(kind)
    await manyBrowsers(b.spec)
  })
}

test('ExpressStore with lockRequests: gets of many ids answered in one batch each hand their own lock to their own request', async () => {
  // One memory store shared by two adapters stands for two processes on one
  // backend; the gets of one batch are answered in one reply, in the same tick.
  const inner = rs.memory()
  const ids = Array.from({ length: 10 }, (_, i) => `s${i}`)
  const cookie = { expires: new Date(Date.now() + 60_000).toISOString() }
  const store = new ExpressStore({ store: inner, lockRequests: { waitMs: 200 } })
  try {
    for (const id of ids) await inner.set(id, { cookie, id })
    const finished = []
    await Promise.all(
      ids.map(
        (id) =>
          new Promise((resolve, reject) =>
            store.get(id, (err, sess) => {
              if (err) return reject(err)
              const res = new (require('node:events').EventEmitter)()
              const session = store.createSession({ sessionID: id, res }, sess)
              assert.equal(session.id, id)
              finished.push(res)
              resolve()
            }),
          ),
      ),
    )
    for (const res of finished) res.emit('finish')
    // every lock was released: each id can be locked again at once
    for (const id of ids) await (await inner.lock(id, { waitMs: 0 })).release()
  } finally {
    await inner.close()
  }
})

for (const write of [true, false]) {
  test(`express: a slow ${write ? 'writing' : 'reading'} request started before a logout does not bring the session back`, () =>
    logoutDuringSlowRequest('express', servers.redis, { cookie: 'connect.sid', write }))
}

test('express: Redis killed under load: every request answers within the timeout, and service resumes', async () => {
  const r = await startRedis()
  const closed = await startApp('express', { spec: { kind: 'redis', url: r.url, options: { commandTimeoutMs: 500, connectTimeoutMs: 500 } } })
  const open = await startApp('express', {
    spec: { kind: 'redis', url: r.url, options: { commandTimeoutMs: 500, connectTimeoutMs: 500 } },
    adapter: { failClosed: false },
  })
  try {
    const cs = [client(closed.port), client(open.port)]
    for (const c of cs) assert.equal((await c.get('/')).text, 'visits: 1')
    let stop = false
    const seen = [new Set(), new Set()]
    let slowest = 0
    const load = cs.flatMap((c, k) =>
      Array.from({ length: 5 }, async () => {
        while (!stop) {
          const t = Date.now()
          const res = await c.get('/peek', { timeoutMs: 5000 })
          slowest = Math.max(slowest, Date.now() - t)
          seen[k].add(`${res.status} ${res.text}`)
        }
      }),
    )
    await sleep(200)
    await r.stop()
    await sleep(1500)
    const during = seen.map((s) => new Set(s))
    const back = await r.restart()
    await waitFor('failClosed: the store answers again', async () => (await cs[0].get('/')).text === 'visits: 1')
    await waitFor('failClosed false: sessions again', async () => (await cs[1].get('/')).text === 'visits: 1')
    stop = true
    await Promise.all(load)
    await back.stop()
    assert.ok(during[0].has('500 error: ERR_STORE_UNAVAILABLE'), `failClosed: the error reaches the app (${[...during[0]]})`)
    assert.ok(during[1].has('200 no session'), `failClosed false: pages are served without a session (${[...during[1]]})`)
    assert.ok(![...during[1]].some((s) => s.startsWith('500')), `failClosed false: no request fails (${[...during[1]]})`)
    assert.ok(slowest < 2500, `no request waited past the timeout (slowest ${slowest} ms)`)
  } finally {
    await closed.close()
    await open.close()
  }
})

test('express: touch only extends the expiry, and touchAfter skips touches of recently written sessions', async () => {
  const lazy = await startApp('express', { spec: { kind: 'redis', url: servers.redis.url }, adapter: { touchAfter: 60 } })
  const eager = await startApp('express', { spec: { kind: 'redis', url: servers.redis.url } })
  const pexpires = async () => Number((/cmdstat_pexpire:calls=(\d+)/.exec(await servers.redis.cli('info', 'commandstats')) || [0, 0])[1])
  try {
    for (const [app, want] of [
      [lazy, 0],
      [eager, 10],
    ]) {
      const c = client(app.port)
      assert.equal((await c.get('/')).text, 'visits: 1')
      await servers.redis.cli('config', 'resetstat')
      for (let i = 0; i < 10; i++) assert.equal((await c.get('/peek')).text, 'visits: 1')
      assert.equal(await pexpires(), want)
      assert.equal(Number(await servers.redis.cli('strlen', `sess:${c.sessionId()}`)) > 0, true)
    }
  } finally {
    await lazy.close()
    await eager.close()
  }
})

test('ExpressStore with lockRequests: a get through the Promise form (no request to hold the lock) leaves no lock behind', async () => {
  const inner = rs.memory()
  const store = new ExpressStore({ store: inner, lockRequests: { waitMs: 300 } })
  try {
    await store.set('s', { cookie: { expires: new Date(Date.now() + 60_000).toISOString() }, n: 1 })
    assert.equal((await store.get('s')).n, 1)
    assert.equal((await store.get('s')).n, 1, 'the second get takes the lock again at once')
    const lock = await inner.lock('s', { waitMs: 0 })
    await lock.release()
  } finally {
    await inner.close()
  }
})

test('ExpressStore: callbacks once and asynchronously, Promises too, connect-redis TTL rule, bad input refused', async () => {
  const inner = rs.memory({ timeoutUnit: 'min', maxSessionBytes: 1000 })
  const store = new ExpressStore({ store: inner })
  const cookie = (ms) => ({ originalMaxAge: ms, expires: new Date(Date.now() + ms).toISOString() })
  try {
    // a callback, called once, after the call returned
    let calls = 0
    let returned = false
    await new Promise((resolve) => {
      store.set('a', { cookie: cookie(120_000), n: 1 }, (err) => {
        calls++
        assert.equal(err, null)
        assert.equal(returned, true, 'called asynchronously')
        resolve()
      })
      returned = true
    })
    await sleep(10)
    assert.equal(calls, 1)
    // the Promise form
    const got = await store.get('a')
    assert.equal(got.n, 1)
    assert.equal(typeof got.cookie.expires, 'string', 'get resolves the session with its cookie')
    assert.equal(await inner.ttl('a'), 120, 'ttl from cookie.expires (a timeoutUnit "min" store gets minutes)')
    await store.set('b', { n: 2 })
    assert.equal(await inner.ttl('b'), 86_400, 'no cookie.expires: one day')
    await store.set('c', { cookie: cookie(-1000), n: 3 })
    assert.equal(await inner.exists('c'), false, 'an expiry in the past destroys')
    const fixed = new ExpressStore({ store: inner, ttl: 30 })
    await fixed.set('d', { cookie: cookie(120_000) })
    assert.equal(await inner.ttl('d'), 30, 'the ttl option wins')
    const fn = new ExpressStore({ store: inner, ttl: (s) => s.n * 10 })
    await fn.set('e', { n: 4 })
    assert.equal(await inner.ttl('e'), 40, 'a ttl function of the session')
    // listing
    const all = await new Promise((res, rej) => store.all((e, v) => (e ? rej(e) : res(v))))
    assert.deepEqual(all.map((s) => s.id).sort(), ['a', 'b', 'd', 'e'])
    assert.equal(all.find((s) => s.id === 'e').n, 4)
    assert.deepEqual((await store.ids()).sort(), ['a', 'b', 'd', 'e'])
    assert.equal(await store.length(), 4)
    // bad input: a coded error, the stored session as it was
    const circular = { n: 5 }
    circular.self = circular
    const err = await new Promise((res) => store.set('a', circular, res))
    assert.equal(err.code, 'ERR_NOT_SERIALIZABLE')
    await assert.rejects(store.set('a', { big: 'x'.repeat(2000) }), { code: 'ERR_SESSION_TOO_LARGE' })
    assert.equal((await store.get('a')).n, 1)
    // destroy and clear
    await new Promise((res) => store.destroy('a', res))
    assert.equal(await store.get('a'), null)
    await store.clear()
    assert.equal(await store.length(), 0)
    // options
    assert.throws(() => new ExpressStore({ store: inner, ttll: 5 }), { code: 'ERR_INVALID_OPTION', message: /ttll.*did you mean 'ttl'/ })
    assert.throws(() => new ExpressStore({ store: {} }), { code: 'ERR_INVALID_OPTION' })
    assert.throws(() => new ExpressStore({ store: rs.dummy(), lockRequests: { waitMS: 5 } }), { code: 'ERR_INVALID_OPTION', message: /waitMS.*waitMs/ })
    const noLocks = { get: inner.get, set: inner.set, remove: inner.remove, update: inner.update }
    assert.throws(() => new ExpressStore({ store: noLocks, lockRequests: true }), { code: 'ERR_INVALID_OPTION', message: /lockRequests needs a store with locks/ })
    assert.throws(() => new ExpressStore({ store: inner, ttl: -1 }), { code: 'ERR_INVALID_OPTION' })
  } finally {
    await inner.close()
  }
})

test('express failClosed: false on a Redis that refuses writes (maxmemory): the error reaches the app, the store is not taken for down', async () => {
  const full = await startRedis()
  await full.cli('config', 'set', 'maxmemory-policy', 'noeviction')
  await full.cli('config', 'set', 'maxmemory', '1')
  const apps = [
    await startApp('express', { spec: { kind: 'redis', url: full.url }, adapter: { failClosed: false } }),
    await startApp('express', { spec: { kind: 'redis', url: full.url, options: { ioThread: true } }, adapter: { failClosed: false } }),
  ]
  try {
    for (const app of apps) {
      const cs = Array.from({ length: 5 }, () => client(app.port))
      // Five browsers at once, each making a session that cannot be stored.
      await Promise.all(cs.map((c) => c.get('/')))
      const errors = JSON.parse((await client(app.port).get('/errors')).text)
      assert.deepEqual(errors, Array(5).fill('ERR_STORE_READONLY'), 'every refused write reached the app, none was dropped')
      // Not "disconnected": sessions are still read (express-session would say "no session").
      assert.deepEqual(await Promise.all(cs.map(async (c) => (await c.get('/peek')).text)), Array(5).fill('visits: 0'))
    }
  } finally {
    for (const app of apps) await app.close()
    await full.stop()
  }
})
