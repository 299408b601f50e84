'use strict'
// End to end with the real simpleS 0.9.0-alpha-10 on loopback.
const test = require('node:test')
const assert = require('node:assert/strict')
const rs = require('..')
const { startCounterApp, client } = require('../demo/counter-app')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Wraps a store so the test sees which methods simpleS called, detached. */
function recording(store) {
  const calls = []
  const rec = {}
  for (const name of ['get', 'set', 'remove', 'update']) {
    const fn = store[name]
    rec[name] = (...args) => {
      calls.push(name)
      return fn(...args)
    }
  }
  return { rec, calls }
}

for (const wrap of [true, false]) {
  const how = wrap ? 'simples.store(store)' : 'plain store option'
  test(`simpleS (${how}): the session counter persists across requests`, async () => {
    const store = rs.memory()
    const app = await startCounterApp({ store, wrap })
    try {
      const c = client(app.port)
      for (let i = 1; i <= 5; i++) assert.equal((await c.get('/')).text, `visits: ${i}`)
      assert.match(c.sessionId(), /^[0-9a-f]{32}$/)
      assert.deepEqual(await store.get(c.sessionId()), { visits: 5 })
      // another client has its own session
      const other = client(app.port)
      assert.equal((await other.get('/')).text, 'visits: 1')
      assert.equal(await store.length(), 2)
    } finally {
      await app.close()
      await store.close()
    }
  })
}

test('simpleS: read-only requests call update (sliding expiry), writes call set', async () => {
  const store = rs.memory()
  const { rec, calls } = recording(store)
  const app = await startCounterApp({ store: rec, timeout: 60_000 })
  try {
    const c = client(app.port)
    await c.get('/')
    assert.deepEqual(calls, ['set'], 'a new session is set (no cookie yet, so no get)')
    calls.length = 0
    await store.update(c.sessionId(), 1_000) // shorten, then a read-only request slides it back
    assert.equal((await c.get('/peek')).text, 'visits: 1')
    assert.deepEqual(calls, ['get', 'update'])
    assert.equal(await store.ttl(c.sessionId()), 60, 'update slid the expiry to simpleS timeout (ms)')
  } finally {
    await app.close()
    await store.close()
  }
})

test('simpleS: destroy → remove, then simpleS update does not resurrect the session', async () => {
  const store = rs.memory()
  const { rec, calls } = recording(store)
  const app = await startCounterApp({ store: rec })
  try {
    const c = client(app.port)
    await c.get('/')
    await c.get('/')
    const id = c.sessionId()
    calls.length = 0
    assert.equal((await c.get('/logout')).text, 'bye')
    assert.deepEqual(calls, ['get', 'remove', 'update'])
    assert.equal(await store.exists(id), false)
    assert.equal(await store.length(), 0)
    // The old cookie now starts from zero
    assert.equal((await c.get('/')).text, 'visits: 1')
  } finally {
    await app.close()
    await store.close()
  }
})

test('simpleS: sessions expire after the timeout', async () => {
  const store = rs.memory({ sweepIntervalMs: 50 })
  const app = await startCounterApp({ store, timeout: 300 })
  try {
    const c = client(app.port)
    await c.get('/')
    assert.equal((await c.get('/')).text, 'visits: 2')
    await sleep(500)
    assert.equal(await store.length(), 0, 'expired and swept')
    assert.equal((await c.get('/')).text, 'visits: 1', 'the expired session is gone')
  } finally {
    await app.close()
    await store.close()
  }
})

test('simpleS: a hostile cookie id gets a clean response, not a hang or crash', async () => {
  const store = rs.memory()
  const app = await startCounterApp({ store })
  try {
    const c = client(app.port)
    for (const bad of ['x'.repeat(2000), '..%2F..%2Fetc', '%00']) {
      c.cookie = `_session=${bad}`
      const res = await c.get('/')
      assert.equal(res.status, 200)
      assert.equal(res.text, 'visits: 1', 'a fresh session replaces the unknown id')
      assert.match(c.sessionId(), /^[0-9a-f]{32}$/)
    }
    assert.equal(await store.length(), 3)
  } finally {
    await app.close()
    await store.close()
  }
})
