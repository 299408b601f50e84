'use strict'
// Unit tests of the store shape over the memory and dummy backends: every
// method, units, expiry, bounds, detached methods, and every bad input.
const test = require('node:test')
const assert = require('node:assert/strict')
const rs = require('..')
const { checkAdd } = require('./support/counter-race')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const session = () => ({ user: 'ada', roles: ['admin'], cart: { items: [1, 2, 3] }, n: 0 })

async function rejects(promise, Cls, code) {
  assert.ok(promise instanceof Promise, 'returns a Promise')
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof Cls, `${e.constructor.name} is a ${Cls.name}: ${e.message}`)
    assert.equal(e.code, code)
    return true
  })
}

test('memory: every method returns a native Promise and works detached', async () => {
  const store = rs.memory()
  const { get, set, remove, update, destroy, resetTimer, ttl, exists, length, clear, all, entries, close } = store
  for (const name of Object.keys(store)) assert.ok(Object.hasOwn(store, name), `${name} is an own property`)

  assert.ok(set('a', session(), 60_000) instanceof Promise)
  await set('a', session(), 60_000)
  assert.deepEqual(await get('a'), session())
  assert.equal(await exists('a'), true)
  assert.equal(await length(), 1)
  assert.equal(await ttl('a'), 60)
  assert.equal(await update('a', 120_000), true)
  assert.equal(await ttl('a'), 120)
  assert.equal(await resetTimer('a', 5_000), true)
  assert.equal(await ttl('a'), 5)
  await set('b', JSON.stringify({ text: true }), 60_000) // approuter passes JSON text
  assert.deepEqual(await get('b'), { text: true })
  assert.deepEqual((await all()).sort((x, y) => (x.n === undefined) - (y.n === undefined)), [session(), { text: true }])
  assert.deepEqual((await entries()).map((e) => e.id).sort(), ['a', 'b'])
  assert.equal(await remove('a'), true)
  assert.equal(await remove('a'), false)
  assert.equal(await destroy('never-set'), false)
  assert.equal(await get('a'), null)
  assert.equal(await ttl('a'), -2)
  assert.equal(await exists('a'), false)
  assert.equal(await clear(), 1)
  assert.equal(await length(), 0)
  await close()
  await rejects(get('b'), Error, 'ERR_STORE_CLOSED')
})

test('memory: get returns a fresh object; callers cannot mutate stored data', async () => {
  const store = rs.memory()
  const s = session()
  await store.set('a', s, 10_000)
  s.user = 'mutated after set'
  const one = await store.get('a')
  one.roles.push('hacker')
  const two = await store.get('a')
  assert.notEqual(one, two)
  assert.deepEqual(two, session())
  await store.close()
})

test('memory: serializes a Map subclass with toJSON at call time (simpleS Session)', async () => {
  const Session = require('simples/lib/session/session')
  const store = rs.memory()
  const s = new Session(store, 'id1', 1000)
  s.set('visits', 3)
  await store.set('id1', s, 1000)
  s.set('visits', 4) // later change is not seen: serialized at call time
  assert.deepEqual(await store.get('id1'), { visits: 3 })
  await store.close()
})

test('memory: update after remove does not resurrect (simpleS destroy path)', async () => {
  const store = rs.memory()
  await store.set('a', session(), 60_000)
  await store.remove('a')
  assert.equal(await store.update('a', 60_000), false)
  assert.equal(await store.get('a'), null)
  assert.equal(await store.exists('a'), false)
  await store.close()
})

test('memory: expiry is immediate and a background sweep reclaims memory', async () => {
  const store = rs.memory({ sweepIntervalMs: 20 })
  // A ttl well past the time 500 sets take on a busy machine (a few ms idle).
  for (let i = 0; i < 500; i++) await store.set(`s${i}`, session(), 1000)
  await store.set('keep', session(), 60_000)
  assert.equal(await store.length(), 501)
  await sleep(1100)
  assert.equal(await store.get('s1'), null, 'expired session is invisible')
  assert.equal(await store.length(), 1)
  // the sweep removed them without any read: entries() sees only the live one
  assert.deepEqual((await store.entries()).map((e) => e.id), ['keep'])
  await store.close()
})

