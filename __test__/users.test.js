'use strict'
// Per-user sessions (userOf, sessionsOf, revokeUser, maxSessionsPerUser,
// maxLifetime, rotate) on the stores that have them, and the refusal of
// those that do not yet.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')

const userOf = (s) => s.user
const ids = async (store, user) => (await store.sessionsOf(user)).map((s) => s.id).sort()
const HOUR = 3_600_000

/** A fresh sessions.json file for each store (removed after the tests). */
const jsonDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-users-'))
test.after(() => fs.rmSync(jsonDir, { recursive: true, force: true }))
let files = 0
const jsonFile = () => path.join(jsonDir, `s${files++}.json`)
const fileDir = () => path.join(jsonDir, `d${files++}`)
// PostgreSQL: one server for the file, a table of its own per store.
const { startPostgres } = require('./support/postgres-server')
let pg
let tables = 0
test.before(async () => {
  pg = await startPostgres()
})
test.after(() => pg.destroy())
// The daemon (memory storage): one for the file, a prefix of its own per store.
const { startDaemon } = require('./support/daemon')
// And one with a storage directory (the file backend).
let daemon
let daemonDir
test.before(async () => {
  daemon = await startDaemon(0)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-users-daemon-'))
  daemonDir = { ...(await startDaemon(0, dir)), dir }
})
test.after(async () => {
  await daemon.stop()
  await daemonDir.stop()
  fs.rmSync(daemonDir.dir, { recursive: true, force: true })
})
// Redis Cluster: three masters for the file, a prefix of its own per store.
const { startCluster } = require('./support/redis-servers')
let cluster
let prefixes = 0
test.before(async () => {
  cluster = await startCluster(3)
})
test.after(() => cluster.stop())
const nodes = () => cluster.nodes.map((n) => `127.0.0.1:${n.port}`)

/** The kinds of store with per-user sessions, each made with `opts`. */
const kinds = {
  memory: (opts) => rs.memory(opts),
  'memory + secret': (opts) => rs.memory({ secret: 'k'.repeat(64), compress: true, ...opts }),
  'sessions.json': (opts) => rs.file({ sessionStateFile: jsonFile(), ...opts }),
  'sessions.json + secret': (opts) => rs.file({ sessionStateFile: jsonFile(), secret: 'k'.repeat(64), ...opts }),
  file: (opts) => rs.file({ dir: fileDir(), ...opts }),
  'file + secret, no read cache': (opts) => rs.file({ dir: fileDir(), secret: 'k'.repeat(64), compress: true, readCacheBytes: 0, fastReads: false, ...opts }),
  postgres: (opts) => rs.postgres({ url: pg.url, table: `users_${++tables}`, ...opts }),
  'postgres + secret': (opts) => rs.postgres({ url: pg.url, table: `users_${++tables}`, secret: 'k'.repeat(64), compress: true, ...opts }),
  daemon: (opts) => rs.daemon({ port: daemon.port, prefix: `u${++prefixes}:`, ...opts }),
  'daemon + secret': (opts) => rs.daemon({ port: daemon.port, prefix: `u${++prefixes}:`, secret: 'k'.repeat(64), compress: true, ...opts }),
  'daemon, storage dir': (opts) => rs.daemon({ port: daemonDir.port, prefix: `u${++prefixes}:`, ...opts }),
  'daemon, storage dir + secret': (opts) => rs.daemon({ port: daemonDir.port, prefix: `u${++prefixes}:`, secret: 'k'.repeat(64), ...opts }),
  'redis cluster': (opts) => rs.redis({ nodes: nodes(), prefix: `c${++prefixes}:`, ...opts }),
  'redis cluster + secret': (opts) => rs.redis({ nodes: nodes(), prefix: `c${++prefixes}:`, secret: 'k'.repeat(64), compress: true, ...opts }),
}

