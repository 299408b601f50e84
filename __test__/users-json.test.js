'use strict'
// Per-user sessions on sessions.json (rs.file({ sessionStateFile, userOf })):
// the index, the cap, the absolute end and rotations survive a close and a
// reopen, and a process that exits right after its writes; the main file
// keeps Synchro's shape ({ "<id>": <session> }) and the users sit beside it
// in <file>.users. (The calls themselves are also run on sessions.json by
// users.test.js, with the memory stores.)
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')

const HOUR = 3_600_000
const userOf = (s) => s.user
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'rs-users-json-'))
const ids = async (store, user) => (await store.sessionsOf(user)).map((s) => s.id)
const onDisk = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Runs `fn(file, open)` in a fresh directory; `open(opts)` opens the file's store. */
function withFile(fn) {
  return async () => {
    const dir = tmp()
    const file = path.join(dir, 'sessions.json')
    const open = (opts = {}) => rs.file({ sessionStateFile: file, userOf, ...opts })
    try {
      await fn(file, open)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

test(
  'sessions.json: the listing, with data and ttl, survives a reopen; the main file keeps its shape',
  withFile(async (file, open) => {
    let store = open()
    await store.set('a1', { user: 'ada', n: 1 }, HOUR)
    await store.set('b1', { user: 'bob' }, HOUR)
    await store.set('a2', { user: 'ada', n: 2 }, 2 * HOUR)
    await store.set('anon', { cart: [1] }, HOUR)
    await store.close()
    assert.deepEqual(onDisk(file), { a1: { user: 'ada', n: 1 }, b1: { user: 'bob' }, a2: { user: 'ada', n: 2 }, anon: { cart: [1] } }, 'only sessions, as Synchro writes them')
    const side = onDisk(`${file}.users`)
    assert.equal(side.a1.user, 'ada')
    assert.equal(side.b1.user, 'bob')
    assert.ok(side.a1.seq < side.a2.seq)
    assert.equal(side.anon, undefined, 'an anonymous session with no absolute end has no entry')
    store = open()
    const list = await store.sessionsOf('ada')
    assert.deepEqual(
      list.map((s) => s.id),
      ['a1', 'a2'],
      'least recently written first, as before',
    )
    assert.deepEqual(list[1].session, { user: 'ada', n: 2 })
    assert.ok(list[1].ttl > 7000 && list[1].ttl <= 7200, `ttl ${list[1].ttl}`)
    assert.deepEqual(await ids(store, 'bob'), ['b1'])
    assert.deepEqual(await store.get('anon'), { cart: [1] })
    // An update keeps the user across the reopen, as it does within one run.
    assert.equal(await store.update('a1', HOUR), true)
    await store.close()
    store = open()
    assert.deepEqual(await ids(store, 'ada'), ['a1', 'a2'])
    await store.close()
  }),
)

test(
  'sessions.json: revokeUser with except, and what it removed stays removed after a reopen',
  withFile(async (file, open) => {
    let store = open()
    for (let i = 0; i < 5; i++) await store.set(`a${i}`, { user: 'ada', i }, HOUR)
    await store.set('b', { user: 'bob' }, HOUR)
    await store.close()
    store = open()
    assert.equal(await store.revokeUser('ada', { except: ['a3', 'b'] }), 4, 'the index was reloaded')
    await store.close()
    assert.deepEqual(Object.keys(onDisk(file)).sort(), ['a3', 'b'])
    store = open()
    assert.deepEqual(await ids(store, 'ada'), ['a3'])
    for (const id of ['a0', 'a1', 'a2', 'a4']) assert.equal(await store.get(id), null)
    assert.equal(await store.revokeUser('ada'), 1)
    assert.deepEqual(await ids(store, 'bob'), ['b'])
    await store.close()
  }),
)

test(
  'sessions.json: maxSessionsPerUser under 20 concurrent logins leaves exactly n, and the write order holds after a reopen',
  withFile(async (file, open) => {
    let store = open({ maxSessionsPerUser: 3 })
    await store.set('bob', { user: 'bob' }, HOUR)
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`login${i}`, { user: 'ada', i }, HOUR)))
    assert.deepEqual(await ids(store, 'ada'), ['login17', 'login18', 'login19'])
    await store.close()
    assert.deepEqual(Object.keys(onDisk(file)).sort(), ['bob', 'login17', 'login18', 'login19'], 'the others are gone from the file too')
    store = open({ maxSessionsPerUser: 3 })
    assert.deepEqual(await ids(store, 'ada'), ['login17', 'login18', 'login19'])
    // The next login removes the least recently written before the restart.
    await store.set('login20', { user: 'ada' }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), ['login18', 'login19', 'login20'])
    assert.equal(await store.get('login17'), null)
    await store.close()
    // Reopened with a lower cap: it holds at once, on disk too.
    store = open({ maxSessionsPerUser: 1 })
    assert.deepEqual(await ids(store, 'ada'), ['login20'])
    await store.close()
    assert.deepEqual(Object.keys(onDisk(file)).sort(), ['bob', 'login20'])
  }),
)

