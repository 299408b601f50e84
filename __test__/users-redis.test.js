'use strict'
// Per-user sessions on Redis (userOf, sessionsOf, revokeUser,
// maxSessionsPerUser, maxLifetime, rotate): on one server over both
// connection paths (the JS socket, and ioThread), with and without a
// codec, through Sentinel, across two processes (Redis Cluster:
// users-cluster.test.js; the daemon: users.test.js, users-daemon.test.js).
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const rs = require('..')
const { startRedis, startSentinel, sleep, waitFor } = require('./support/redis-servers')

const userOf = (s) => s.user
const ids = async (store, user) => (await store.sessionsOf(user)).map((s) => s.id).sort()
const HOUR = 3_600_000
const SECRET = 'k'.repeat(64)

let server
let n = 0
test.before(async () => {
  server = await startRedis()
})
test.after(async () => {
  await server.stop()
})

/** Keys of this prefix on the server (sessions, their meta and users' indexes), expired ones left out. */
async function keysOf(prefix) {
  const out = await server.cli('--scan', '--pattern', `*${prefix}*`)
  return out === '' ? [] : out.split('\n')
}

const kinds = {
  redis: () => ({}),
  'redis ioThread': () => ({ ioThread: true }),
  'redis + secret, compress': () => ({ secret: SECRET, compress: true }),
  'redis ioThread + secret': () => ({ ioThread: true, secret: SECRET }),
}