for (const [kind, make] of Object.entries(kinds)) {
  test(`${kind}: a user's sessions are listed, with their data and ttl, and anonymous ones are not`, async () => {
    const store = make({ userOf })
    await store.set('a1', { user: 'ada', n: 1 }, HOUR)
    await store.set('a2', JSON.stringify({ user: 'ada', n: 2 }), 2 * HOUR) // JSON text too
    assert.equal(await store.add('a3', { user: 'ada', n: 3 }, HOUR), true)
    await store.set('b1', { user: 'bob' }, HOUR)
    await store.set('anon', { cart: [] }, HOUR)
    const list = await store.sessionsOf('ada')
    assert.deepEqual(list.map((s) => s.id), ['a1', 'a2', 'a3'], 'least recently written first')
    assert.deepEqual(list[1].session, { user: 'ada', n: 2 })
    assert.ok(list[1].ttl > 7000 && list[1].ttl <= 7200, `ttl ${list[1].ttl}`)
    assert.deepEqual(await ids(store, 'bob'), ['b1'])
    assert.deepEqual(await store.sessionsOf('nobody'), [])
    // a replace and an update keep the user; a write that returns undefined makes it anonymous
    assert.equal(await store.replace('a1', { user: 'ada', n: 10 }, HOUR), true)
    assert.equal(await store.update('a2', HOUR), true)
    assert.deepEqual(await ids(store, 'ada'), ['a1', 'a2', 'a3'])
    await store.set('a3', { n: 'logged out' }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), ['a1', 'a2'])
    assert.deepEqual(await store.get('a3'), { n: 'logged out' })
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

  test(`${kind}: removed, expired and cleared sessions leave the index`, async () => {
    const store = make({ userOf })
    await store.set('gone', { user: 'ada' }, HOUR)
    await store.set('short', { user: 'ada' }, 1)
    await store.set('zero', { user: 'ada' }, HOUR)
    await store.set('keep', { user: 'ada' }, HOUR)
    assert.equal(await store.remove('gone'), true)
    await store.set('zero', { user: 'ada' }, 0) // a timeout of 0 removes
    const until = Date.now() + 5
    while (Date.now() < until) await null // let 'short' expire (1 ms)
    assert.deepEqual(await ids(store, 'ada'), ['keep'])
    assert.equal(await store.revokeUser('ada'), 1, 'only live sessions count')
    await store.set('k2', { user: 'ada' }, HOUR)
    await store.clear()
    assert.deepEqual(await ids(store, 'ada'), [])
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
    const n = 50
    for (let i = 0; i < n; i++) await store.set(`s${i}`, { user: 'ada', i }, HOUR)
    // Not awaited: all in flight at once, before and after the revocation.
    const before = []
    for (let i = 0; i < n; i++) before.push(i % 2 ? store.replace(`s${i}`, { user: 'ada', i, v: 2 }, HOUR) : store.update(`s${i}`, HOUR))
    const revoked = store.revokeUser('ada')
    const after = []
    for (let i = 0; i < n; i++) after.push(i % 2 ? store.replace(`s${i}`, { user: 'ada', i, v: 3 }, HOUR) : store.update(`s${i}`, HOUR))
    assert.equal(await revoked, n)
    assert.deepEqual(await Promise.all(before), Array(n).fill(true), 'applied before it, then revoked')
    assert.deepEqual(await Promise.all(after), Array(n).fill(false), 'those after it answer false')
    for (let i = 0; i < n; i++) assert.equal(await store.get(`s${i}`), null)
    assert.deepEqual(await store.sessionsOf('ada'), [])
    await store.close()
  })

  test(`${kind}: maxSessionsPerUser: 20 concurrent logins leave exactly n, the most recently written`, async () => {
    const store = make({ userOf, maxSessionsPerUser: 3 })
    await store.set('bob', { user: 'bob' }, HOUR)
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`login${i}`, { user: 'ada', i }, HOUR)))
    assert.deepEqual(await ids(store, 'ada'), ['login17', 'login18', 'login19'])
    assert.equal(await store.get('login0'), null)
    assert.equal(await store.length(), 4, 'the others were removed, not just unlisted')
    // a rewrite of a listed session is a write: it becomes the most recent
    await store.replace('login17', { user: 'ada', again: true }, HOUR)
    await store.set('login20', { user: 'ada' }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), ['login17', 'login19', 'login20'])
    assert.deepEqual(await ids(store, 'bob'), ['bob'])
    await store.close()
  })

  test(`${kind}: maxLifetime: no update, replace or set extends a session past its absolute end`, async () => {
    const store = make({ userOf, timeoutUnit: 's', maxLifetime: 2 })
    await store.length() // connected (and the table made) first: the lifetime counts from the write
    const start = Date.now()
    await store.set('s', { user: 'ada' }, 3600)
    assert.ok((await store.ttl('s')) <= 2)
    let rounds = 0
    // Repeated sliding updates, replaces and sets until the end passes.
    while (Date.now() - start < 1900) {
      assert.equal(await store.update('s', 3600), true)
      assert.equal(await store.replace('s', { user: 'ada', rounds }, 3600), true)
      await store.set('s', { user: 'ada', rounds }, 3600)
      assert.ok((await store.ttl('s')) <= 2, 'never past the end')
      rounds++
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.ok(rounds > 5)
    while (Date.now() - start < 2100) await new Promise((r) => setTimeout(r, 20))
    assert.equal(await store.get('s'), null, 'gone at its absolute end')
    assert.equal(await store.update('s', 3600), false)
    assert.deepEqual(await store.sessionsOf('ada'), [])
    // A new session of the id (after it ended) starts a new lifetime.
    await store.set('s', { user: 'ada' }, 3600)
    assert.equal(await store.ttl('s'), 2)
    await store.close()
  })

  // Two stores on one place (one after the other): memory stores share none.
  const place = kind.startsWith('file')
    ? () => ({ dir: fileDir() })
    : kind.startsWith('sessions.json')
      ? () => ({ sessionStateFile: jsonFile() })
      : kind.startsWith('postgres')
        ? () => ({ table: `users_${++tables}` })
        : kind.startsWith('daemon')
          ? () => ({ prefix: `u${++prefixes}:` })
          : kind.startsWith('redis')
            ? () => ({ prefix: `c${++prefixes}:` })
            : null
  test(`${kind}: maxLifetime: a session written without it gets its absolute end from the first write with it`, { skip: !place }, async () => {
    const at = place()
    const before = make({ userOf, timeoutUnit: 's', ...at })
    await before.set('s', { user: 'ada' }, 3600)
    await before.close()
    const store = make({ userOf, timeoutUnit: 's', maxLifetime: 2, ...at })
    await store.length() // connected (and loaded) first: the lifetime counts from the write
    const start = Date.now()
    let rounds = 0
    while (Date.now() - start < 1900) {
      await store.set('s', { user: 'ada', rounds }, 3600)
      assert.equal(await store.update('s', 3600), true)
      assert.ok((await store.ttl('s')) <= 2, 'never past the end')
      rounds++
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.ok(rounds > 5)
    while (Date.now() - start < 2100) await new Promise((r) => setTimeout(r, 20))
    assert.equal(await store.get('s'), null, 'gone at its absolute end')
    assert.deepEqual(await store.sessionsOf('ada'), [])
    await store.close()
  })

  test(`${kind}: rotate moves data, ttl, user and absolute end to the new id at once`, async () => {
    const store = make({ userOf, maxLifetime: HOUR })
    await store.set('old', { user: 'ada', cart: [1, 2] }, 600_000)
    await store.set('taken', { user: 'bob' }, HOUR)
    const moved = store.rotate('old', 'new')
    const read = store.get('old') // in flight with it: after it
    assert.equal(await moved, true)
    assert.equal(await read, null)
    assert.deepEqual(await store.get('new'), { user: 'ada', cart: [1, 2] })
    const ttl = await store.ttl('new')
    assert.ok(ttl > 590 && ttl <= 600, `ttl ${ttl}`)
    assert.deepEqual(await ids(store, 'ada'), ['new'])
    // The absolute end moved too: an update cannot go past the original hour.
    await store.update('new', 10 * HOUR)
    assert.ok((await store.ttl('new')) <= 3600)
    assert.equal(await store.rotate('new', 'taken'), false, 'taken id: nothing changes')
    assert.deepEqual(await store.get('new'), { user: 'ada', cart: [1, 2] })
    assert.deepEqual(await store.get('taken'), { user: 'bob' })
    assert.equal(await store.rotate('missing', 'x'), false)
    assert.equal(await store.get('x'), null)
    assert.equal(await store.rotate('new', 'new'), false)
    await store.set('short', { user: 'ada' }, 1)
    const until = Date.now() + 5
    while (Date.now() < until) await null
    assert.equal(await store.rotate('short', 'y'), false, 'an expired session is not moved')
    assert.equal(await store.revokeUser('ada'), 1)
    assert.equal(await store.get('new'), null)
    await store.close()
  })
}

test('rotate works on a store without userOf too', async () => {
  for (const store of [rs.memory(), rs.file({ dir: fileDir() })]) {
    await store.set('a', { n: 1 }, HOUR)
    assert.equal(await store.rotate('a', 'b'), true)
    assert.deepEqual(await store.get('b'), { n: 1 })
    assert.equal(await store.get('a'), null)
    assert.equal(await store.ttl('b'), 3600)
    await store.close()
  }
})

test('bad input to per-user calls and options: coded errors, data intact', async () => {
  const store = rs.memory({ userOf })
  await store.set('a', { user: 'ada' }, HOUR)
  await assert.rejects(store.sessionsOf(''), { code: 'ERR_INVALID_ARGUMENT' })
  await assert.rejects(store.sessionsOf(42), { code: 'ERR_INVALID_ARGUMENT', name: 'TypeError' })
  await assert.rejects(store.revokeUser('ada', { except: 'a' }), { code: 'ERR_INVALID_ARGUMENT' })
  await assert.rejects(store.rotate('a', ''), { code: 'ERR_INVALID_ID' })
  await assert.rejects(store.set('a', { user: 'a\0b' }, HOUR), { code: 'ERR_INVALID_ARGUMENT' })
  await assert.rejects(store.set('a', { user: 7 }, HOUR), { code: 'ERR_INVALID_ARGUMENT' })
  const throwing = rs.memory({ userOf: () => { throw new Error('boom') } })
  await assert.rejects(throwing.set('a', {}, HOUR), { code: 'ERR_INVALID_ARGUMENT' })
  assert.equal(await throwing.get('a'), null)
  await throwing.close()
  assert.deepEqual(await store.get('a'), { user: 'ada' })
  assert.deepEqual(await ids(store, 'ada'), ['a'])
  await store.close()
  const plain = rs.memory()
  await assert.rejects(plain.sessionsOf('ada'), { code: 'ERR_INVALID_OPTION' })
  await assert.rejects(plain.revokeUser('ada'), { code: 'ERR_INVALID_OPTION' })
  await plain.close()
  assert.throws(() => rs.memory({ userOf: 'user' }), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => rs.memory({ maxSessionsPerUser: 0 }), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => rs.memory({ maxLifetime: -1 }), { code: 'ERR_INVALID_OPTION' })
  assert.throws(() => rs.memory({ userOff: userOf }), /did you mean 'userOf'/)
})

test('stores without per-user sessions yet refuse the options with a coded error', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-users-'))
  try {
    for (const make of [
      () => rs.objectStore({ directory: dir, maxSessionsPerUser: 2 }),
    ]) {
      assert.throws(make, (e) => e.code === 'ERR_INVALID_OPTION' && /per-user sessions/.test(e.message))
    }
    const objects = rs.objectStore({ directory: dir })
    await objects.set('a', {}, HOUR)
    await assert.rejects(objects.rotate('a', 'b'), { code: 'ERR_INVALID_OPTION' })
    assert.deepEqual(await objects.get('a'), {})
    await objects.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

/** Runs `script` (an async function body with `rs`, `cfg`, `say`) in a child process on the same store. */
function child(script, cfg) {
  const { spawn } = require('node:child_process')
  const code = `const rs = require(${JSON.stringify(path.join(__dirname, '..'))}); const cfg = ${JSON.stringify(cfg)};
    cfg.userOf = (s) => s.user; const say = (x) => process.stdout.write(JSON.stringify(x) + '\\n');
    (async () => { ${script} })().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })`
  const proc = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = []
  const waiters = []
  let buf = ''
  proc.stdout.on('data', (d) => {
    buf += d
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)))
      buf = buf.slice(nl + 1)
      for (const w of waiters.splice(0)) w()
    }
  })
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  /** The next line the child says. */
  const next = async () => {
    while (lines.length === 0) await new Promise((r) => waiters.push(r))
    return lines.shift()
  }
  return { next, exited }
}