test(
  'sessions.json: maxLifetime: the absolute end of the first write holds across a reopen, under repeated updates',
  withFile(async (file, open) => {
    const opts = { timeoutUnit: 's', maxLifetime: 4 }
    let store = open(opts)
    const start = Date.now()
    await store.set('s', { user: 'ada' }, 3600)
    assert.ok((await store.ttl('s')) <= 4)
    await store.close()
    const rounds = { n: 0 }
    // Reopen and slide it until past its end: each reopen reloads the end.
    while (Date.now() - start < 2500) {
      store = open(opts)
      assert.equal(await store.update('s', 3600), true)
      assert.equal(await store.replace('s', { user: 'ada', n: rounds.n }, 3600), true)
      assert.ok((await store.ttl('s')) <= 4 - Math.floor((Date.now() - start) / 1000) + 1, 'never past the first end')
      await store.close()
      rounds.n++
      await sleep(50)
    }
    assert.ok(rounds.n > 3, `${rounds.n} rounds`)
    while (Date.now() - start < 4200) await sleep(50)
    store = open(opts)
    assert.equal(await store.get('s'), null, 'gone at its absolute end')
    assert.deepEqual(await store.sessionsOf('ada'), [])
    // A new session of the id starts a new lifetime.
    await store.set('s', { user: 'ada' }, 3600)
    assert.equal(await store.ttl('s'), 4)
    await store.close()
  }),
)

test(
  'sessions.json: rotate moves data, ttl, user and end, and the move survives a reopen',
  withFile(async (file, open) => {
    let store = open({ maxLifetime: HOUR })
    await store.set('old', { user: 'ada', cart: [1, 2] }, 600_000)
    await store.set('taken', { user: 'bob' }, HOUR)
    assert.equal(await store.rotate('old', 'new'), true)
    assert.equal(await store.rotate('new', 'taken'), false)
    assert.equal(await store.rotate('missing', 'x'), false)
    await store.close()
    assert.deepEqual(Object.keys(onDisk(file)).sort(), ['new', 'taken'])
    store = open({ maxLifetime: HOUR })
    assert.equal(await store.get('old'), null)
    assert.deepEqual(await store.get('new'), { user: 'ada', cart: [1, 2] })
    const ttl = await store.ttl('new')
    assert.ok(ttl > 590 && ttl <= 600, `ttl ${ttl}`)
    assert.deepEqual(await ids(store, 'ada'), ['new'])
    await store.update('new', 10 * HOUR)
    assert.ok((await store.ttl('new')) <= 3600, 'the end moved with it')
    assert.equal(await store.revokeUser('ada'), 1)
    await store.close()
  }),
)

test(
  'sessions.json: a session rewritten for another user moves, and stays moved after a reopen',
  withFile(async (file, open) => {
    let store = open()
    await store.set('s', { user: 'ada' }, HOUR)
    await store.set('t', { user: 'ada' }, HOUR)
    await store.replace('s', { user: 'bob' }, HOUR)
    await store.set('t', { n: 'logged out' }, HOUR)
    await store.close()
    store = open()
    assert.deepEqual(await ids(store, 'ada'), [])
    assert.deepEqual(await ids(store, 'bob'), ['s'])
    assert.equal(await store.revokeUser('ada'), 0)
    assert.deepEqual(await store.get('t'), { n: 'logged out' })
    await store.close()
  }),
)