test('memory: timeout units and defaults', async () => {
  const s = rs.memory({ timeoutUnit: 's' })
  await s.set('a', session(), 30)
  assert.equal(await s.ttl('a'), 30)
  await s.set('b', session()) // no timeout: defaultTtl, one day
  assert.equal(await s.ttl('b'), 86_400)
  await s.set('inf', session(), Infinity)
  assert.equal(await s.ttl('inf'), -1)
  await s.set('zero', session(), 0) // zero lifetime: not stored
  assert.equal(await s.exists('zero'), false)
  await s.close()

  const m = rs.memory({ timeoutUnit: 'min', defaultTtl: 15 })
  await m.set('a', '{"x":1}')
  assert.equal(await m.ttl('a'), 900)
  await m.resetTimer('a', 2)
  assert.equal(await m.ttl('a'), 120)
  await m.close()

  // a 30-day and a 10-year expiry do not overflow anything
  const ms = rs.memory()
  await ms.set('long', session(), 30 * 86_400_000)
  await ms.set('longer', session(), 10 * 365 * 86_400_000)
  await sleep(20)
  assert.equal(await ms.ttl('long'), 30 * 86_400)
  assert.ok((await ms.get('longer')) !== null)
  await ms.close()
})

test('memory: bounded by maxEntries and maxBytes with LRU eviction', async () => {
  const store = rs.memory({ maxEntries: 3 })
  for (const id of ['a', 'b', 'c']) await store.set(id, session(), 60_000)
  await store.get('a') // a is now most recently used
  await store.set('d', session(), 60_000)
  assert.equal(await store.length(), 3)
  assert.equal(await store.exists('b'), false, 'least recently used evicted')
  assert.equal(await store.exists('a'), true)
  await store.close()

  const size = JSON.stringify(session()).length + 3 + 96 // ids k10..k99
  const bytes = rs.memory({ maxBytes: size * 10 })
  for (let i = 0; i < 100; i++) await bytes.set(`k${i}`, session(), 60_000)
  assert.equal(await bytes.length(), 10)
  assert.equal(await bytes.exists('k99'), true)
  await rejects(bytes.set('huge', { blob: 'x'.repeat(size * 20) }, 1000), RangeError, 'ERR_SESSION_TOO_LARGE')
  assert.equal(await bytes.length(), 10, 'refused write evicted nothing')
  await bytes.close()
})

test('memory: calls on one id apply in call order when not awaited', async () => {
  const store = rs.memory()
  const ops = []
  for (let i = 0; i < 100; i++) {
    ops.push(store.set('a', { i }, 60_000))
    ops.push(store.get('a').then((s) => assert.equal(s.i, i)))
  }
  ops.push(store.remove('a'), store.update('a', 60_000))
  await Promise.all(ops)
  assert.equal(await store.get('a'), null)
  await store.close()
})

test('memory: bad input rejects with coded errors and leaves data intact', async () => {
  const store = rs.memory({ maxSessionBytes: 2000 })
  await store.set('good', session(), 60_000)
  const circular = {}
  circular.self = circular

  await rejects(store.get(42), TypeError, 'ERR_INVALID_ID')
  await rejects(store.get(undefined), TypeError, 'ERR_INVALID_ID')
  await rejects(store.set({}, session(), 1), TypeError, 'ERR_INVALID_ID')
  await rejects(store.exists(null), TypeError, 'ERR_INVALID_ID')
  // writes with an id that cannot be stored reject...
  await rejects(store.set('', session(), 1000), RangeError, 'ERR_INVALID_ID')
  await rejects(store.set('x'.repeat(1025), session(), 1000), RangeError, 'ERR_INVALID_ID')
  await rejects(store.remove('€'.repeat(400)), RangeError, 'ERR_INVALID_ID') // 1200 bytes
  await rejects(store.update('', 1000), RangeError, 'ERR_INVALID_ID')
  // ...while reads answer "missing" (such an id names no session; see binding.rs)
  assert.equal(await store.get(''), null)
  assert.equal(await store.get('x'.repeat(5000)), null)
  assert.equal(await store.exists('x'.repeat(5000)), false)
  assert.equal(await store.ttl(''), -2)
  await rejects(store.set('good', circular, 1000), TypeError, 'ERR_NOT_SERIALIZABLE')
  await rejects(store.set('good', { big: 1n }, 1000), TypeError, 'ERR_NOT_SERIALIZABLE')
  await rejects(store.set('good', null, 1000), TypeError, 'ERR_NOT_SERIALIZABLE')
  await rejects(store.set('good', 5, 1000), TypeError, 'ERR_NOT_SERIALIZABLE')
  await rejects(store.set('good', { s: 'x'.repeat(3000) }, 1000), RangeError, 'ERR_SESSION_TOO_LARGE')
  await rejects(store.set('good', session(), -1), RangeError, 'ERR_INVALID_TIMEOUT')
  await rejects(store.set('good', session(), NaN), RangeError, 'ERR_INVALID_TIMEOUT')
  await rejects(store.set('good', session(), '100'), TypeError, 'ERR_INVALID_TIMEOUT')
  await rejects(store.update('good', -5), RangeError, 'ERR_INVALID_TIMEOUT')
  await rejects(store.resetTimer('good', NaN), RangeError, 'ERR_INVALID_TIMEOUT')
  // hostile but valid ids are just keys
  for (const id of ['..', '../../etc/passwd', 'a/b', 'nul\0byte', 'x'.repeat(1024)]) {
    await store.set(id, { id }, 60_000)
    assert.deepEqual(await store.get(id), { id })
  }
  assert.deepEqual(await store.get('good'), session(), 'stored data intact')
  assert.equal(await store.ttl('good') > 50, true, 'expiry intact')
  await store.close()
})

