'use strict'
// rs-store under the real simpleS 0.8.8 (what `npm install simples` gives),
// through rs-store/simples-0.8: its callback store API.
const test = require('node:test')
const assert = require('node:assert/strict')
const rs = require('..')
const simples08 = require('rs-store/simples-0.8')
const { startRedis, sleep } = require('./support/redis-servers')
const { startApp, spawnApp, client } = require('./support/web-apps')

let redis
test.before(async () => {
  redis = await startRedis()
})
test.after(() => redis.stop())

for (const kind of ['memory', 'redis']) {
  test(`simpleS 0.8.8 (${kind}): the session counter persists across requests`, async () => {
    const app = await startApp('simples-0.8', { spec: kind === 'redis' ? { kind, url: redis.url } : { kind } })
    try {
      const c = client(app.port, '_session')
      for (let i = 1; i <= 3; i++) assert.equal((await c.get('/')).text, `visits: ${i}`)
      assert.match(c.sessionId(), /^[0-9a-f]{32}$/)
      await sleep(50) // simpleS 0.8.8 stores the session after the response
      assert.equal((await c.get('/peek')).text, 'visits: 3')
      if (kind === 'redis') {
        const stored = JSON.parse(await redis.cli('get', `sess:${c.sessionId()}`))
        assert.deepEqual(Object.keys(stored).sort(), ['container', 'expire', 'hash', 'id'])
        const ttl = Number(await redis.cli('ttl', `sess:${c.sessionId()}`))
        assert.ok(ttl > 3590 && ttl <= 3600, `stored until simpleS's expire (${ttl} s)`)
      }
      const other = client(app.port, '_session')
      assert.equal((await other.get('/')).text, 'visits: 1')
    } finally {
      await app.close()
    }
  })
}

test('simpleS 0.8.8 (redis): sessions survive a restart; an expired session is gone', async () => {
  // The first app keeps sessions a minute: restarting takes seconds on a busy
  // machine. The second keeps them 1 s, to see one run out.
  const seen = rs.redis(redis.url)
  const before = await seen.length()
  let app = await spawnApp('simples-0.8', { spec: { kind: 'redis', url: redis.url }, timeout: 60 })
  const c = client(app.port, '_session')
  try {
    assert.equal((await c.get('/')).text, 'visits: 1')
    // simpleS 0.8.8 stores the session after it has answered: wait for it
    while ((await seen.length()) === before) await sleep(20)
    await app.stop()
    app = await spawnApp('simples-0.8', { spec: { kind: 'redis', url: redis.url }, timeout: 1 })
    c.port = app.port
    assert.equal((await c.get('/')).text, 'visits: 2')
    // and the second app's save (1 s) has landed before the clock starts
    const saved = async () => {
      for (const id of await seen.ids()) if ((await seen.get(id))?.container?.visits === 2) return true
      return false
    }
    while (!(await saved())) await sleep(20)
    await sleep(1300)
    assert.equal((await c.get('/')).text, 'visits: 1', 'the 1 s timeout ran out')
  } finally {
    await app.stop()
    await seen.close()
  }
})

test('simples-0.8: callbacks never see errors (simpleS 0.8.8 has no error argument); they go to onError', async () => {
  const inner = rs.memory({ maxSessionBytes: 200 })
  const errors = []
  const store = simples08(inner, { onError: (e) => errors.push(e.code) })
  const now = Date.now()
  await new Promise((r) => store.set('a', { id: 'a', hash: 'h', expire: now + 60_000, container: { n: 1 } }, r))
  assert.equal(await inner.ttl('a'), 60)
  assert.deepEqual(await new Promise((r) => store.get('a', r)), { id: 'a', hash: 'h', expire: now + 60_000, container: { n: 1 } })
  // too large: reported, the stored session stays
  await new Promise((r) => store.set('a', { id: 'a', hash: 'h', expire: now + 60_000, container: { big: 'x'.repeat(500) } }, r))
  assert.deepEqual(errors, ['ERR_SESSION_TOO_LARGE'])
  assert.equal((await inner.get('a')).container.n, 1)
  // no timeout configured: simpleS passes NaN; the store's default ttl (one day) applies
  await new Promise((r) => store.set('b', { id: 'b', hash: 'h', expire: NaN, container: {} }, r))
  assert.equal(await inner.ttl('b'), 86_400)
  // an expire already past removes
  await new Promise((r) => store.set('b', { id: 'b', hash: 'h', expire: now - 1, container: {} }, r))
  assert.equal(await inner.exists('b'), false)
  // a get that fails counts as "no session"
  await inner.close()
  assert.equal(await new Promise((r) => store.get('a', r)), null)
  assert.deepEqual(errors, ['ERR_SESSION_TOO_LARGE', 'ERR_STORE_CLOSED'])
  assert.throws(() => simples08(inner, { onEror: () => {} }), { code: 'ERR_INVALID_OPTION', message: /onError/ })
})