test(
  'sessions.json: expired and removed sessions leave the index, before and after a reopen',
  withFile(async (file, open) => {
    let store = open()
    await store.set('short', { user: 'ada' }, 300)
    await store.set('gone', { user: 'ada' }, HOUR)
    await store.set('keep', { user: 'ada' }, HOUR)
    assert.equal(await store.remove('gone'), true)
    await store.close()
    await sleep(400)
    store = open()
    assert.deepEqual(await ids(store, 'ada'), ['keep'])
    await store.set('short2', { user: 'ada' }, 300)
    await sleep(400)
    assert.deepEqual(await ids(store, 'ada'), ['keep'])
    assert.equal(await store.revokeUser('ada'), 1, 'only live sessions count')
    await store.close()
    assert.deepEqual(onDisk(file), {})
  }),
)

test(
  'sessions.json: a file written without users (Synchro, or a store without userOf) loads its sessions as anonymous',
  withFile(async (file, open) => {
    fs.writeFileSync(file, JSON.stringify({ x: { user: 'ada' } }))
    let store = open({ defaultTtl: HOUR })
    assert.deepEqual(await store.get('x'), { user: 'ada' })
    assert.deepEqual(await ids(store, 'ada'), [], 'nobody knew whose it was')
    await store.set('x', { user: 'ada' }, HOUR)
    assert.deepEqual(await ids(store, 'ada'), ['x'], 'its next write files it')
    await store.close()
    // A store without userOf leaves <file>.users as it is.
    const side = fs.readFileSync(`${file}.users`, 'utf8')
    const plain = rs.file({ sessionStateFile: file })
    await plain.set('y', { user: 'ada' }, HOUR)
    await plain.close()
    assert.equal(fs.readFileSync(`${file}.users`, 'utf8'), side)
    store = open()
    assert.deepEqual(await ids(store, 'ada'), ['x'])
    await store.close()
  }),
)

test(
  'sessions.json: processes that exit right after their writes (process.exit) leave the index, cap and ends on disk',
  withFile(async (file) => {
    // Two processes one after the other on the same file, each exiting at
    // once after awaited writes (no close).
    const script = (from) => `
      const rs = require(${JSON.stringify(path.join(__dirname, '..'))})
      const store = rs.file({ sessionStateFile: ${JSON.stringify(file)}, userOf: (s) => s.user, maxSessionsPerUser: 4, maxLifetime: ${HOUR}, coalesceMs: 10000 })
      ;(async () => {
        await Promise.all(Array.from({ length: 10 }, (_, i) => store.set('ada' + (${from} + i), { user: 'ada', i: ${from} + i }, ${10 * HOUR})))
        await store.set('bob' + ${from}, { user: 'bob' }, ${HOUR})
        process.exit(0)
      })()`
    for (const from of [0, 10]) {
      const proc = spawn(process.execPath, ['-e', script(from)], { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      proc.stderr.on('data', (d) => (stderr += d))
      const code = await new Promise((r) => proc.on('exit', r))
      assert.equal(code, 0, stderr)
    }
    const store = rs.file({ sessionStateFile: file, userOf, maxSessionsPerUser: 4, maxLifetime: HOUR })
    try {
      assert.deepEqual(await ids(store, 'ada'), ['ada16', 'ada17', 'ada18', 'ada19'])
      assert.deepEqual(await ids(store, 'bob'), ['bob0', 'bob10'])
      assert.equal(await store.length(), 6)
      assert.ok((await store.ttl('ada19')) <= 3600, 'clamped to the absolute end')
      await store.update('ada16', 10 * HOUR)
      assert.ok((await store.ttl('ada16')) <= 3600, 'and the end was kept')
    } finally {
      await store.close()
    }
  }),
)

test(
  'sessions.json: a corrupt <file>.users is reported and costs the index, not the sessions',
  withFile(async (file, open) => {
    let store = open()
    await store.set('a', { user: 'ada' }, HOUR)
    await store.close()
    fs.writeFileSync(`${file}.users`, '{"a": 1')
    const reports = []
    store = open({ onError: (e) => reports.push(e.code) })
    // (Reports reach JS through the event loop.)
    for (let i = 0; i < 100 && reports.length === 0; i++) await sleep(50)
    assert.deepEqual(reports, ['ERR_CORRUPT_DATA'])
    assert.deepEqual(await store.get('a'), { user: 'ada' })
    assert.deepEqual(await ids(store, 'ada'), [])
    await store.close()
  }),
)
