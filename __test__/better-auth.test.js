'use strict'
// rs-store as better-auth's secondaryStorage (rs-store/better-auth): the
// real better-auth served over HTTP (its node handler) with a cookie jar,
// sessions kept only in rs-store (users in better-auth's memory adapter),
// on a real redis-server and on the file store.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { secondaryStorage } = require('rs-store/better-auth')
const { startRedis } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')

const servers = redisAndDaemon(test)
const SECRET = 'a better-auth secret of at least thirty-two characters'

/** better-auth over `store` on a loopback port; `db` (the users) outlives app restarts like a database would. */
async function startAuth(store, db, more = {}) {
  const { betterAuth } = await import('better-auth')
  const { memoryAdapter } = await import('better-auth/adapters/memory')
  const { toNodeHandler } = await import('better-auth/node')
  const server = http.createServer()
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const baseURL = `http://127.0.0.1:${server.address().port}`
  const auth = betterAuth({ baseURL, secret: SECRET, database: memoryAdapter(db), secondaryStorage: secondaryStorage(store), emailAndPassword: { enabled: true }, ...more })
  server.on('request', toNodeHandler(auth))
  let cookie = ''
  const call = async (p, body) => {
    const res = await fetch(`${baseURL}/api/auth${p}`, {
      method: body ? 'POST' : 'GET',
      headers: { cookie, origin: baseURL, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body && JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    })
    const set = res.headers.getSetCookie().map((c) => c.split(';')[0])
    if (set.length) cookie = set.filter((c) => !c.endsWith('=')).join('; ')
    return { status: res.status, body: await res.json().catch(() => null) }
  }
  return { call, jar: { get: () => cookie, set: (c) => (cookie = c) }, close: () => new Promise((r) => server.close(r)) }
}

const stores = {
  redis: () => rs.redis({ url: servers.redis.url, prefix: `ba${process.hrtime.bigint()}:` }),
  file: () => rs.file({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-better-auth-')) }),
}

for (const kind of ['redis', 'file']) {
  test(`better-auth (${kind}): sign-up, the session across an app restart, its ttl, sign-out`, async () => {
    const store = stores[kind]()
    const db = { user: [], session: [], account: [], verification: [] }
    let app = await startAuth(store, db)
    try {
      assert.equal((await app.call('/sign-up/email', { email: 'ada@example.com', password: 'correct horse battery', name: 'Ada' })).status, 200)
      const first = (await app.call('/get-session')).body
      assert.equal(first.user.email, 'ada@example.com')
      assert.equal(db.session.length, 0, 'sessions are kept in rs-store only')
      const token = first.session.token
      assert.equal(JSON.parse(await store.get(token)).user.email, 'ada@example.com', 'the session JSON under its token')
      // better-auth's expiresIn (7 days) is seconds
      const ttl = await store.ttl(token)
      assert.ok(ttl > 604_790 && ttl <= 604_800, `ttl ${ttl}`)
      assert.ok((await store.ids()).some((k) => k.startsWith('active-sessions-')), "better-auth's per-user index")
      // a restart of the app: the same cookie finds the session
      const cookie = app.jar.get()
      await app.close()
      app = await startAuth(store, db)
      app.jar.set(cookie)
      assert.equal((await app.call('/get-session')).body.session.token, token)
      assert.equal((await app.call('/sign-out', {})).status, 200)
      assert.equal(await store.get(token), null, 'sign-out removes the session')
      app.jar.set(cookie)
      assert.equal((await app.call('/get-session')).body, null, 'the old cookie finds no session')
    } finally {
      await app.close()
      await store.close()
    }
  })
}

test('better-auth (redis): rate limits counted in rs-store (increment) stop the 4th sign-in of 3 allowed per window', async () => {
  const store = stores.redis()
  const db = { user: [], session: [], account: [], verification: [] }
  const app = await startAuth(store, db, { rateLimit: { enabled: true, storage: 'secondary-storage', customRules: { '/sign-in/email': { window: 60, max: 3 } } } })
  try {
    assert.equal((await app.call('/sign-up/email', { email: 'eve@example.com', password: 'correct horse battery', name: 'Eve' })).status, 200)
    const statuses = []
    for (let i = 0; i < 5; i++) statuses.push((await app.call('/sign-in/email', { email: 'eve@example.com', password: 'wrong password!' })).status)
    assert.deepEqual(statuses, [401, 401, 401, 429, 429])
  } finally {
    await app.close()
    await store.close()
  }
})

test('better-auth secondaryStorage: getAndDelete and increment are atomic across two connections (two processes)', async () => {
  const a = rs.redis({ url: servers.redis.url, prefix: 'ba-atomic:' })
  const b = rs.redis({ url: servers.redis.url, prefix: 'ba-atomic:' })
  const [sa, sb] = [secondaryStorage(a), secondaryStorage(b)]
  try {
    await sa.set('token', 'once', 60)
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? sa : sb).getAndDelete('token')))
    assert.deepEqual(got.filter((v) => v !== null), ['once'], 'one caller gets the value')
    const counts = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? sa : sb).increment('hits', 2)))
    assert.deepEqual(counts.sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i + 1))
    const pttl = Number(await servers.redis.cli('pttl', 'ba-atomic:hits'))
    assert.ok(pttl > 0 && pttl <= 2000, `the window counts from the first increment (${pttl} ms)`)
  } finally {
    await a.close()
    await b.close()
  }
})

test('better-auth secondaryStorage: strings round-trip as given, ttl in seconds, delete; a Redis that is down rejects with a code within the timeout', async () => {
  const r = await startRedis()
  const store = rs.redis({ url: r.url, prefix: 'ba:', timeoutUnit: 'ms', commandTimeoutMs: 300, connectTimeoutMs: 300 })
  const storage = secondaryStorage(store)
  try {
    for (const v of ['plain text', '{"a":1}', '42', '', '"quoted"']) {
      await storage.set('k', v, 60)
      assert.equal(await storage.get('k'), v)
    }
    assert.equal(Number(await r.cli('ttl', 'ba:k')), 60, 'seconds, whatever the store’s timeoutUnit')
    await storage.set('forever', 'x')
    assert.equal(Number(await r.cli('ttl', 'ba:forever')), 86_400, "no ttl: the store's defaultTtl")
    await storage.delete('k')
    assert.equal(await storage.get('k'), null)
    const app = await startAuth(store, { user: [], session: [], account: [], verification: [] })
    try {
      assert.equal((await app.call('/sign-up/email', { email: 'bob@example.com', password: 'correct horse battery', name: 'Bob' })).status, 200)
      await r.stop()
      const t = Date.now()
      await assert.rejects(storage.get('forever'), { code: 'ERR_STORE_UNAVAILABLE' })
      await assert.rejects(storage.set('k', 'v', 10), { code: 'ERR_STORE_UNAVAILABLE' })
      const res = await app.call('/get-session')
      assert.ok(res.status >= 500, `better-auth answers an error (${res.status}), not a session`)
      assert.ok(Date.now() - t < 2500, `${Date.now() - t} ms`)
    } finally {
      await app.close()
    }
    assert.throws(() => secondaryStorage({}), { code: 'ERR_INVALID_OPTION' })
    const noLocks = { get: store.get, set: store.set, remove: store.remove, update: store.update }
    assert.throws(() => secondaryStorage(noLocks), { code: 'ERR_INVALID_OPTION', message: /needs a store with locks/ })
  } finally {
    await store.close()
  }
})