test('memory: session text that is not exactly one JSON value is refused at the write (ERR_NOT_SERIALIZABLE)', async () => {
  const store = rs.memory()
  await rejects(store.set('t', 'not json', 1000), TypeError, 'ERR_NOT_SERIALIZABLE')
  await rejects(store.add('t', '{"a":1} {"b":2}', 1000), TypeError, 'ERR_NOT_SERIALIZABLE')
  assert.equal(await store.exists('t'), false)
  await store.set('t', ' {"a":1} ', 1000)
  assert.deepEqual(await store.get('t'), { a: 1 })
  await store.close()
})

test('factory options are checked', () => {
  const bad = (opts, Cls) =>
    assert.throws(() => rs.memory(opts), (e) => e instanceof Cls && e.code === 'ERR_INVALID_OPTION')
  bad({ maxEntries: 0 }, RangeError)
  bad({ maxEntries: 1.5 }, RangeError)
  bad({ maxEntries: '10' }, TypeError)
  bad({ maxBytes: -1 }, RangeError)
  bad({ maxBytes: 10 }, RangeError) // below one entry's overhead (native check)
  bad({ timeoutUnit: 'hours' }, RangeError)
  bad({ defaultTtl: -1 }, RangeError)
  bad({ maxSessionBytes: 0 }, RangeError)
  bad('nope', TypeError)
})

test('memory: add is set-if-absent, atomic; expired and removed sessions can be added again', async () => {
  const store = rs.memory()
  await checkAdd([store, store])
  await store.set('short', session(), 30)
  assert.equal(await store.add('short', { n: 2 }, 60_000), false)
  await sleep(60)
  assert.equal(await store.add('short', { n: 2 }, 60_000), true, 'an expired session is not in the way')
  assert.deepEqual(await store.get('short'), { n: 2 })
  const bounded = rs.memory({ maxBytes: 1000 })
  await rejects(bounded.add('big', { x: 'x'.repeat(2000) }, 1000), RangeError, 'ERR_SESSION_TOO_LARGE')
  assert.equal(await bounded.exists('big'), false)
  await store.close()
  await bounded.close()
})

test('dummy: stores nothing, always resolves', async () => {
  const d = rs.dummy()
  await d.set('a', session(), 1000)
  assert.equal(await d.get('a'), null)
  assert.equal(await d.exists('a'), false)
  assert.equal(await d.length(), 0)
  assert.equal(await d.update('a', 1000), false)
  assert.equal(await d.ttl('a'), -2)
  assert.equal(await d.add('a', session(), 1000), true, 'add "writes" (nothing)')
  await rejects(d.get(1), TypeError, 'ERR_INVALID_ID')
  await d.close()
})

test('the native op table takes exact names: an unknown or over-long name is refused, never cut to a known one', () => {
  const { fromNative } = require('../lib/errors')
  const { memoryStore, syncStore } = require('../lib/native')
  const native = syncStore(memoryStore())
  native.call('set', 'a', '{"n":1}', 60_000)
  for (const op of ['gets', 'get'.padEnd(24, 'x'), 'remove'.padEnd(300, ' '), 'GET', '']) {
    let caught
    try {
      native.call(op, 'a', '{}', 1000)
    } catch (e) {
      caught = fromNative(e)
    }
    assert.equal(caught && caught.code, 'ERR_INVALID_ARGUMENT', `op ${JSON.stringify(op.slice(0, 30))}`)
    assert.match(caught.message, /unknown operation/)
  }
  assert.equal(native.call('get', 'a'), '{"n":1}', 'the session is intact')
  native.close()
})

test('a Rust panic becomes a JS error with code ERR_INTERNAL, and Node keeps running', () => {
  const { fromNative } = require('../lib/errors')
  const { memoryStore, syncStore } = require('../lib/native')
  const native = syncStore(memoryStore())
  let caught
  try {
    native.panicForTest()
  } catch (e) {
    caught = fromNative(e)
  }
  assert.equal(caught.code, 'ERR_INTERNAL')
  assert.match(caught.message, /deliberate panic/)
  native.call('set', 'after', '{}', 1000)
  assert.equal(native.call('get', 'after'), '{}', 'the store still works after the panic')
  native.close()
})