for (const [kind, extra] of Object.entries(kinds)) {
  // Each test its own prefix: the keys it leaves can be counted.
  const make = (opts) => {
    const prefix = `u${++n}:`
    const store = rs.redis({ url: server.url, prefix, ...extra(), ...opts })
    store.prefix = prefix
    return store
  }

  test(`${kind}: a user's sessions are listed, with their data and ttl, and anonymous ones are not`, async () => {
    const store = make({ userOf })
    await store.set('a1', { user: 'ada', n: 1 }, HOUR)
    await store.set('a2', JSON.stringify({ user: 'ada', n: 2 }), 2 * HOUR)
    assert.equal(await store.add('a3', { user: 'ada', n: 3 }, HOUR), true)
    assert.equal(await store.add('a3', { user: 'ada', n: 4 }, HOUR), false)
    await store.set('b1', { user: 'bob' }, HOUR)
    await store.set('anon', { cart: [] }, HOUR)
    await store.set('forever', { user: 'cy' }, Infinity)
    const list = await store.sessionsOf('ada')
    assert.deepEqual(list.map((s) => s.id), ['a1', 'a2', 'a3'], 'least recently written first')
    assert.deepEqual(list[1].session, { user: 'ada', n: 2 })
    assert.ok(list[1].ttl > 7000 && list[1].ttl <= 7200, `ttl ${list[1].ttl}`)
    assert.deepEqual(await ids(store, 'bob'), ['b1'])
    assert.deepEqual(await store.sessionsOf('cy'), [{ id: 'forever', session: { user: 'cy' }, ttl: -1 }])
    assert.deepEqual(await store.sessionsOf('nobody'), [])
    assert.equal(await store.replace('a1', { user: 'ada', n: 10 }, HOUR), true)
    assert.equal(await store.update('a2', HOUR), true)
    assert.equal(await store.ttl('a2'), 3600)
    assert.deepEqual(await ids(store, 'ada'), ['a1', 'a2', 'a3'])
    await store.set('a3', { n: 'logged out' }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), ['a1', 'a2'])
    assert.deepEqual(await store.get('a3'), { n: 'logged out' })
    assert.equal(await store.length(), 6, 'meta and index keys are not sessions')
    assert.deepEqual((await store.ids()).sort(), ['a1', 'a2', 'a3', 'anon', 'b1', 'forever'])
    await store.close()
  })

  test(`${kind}: a session rewritten for another user moves to that user`, async () => {
    const store = make({ userOf })
    await store.set('s', { user: 'ada' }, HOUR)
    await store.replace('s', { user: 'bob' }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), [])
    assert.deepEqual(await ids(store, 'bob'), ['s'])
    assert.equal(await store.revokeUser('ada'), 0, 'the old user no longer owns it')
    assert.deepEqual(await store.get('s'), { user: 'bob' })
    await store.close()
  })

  test(`${kind}: removed, expired and cleared sessions leave the index, and no key stays behind`, async () => {
    const store = make({ userOf })
    await store.set('gone', { user: 'ada' }, HOUR)
    await store.set('short', { user: 'ada' }, 30)
    await store.set('zero', { user: 'ada' }, HOUR)
    await store.set('keep', { user: 'ada' }, HOUR)
    assert.equal(await store.remove('gone'), true)
    assert.equal(await store.remove('gone'), false)
    await store.set('zero', { user: 'ada' }, 0) // a timeout of 0 removes
    await sleep(60) // 'short' expires
    assert.deepEqual(await ids(store, 'ada'), ['keep'])
    assert.equal(await store.revokeUser('ada'), 1, 'only live sessions count')
    assert.deepEqual(await keysOf(store.prefix), [], 'no session, meta or index key left')
    // The index key expires with the user's last session.
    await store.set('brief', { user: 'ada' }, 1500) // long enough to count its keys on a busy machine
    assert.equal((await keysOf(store.prefix)).length, 3, 'a session, its meta and the index')
    await sleep(1600)
    assert.deepEqual(await keysOf(store.prefix), [], 'all three expired together')
    await store.set('k2', { user: 'ada' }, HOUR)
    await store.clear()
    assert.deepEqual(await ids(store, 'ada'), [], 'a cleared session is not listed')
    await store.close()
  })

  test(`${kind}: a rewrite moves the meta and index expiry with the session's, and a removed session's meta is not inherited`, async () => {
    const store = make({ userOf })
    await store.set('f', { user: 'ada' }, 1000)
    await store.set('f', { user: 'ada', n: 2 }, Infinity) // meta and index now without expiry
    await sleep(1100)
    assert.deepEqual(await store.sessionsOf('ada'), [{ id: 'f', session: { user: 'ada', n: 2 }, ttl: -1 }])
    await store.set('f', { user: 'ada', n: 3 }, 1000) // and back: the index gets an expiry again
    await sleep(1100)
    assert.deepEqual(await keysOf(store.prefix), [], 'session, meta and index expired together')
    // A session removed by a plain client leaves its meta; a new session of the id is not the old user's.
    await store.set('x', { user: 'ada' }, HOUR)
    await server.cli('DEL', `${store.prefix}x`)
    await store.set('x', { cart: [] }, HOUR)
    assert.deepEqual(await store.sessionsOf('ada'), [])
    assert.equal(await store.revokeUser('ada'), 0)
    assert.deepEqual(await store.get('x'), { cart: [] })
    await store.close()
  })

  test(`${kind}: revokeUser removes every session of the user but those excepted`, async () => {
    const store = make({ userOf })
    for (let i = 0; i < 5; i++) await store.set(`a${i}`, { user: 'ada', i }, HOUR)
    await store.set('b', { user: 'bob' }, HOUR)
    assert.equal(await store.revokeUser('ada', { except: ['a2', 'b', 'nope'] }), 4)
    assert.deepEqual(await ids(store, 'ada'), ['a2'])
    for (const id of ['a0', 'a1', 'a3', 'a4']) assert.equal(await store.get(id), null)
    assert.deepEqual(await store.get('b'), { user: 'bob' })
    assert.equal(await store.revokeUser('ada'), 1)
    assert.equal(await store.length(), 1)
    await store.close()
  })

  test(`${kind}: replace and update in flight around a revokeUser never bring a revoked session back`, async () => {
    const store = make({ userOf })
    const count = 50
    for (let i = 0; i < count; i++) await store.set(`s${i}`, { user: 'ada', i }, HOUR)
    const before = []
    for (let i = 0; i < count; i++) before.push(i % 2 ? store.replace(`s${i}`, { user: 'ada', i, v: 2 }, HOUR) : store.update(`s${i}`, HOUR))
    const revoked = store.revokeUser('ada')
    const after = []
    for (let i = 0; i < count; i++) after.push(i % 2 ? store.replace(`s${i}`, { user: 'ada', i, v: 3 }, HOUR) : store.update(`s${i}`, HOUR))
    assert.equal(await revoked, count)
    assert.deepEqual(await Promise.all(before), Array(count).fill(true), 'applied before it, then revoked')
    assert.deepEqual(await Promise.all(after), Array(count).fill(false), 'those after it answer false')
    for (let i = 0; i < count; i++) assert.equal(await store.get(`s${i}`), null)
    assert.deepEqual(await store.sessionsOf('ada'), [])
    assert.deepEqual(await keysOf(store.prefix), [])
    await store.close()
  })

  test(`${kind}: maxSessionsPerUser: 20 concurrent logins leave exactly n, the most recently written`, async () => {
    const store = make({ userOf, maxSessionsPerUser: 3 })
    await store.set('bob', { user: 'bob' }, HOUR)
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`login${i}`, { user: 'ada', i }, HOUR)))
    assert.deepEqual(await ids(store, 'ada'), ['login17', 'login18', 'login19'])
    assert.equal(await store.get('login0'), null)
    assert.equal(await store.length(), 4, 'the others were removed, not just unlisted')
    await store.replace('login17', { user: 'ada', again: true }, HOUR)
    await store.set('login20', { user: 'ada' }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), ['login17', 'login19', 'login20'])
    assert.deepEqual(await ids(store, 'bob'), ['bob'])
    // 20 logins from 20 stores (20 connections) at once: still exactly 3.
    const others = Array.from({ length: 20 }, () => rs.redis({ url: server.url, prefix: store.prefix, userOf, maxSessionsPerUser: 3, ...extra() }))
    await Promise.all(others.map((s, i) => s.set(`c${i}`, { user: 'ada', i }, HOUR)))
    assert.equal((await store.sessionsOf('ada')).length, 3)
    assert.equal(await store.length(), 4)
    await Promise.all(others.map((s) => s.close()))
    await store.close()
  })

  test(`${kind}: maxSessionsPerUser lowered since the sessions were written: the user's next write, a rewrite too, trims to the cap`, async () => {
    const store = make({ userOf })
    for (let i = 0; i < 5; i++) await store.set(`s${i}`, { user: 'ada', i }, HOUR)
    const capped = rs.redis({ url: server.url, prefix: store.prefix, userOf, maxSessionsPerUser: 2, ...extra() })
    await capped.set('s1', { user: 'ada', again: true }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), ['s1', 's4'], 'the most recently written two')
    assert.equal(await store.length(), 2)
    await capped.close()
    await store.close()
  })

  test(`${kind}: maxLifetime: no update, replace or set extends a session past its absolute end`, async () => {
    const store = make({ userOf, timeoutUnit: 's', maxLifetime: 2 })
    const start = Date.now()
    await store.set('s', { user: 'ada' }, 3600)
    assert.ok((await store.ttl('s')) <= 2)
    let rounds = 0
    while (Date.now() - start < 1700) {
      assert.equal(await store.update('s', 3600), true)
      assert.equal(await store.replace('s', { user: 'ada', rounds }, 3600), true)
      await store.set('s', { user: 'ada', rounds }, 3600)
      assert.ok((await store.ttl('s')) <= 2, 'never past the end')
      rounds++
      await sleep(20)
    }
    assert.ok(rounds > 5)
    await sleep(Math.max(0, 2100 - (Date.now() - start)))
    assert.equal(await store.get('s'), null, 'gone at its absolute end')
    assert.equal(await store.update('s', 3600), false)
    assert.deepEqual(await store.sessionsOf('ada'), [])
    await store.set('s', { user: 'ada' }, 3600)
    assert.equal(await store.ttl('s'), 2, 'a new session of the id starts a new lifetime')
    await store.close()
    // Without userOf too.
    const plain = make({ maxLifetime: 1000 })
    await plain.set('p', { n: 1 }, HOUR)
    await plain.update('p', HOUR)
    assert.equal(await plain.ttl('p'), 1)
    await plain.close()
  })

  test(`${kind}: rotate moves data, ttl, user and absolute end to the new id at once`, async () => {
    const store = make({ userOf, maxLifetime: HOUR })
    await store.set('old', { user: 'ada', cart: [1, 2] }, 600_000)
    await store.set('taken', { user: 'bob' }, HOUR)
    const moved = store.rotate('old', 'new')
    const read = store.get('old') // in flight with it: after it
    const written = store.replace('new', { user: 'ada', cart: [1, 2, 3] }, 600_000) // after it too
    assert.equal(await moved, true)
    assert.equal(await read, null)
    assert.equal(await written, true)
    assert.deepEqual(await store.get('new'), { user: 'ada', cart: [1, 2, 3] })
    const ttl = await store.ttl('new')
    assert.ok(ttl > 590 && ttl <= 600, `ttl ${ttl}`)
    assert.deepEqual(await ids(store, 'ada'), ['new'])
    await store.update('new', 10 * HOUR)
    assert.ok((await store.ttl('new')) <= 3600, 'the absolute end moved too')
    assert.equal(await store.rotate('new', 'taken'), false, 'taken id: nothing changes')
    assert.deepEqual(await store.get('new'), { user: 'ada', cart: [1, 2, 3] })
    assert.deepEqual(await store.get('taken'), { user: 'bob' })
    assert.equal(await store.rotate('missing', 'x'), false)
    assert.equal(await store.get('x'), null)
    assert.equal(await store.rotate('new', 'new'), false)
    await store.set('short', { user: 'ada' }, 20)
    await sleep(50)
    assert.equal(await store.rotate('short', 'y'), false, 'an expired session is not moved')
    assert.equal(await store.revokeUser('ada'), 1)
    assert.equal(await store.get('new'), null)
    assert.deepEqual((await keysOf(store.prefix)).length, 3, "only bob's session, meta and index")
    // A store without userOf rotates too.
    const plain = make({})
    await plain.set('a', { n: 1 }, HOUR)
    assert.equal(await plain.rotate('a', 'b'), true)
    assert.deepEqual(await plain.get('b'), { n: 1 })
    assert.equal(await plain.get('a'), null)
    assert.equal(await plain.ttl('b'), 3600)
    await plain.close()
    await store.close()
  })
}

