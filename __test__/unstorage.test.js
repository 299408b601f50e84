'use strict'
// rs-store as an unstorage driver (rs-store/unstorage) under the real
// unstorage createStorage, on a real redis-server and on the file store.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createStorage } = require('unstorage')
const rs = require('..')
const rsStore = require('rs-store/unstorage')
const { startRedis } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')

const servers = redisAndDaemon(test)

const stores = {
  redis: () => rs.redis({ url: servers.redis.url, prefix: `un${process.hrtime.bigint()}:` }),
  file: () => rs.file({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-unstorage-')) }),
}

for (const kind of ['redis', 'file']) {
  test(`unstorage (${kind}): value kinds round-trip, keys, hasItem, removeItem, clear, dispose`, async () => {
    const store = stores[kind]()
    const driver = rsStore({ store })
    const storage = createStorage({ driver })
    const values = {
      'str': 'hello',
      'json:text': '{"not":"parsed by the driver"}',
      'num': 42,
      'float': 1.5,
      'bool': true,
      'obj': { a: [1, 'two', { three: null }] },
      'arr': [1, 2, 3],
      'deep:a:b': 'nested key',
    }
    for (const [k, v] of Object.entries(values)) await storage.setItem(k, v)
    for (const [k, v] of Object.entries(values)) assert.deepEqual(await storage.getItem(k), k === 'json:text' ? JSON.parse(v) : v, k)
    assert.equal(await storage.getItemRaw('json:text'), '{"not":"parsed by the driver"}', 'the driver answers the text it was given')
    assert.equal(await storage.getItem('missing'), null)
    assert.equal(await storage.hasItem('num'), true)
    assert.equal(await storage.hasItem('missing'), false)
    assert.deepEqual((await storage.getKeys()).sort(), Object.keys(values).sort())
    assert.deepEqual((await storage.getKeys('deep')).sort(), ['deep:a:b'])
    await storage.removeItem('str')
    assert.equal(await storage.hasItem('str'), false)
    // (unstorage's clear(base) reaches a driver only when a mount lies below base: the driver's own clear(base))
    await driver.clear('deep:')
    assert.deepEqual((await storage.getKeys()).sort(), Object.keys(values).filter((k) => k !== 'str' && k !== 'deep:a:b').sort())
    await storage.clear()
    assert.deepEqual(await storage.getKeys(), [])
    await storage.dispose()
    await assert.rejects(store.get('num'), { code: 'ERR_STORE_CLOSED' }, 'dispose closes the store')
  })
}

test('unstorage (redis): ttl in seconds, per item, from the driver option, else the store’s defaultTtl; mounts', async () => {
  const store = rs.redis({ url: servers.redis.url, prefix: 'unttl:', timeoutUnit: 's', defaultTtl: 500 })
  const storage = createStorage({ driver: rsStore({ store }) })
  const withDefault = createStorage({ driver: rsStore({ store, ttl: 90 }) })
  try {
    await storage.setItem('a', 'x', { ttl: 30 })
    assert.equal(Number(await servers.redis.cli('ttl', 'unttl:a')), 30)
    await storage.setItem('b', 'x')
    assert.equal(Number(await servers.redis.cli('ttl', 'unttl:b')), 500)
    await withDefault.setItem('c', 'x')
    assert.equal(Number(await servers.redis.cli('ttl', 'unttl:c')), 90)
    await storage.setItem('short', { n: 1 }, { ttl: 0.2 })
    assert.ok(Number(await servers.redis.cli('pttl', 'unttl:short')) <= 200)
    // mounted under a base: unstorage strips the mount point before the driver
    const mounted = createStorage()
    mounted.mount('cache', rsStore({ store }))
    await mounted.setItem('cache:page:1', { html: '<p>' })
    assert.deepEqual(await store.get('page:1'), JSON.stringify({ html: '<p>' }))
    assert.deepEqual(await mounted.getKeys('cache:page'), ['cache:page:1'])
  } finally {
    await store.close()
  }
})

test('unstorage: a Redis that is down rejects with a coded error within the timeout', async () => {
  const r = await startRedis()
  const store = rs.redis({ url: r.url, commandTimeoutMs: 300, connectTimeoutMs: 300 })
  const storage = createStorage({ driver: rsStore({ store }) })
  try {
    await storage.setItem('a', 1)
    await r.stop()
    const t = Date.now()
    await assert.rejects(storage.getItem('a'), { code: 'ERR_STORE_UNAVAILABLE' })
    await assert.rejects(storage.setItem('a', 2), { code: 'ERR_STORE_UNAVAILABLE' })
    assert.ok(Date.now() - t < 2000, `${Date.now() - t} ms`)
    assert.throws(() => rsStore({ store, ttl: -1 }), { code: 'ERR_INVALID_OPTION' })
    assert.throws(() => rsStore({ store, base: 'x' }), { code: 'ERR_INVALID_OPTION' })
  } finally {
    await store.close()
  }
})