test('postgres, two processes on one table: concurrent logins of one user are capped, and a revocation racing the other process\'s replaces brings nothing back', { timeout: 120_000 }, async () => {
  const cfg = { url: pg.url, table: 'users_shared', maxSessionsPerUser: 5 }
  const store = rs.postgres({ ...cfg, userOf })
  await store.length() // the table and its per-user columns made once, before both start
  // 20 logins of ada in each process at once: exactly 5 left, of either process
  const other = child(`const s = rs.postgres(cfg); await s.length(); say('ready');
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.set('c' + i, { user: 'ada', i }, 3600000))); say('done'); await s.close()`, cfg)
  assert.equal(await other.next(), 'ready')
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`p${i}`, { user: 'ada', i }, HOUR)))
  assert.equal(await other.next(), 'done')
  assert.equal(await other.exited, 0)
  const left = await store.sessionsOf('ada')
  assert.equal(left.length, 5, JSON.stringify(left.map((s) => s.id)))
  assert.equal(await store.length(), 5, 'the others were removed from the table')

  // bob's 30 sessions on a store without the cap; the child keeps replacing them while this process revokes bob
  const open = rs.postgres({ url: pg.url, table: 'users_shared', userOf })
  for (let i = 0; i < 30; i++) await open.set(`b${i}`, { user: 'bob', i }, HOUR)
  // (it writes until its writes find nothing, or for a minute at most)
  const writer = child(`const s = rs.postgres({ url: cfg.url, table: cfg.table, userOf: cfg.userOf }); say('ready'); let last = []; let round = 0;
    for (const end = Date.now() + 60000; Date.now() < end; round++) {
      last = await Promise.all(Array.from({ length: 30 }, (_, i) => round % 2 ? s.replace('b' + i, { user: 'bob', i, round }, 3600000) : s.update('b' + i, 3600000)));
      if (round === 1) say(last);
      if (round > 1 && last.every((x) => !x)) break;
    }
    say({ last, round }); await s.close()`, cfg)
  assert.equal(await writer.next(), 'ready')
  assert.deepEqual(await writer.next(), Array(30).fill(true), 'writing before the revocation')
  const revoked = await open.revokeUser('bob')
  assert.equal(revoked, 30)
  const { last, round } = await writer.next()
  assert.equal(await writer.exited, 0)
  assert.ok(round > 1, `the writes went on around the revocation (${round} rounds)`)
  assert.deepEqual(last, Array(30).fill(false), 'the writes after the revocation found nothing')
  for (let i = 0; i < 30; i++) assert.equal(await open.get(`b${i}`), null)
  assert.deepEqual(await open.sessionsOf('bob'), [])
  await open.close()
  await store.close()
})