test('redis: a store without userOf sends no script on its writes', async () => {
  const store = rs.redis({ url: server.url, prefix: 'plain:' })
  await server.cli('config', 'resetstat')
  for (let i = 0; i < 20; i++) await store.set(`p${i}`, { i }, HOUR)
  await store.update('p0', HOUR)
  await store.remove('p1')
  const stats = await server.cli('info', 'commandstats')
  assert.match(stats, /cmdstat_set:calls=20,/)
  assert.doesNotMatch(stats, /cmdstat_evalsha|cmdstat_eval:/)
  await store.clear()
  await store.close()
})

test('redis: sessions written before userOf are read, and keep their key and value', async () => {
  const prefix = 'compat:'
  const before = rs.redis({ url: server.url, prefix })
  await before.set('old', { user: 'ada', n: 1 }, HOUR)
  await before.close()
  const store = rs.redis({ url: server.url, prefix, userOf })
  assert.deepEqual(await store.get('old'), { user: 'ada', n: 1 })
  assert.deepEqual(await store.sessionsOf('ada'), [], 'filed at its next write')
  await store.replace('old', { user: 'ada', n: 2 }, HOUR)
  assert.deepEqual(await ids(store, 'ada'), ['old'])
  assert.equal(await server.cli('get', `${prefix}old`), JSON.stringify({ user: 'ada', n: 2 }), 'the same key, the same JSON text')
  await store.clear()
  await store.close()
})