test('postgres: a store without per-user rules leaves connect-pg-simple\'s table as it is; with createTable false the missing columns are named', async () => {
  const columns = async (table) => (await pg.sql(`SELECT column_name FROM information_schema.columns WHERE table_name = '${table}' ORDER BY column_name`)).trim().split('\n')
  const plain = rs.postgres({ url: pg.url, table: 'plain_sessions' })
  await plain.set('a', { user: 'ada' }, HOUR)
  assert.equal(await plain.rotate('a', 'b'), true, 'rotate needs no per-user columns')
  assert.deepEqual(await plain.get('b'), { user: 'ada' })
  await plain.close()
  assert.deepEqual(await columns('plain_sessions'), ['expire', 'sess', 'sid'])
  const strict = rs.postgres({ url: pg.url, table: 'plain_sessions', createTable: false, userOf })
  await assert.rejects(strict.get('b'), (e) => e.code === 'ERR_INVALID_OPTION' && /ADD COLUMN IF NOT EXISTS "rs_user"/.test(e.message))
  await strict.close()
  assert.deepEqual(await columns('plain_sessions'), ['expire', 'sess', 'sid'], 'nothing was changed')
  const users = rs.postgres({ url: pg.url, table: 'plain_sessions', userOf })
  assert.deepEqual(await users.get('b'), { user: 'ada' }, 'sessions written before userOf are kept')
  await users.set('b', { user: 'ada' }, HOUR)
  assert.deepEqual((await users.sessionsOf('ada')).map((s) => s.id), ['b'])
  await users.close()
  assert.deepEqual(await columns('plain_sessions'), ['expire', 'rs_end', 'rs_user', 'rs_written', 'sess', 'sid'])
})