for (const ioThread of [false, true]) {
  test(`redis${ioThread ? ' ioThread' : ''}: after SCRIPT FLUSH the scripts are loaded again`, async () => {
    const store = rs.redis({ url: server.url, prefix: `flush${ioThread}:`, userOf, ioThread })
    await store.set('a', { user: 'ada' }, HOUR)
    await server.cli('script', 'flush')
    // A write on the connection that lost them answers a coded error and does nothing, or succeeds.
    const first = await store.set('b', { user: 'ada' }, HOUR).then(() => 'ok', (e) => e.code)
    assert.ok(['ok', 'ERR_STORE_UNAVAILABLE'].includes(first), first)
    await store.set('c', { user: 'ada' }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), first === 'ok' ? ['a', 'b', 'c'] : ['a', 'c'])
    await server.cli('script', 'flush')
    // A revocation with nothing sent after it is sent again behind the scripts.
    assert.equal(await store.revokeUser('ada'), first === 'ok' ? 3 : 2)
    await store.set('d', { user: 'ada' }, HOUR)
    await server.cli('script', 'flush')
    assert.deepEqual(await ids(store, 'ada'), ['d'])
    await store.close()
  })
}

test('redis: across two processes, a child replacing sessions while the parent revokes them gets none back', async () => {
  const prefix = 'procs:'
  const store = rs.redis({ url: server.url, prefix, userOf, maxSessionsPerUser: 100 })
  const count = 40
  for (let i = 0; i < count; i++) await store.set(`s${i}`, { user: 'ada', i }, HOUR)
  // The child replaces every session round after round, and logs ada in
  // from its side, until told to stop; then it replaces each once more.
  const child = spawn(
    process.execPath,
    [
      '-e',
      `
      const rs = require(${JSON.stringify(path.join(__dirname, '..'))})
      const s = rs.redis({ url: ${JSON.stringify(server.url)}, prefix: ${JSON.stringify(prefix)}, userOf: (x) => x.user, maxSessionsPerUser: 100, ioThread: true })
      let stop = false
      process.stdin.on('data', () => (stop = true))
      ;(async () => {
        let round = 0
        while (!stop) {
          await Promise.all(Array.from({ length: ${count} }, (_, i) => s.replace('s' + i, { user: 'ada', i, round }, 3600000)))
          await s.set('child' + round, { user: 'ada' }, 3600000)
          if (round++ === 0) process.stdout.write('started\\n')
        }
        const last = await Promise.all(Array.from({ length: ${count} }, (_, i) => s.replace('s' + i, { user: 'ada', i, last: true }, 3600000)))
        process.stdout.write(JSON.stringify(last) + '\\n')
        await s.close()
      })()
      `,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  )
  let out = ''
  const line = () =>
    new Promise((resolve) => {
      const on = (d) => {
        out += d
        const at = out.indexOf('\n')
        if (at >= 0) {
          const l = out.slice(0, at)
          out = out.slice(at + 1)
          child.stdout.off('data', on)
          resolve(l)
        }
      }
      child.stdout.on('data', on)
    })
  assert.equal(await line(), 'started')
  const revoked = await store.revokeUser('ada', { except: ['child0'] })
  assert.ok(revoked >= count, `revoked ${revoked}`)
  for (let i = 0; i < count; i++) assert.equal(await store.get(`s${i}`), null, `s${i} stays revoked`)
  child.stdin.end('stop\n') // its end lets the child exit once done
  const last = JSON.parse(await line())
  assert.deepEqual(last, Array(count).fill(false), "the child's replaces after the revocation answer false")
  await new Promise((r) => child.once('exit', r))
  for (let i = 0; i < count; i++) assert.equal(await store.get(`s${i}`), null)
  const left = await ids(store, 'ada')
  assert.ok(left.includes('child0') && left.every((id) => id.startsWith('child')), left.join())
  // And the cap across both processes: 20 logins each at once leave exactly 5.
  const capped = rs.redis({ url: server.url, prefix: 'procs2:', userOf, maxSessionsPerUser: 5 })
  const child2 = spawn(
    process.execPath,
    [
      '-e',
      `
      const rs = require(${JSON.stringify(path.join(__dirname, '..'))})
      const s = rs.redis({ url: ${JSON.stringify(server.url)}, prefix: 'procs2:', userOf: (x) => x.user, maxSessionsPerUser: 5 })
      Promise.all(Array.from({ length: 20 }, (_, i) => s.set('k' + i, { user: 'ada' }, 3600000))).then(() => s.close())
      `,
    ],
    { stdio: 'inherit' },
  )
  await Promise.all(Array.from({ length: 20 }, (_, i) => capped.set(`p${i}`, { user: 'ada' }, HOUR)))
  assert.equal(await new Promise((r) => child2.once('exit', r)), 0)
  assert.equal((await capped.sessionsOf('ada')).length, 5)
  assert.equal(await capped.length(), 5)
  await capped.clear()
  await capped.close()
  await store.clear()
  await store.close()
})

test('redis Sentinel: a planned failover in the middle of 8 writers logging users in: on the new master every index agrees with its sessions, the cap holds, a revocation after it sticks', { timeout: 180_000 }, async () => {
  const s = await startSentinel('users-fo')
  const opts = { sentinels: [`127.0.0.1:${s.sentinel.port}`], name: 'users-fo', prefix: 'fo:', userOf, maxSessionsPerUser: 3, commandTimeoutMs: 3000 }
  const stores = [rs.redis(opts), rs.redis(opts)]
  const USERS = ['ada', 'bob', 'cy', 'dee']
  try {
    let stop = false
    let acked = 0
    let failed = 0
    // Logins (a new id each) and rewrites of the last one, some moving it to the next user.
    const writers = stores.flatMap((st, k) =>
      Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const user = USERS[(w + i) % USERS.length]
          try {
            await st.set(`k${k}-${w}-${i}`, { user, i }, HOUR)
            if (i % 3 === 0) await st.replace(`k${k}-${w}-${i}`, { user: USERS[(w + i + 1) % USERS.length], i, moved: true }, HOUR)
            acked++
          } catch {
            failed++
            await sleep(20)
          }
        }
      }),
    )
    await sleep(800)
    await s.sentinel.failover()
    const before = acked
    await waitFor('writes go on after the failover', async () => acked > before + 20, 30_000)
    stop = true
    await Promise.all(writers)
    // A fresh store on the new master: each user's listing is exactly its live sessions.
    const check = rs.redis({ url: `redis://127.0.0.1:${s.replica.port}`, prefix: 'fo:', userOf })
    try {
      const owners = new Map(USERS.map((u) => [u, []]))
      for (const id of await check.ids()) owners.get((await check.get(id)).user).push(id)
      for (const u of USERS) {
        const listed = (await ids(check, u)).sort()
        assert.ok(listed.length <= 3, `${u}: ${listed.length} sessions over the cap of 3 (${acked} writes, ${failed} failed)`)
        assert.deepEqual(listed, owners.get(u).sort(), `${u}: its index lists exactly its live sessions`)
      }
      assert.ok([...owners.values()].some((l) => l.length > 0), 'sessions survived the failover')
      for (const u of USERS) await stores[0].revokeUser(u)
      assert.deepEqual(await check.ids(), [], 'no session of any user is left')
      for (const u of USERS) assert.deepEqual(await check.sessionsOf(u), [])
    } finally {
      await check.close()
    }
  } finally {
    await Promise.all(stores.map((st) => st.close()))
    await s.stop()
  }
})

test('redis Sentinel: per-user sessions through the master the sentinels name', async () => {
  const s = await startSentinel()
  try {
    const store = rs.redis({ sentinels: [`127.0.0.1:${s.sentinel.port}`], name: s.name, userOf, maxSessionsPerUser: 2 })
    for (let i = 0; i < 4; i++) await store.set(`s${i}`, { user: 'ada', i }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), ['s2', 's3'])
    assert.equal(await store.rotate('s3', 's4'), true)
    assert.equal(await store.revokeUser('ada', { except: ['s4'] }), 1)
    assert.deepEqual(await ids(store, 'ada'), ['s4'])
    await store.close()
  } finally {
    await s.stop()
  }
})

