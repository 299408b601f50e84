'use strict'
// The file stores: one file per session (crash-safe, multi-process) and
// Synchro's single sessions.json.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const crypto = require('node:crypto')
const rs = require('..')
const { checkAdd } = require('./support/counter-race')

const ROOT = path.join(__dirname, '..')
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const tmp = (name) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-${name}-`))
const session = (i = 0) => ({ user: `u${i}`, cart: [1, 2, 3], n: i })

function node(script, args = []) {
  const child = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  const done = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, out })))
  return { child, done }
}

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (e) => (assert.equal(e.code, code, e.message), true))
}

test('file: store shape, readable format, restart persistence', async () => {
  const dir = tmp('file')
  let store = rs.file({ dir })
  await store.set('a', session(1), 60_000)
  await store.set('b', '{"text":true}', 60_000)
  await store.set('p', session(2), Infinity)
  assert.deepEqual(await store.get('a'), session(1))
  assert.equal(await store.ttl('a'), 60)
  assert.equal(await store.ttl('p'), -1)
  assert.equal(await store.update('a', 120_000), true)
  assert.equal(await store.update('zzz', 1000), false)
  assert.equal(await store.length(), 3)
  // a file per session: a header line, then the session JSON (and
  // recycled temp files, `.tmp-…`, and the read caches' table of counters,
  // see "File stores" in the README)
  const all = fs.readdirSync(dir)
  const files = all.filter((f) => !f.startsWith('.tmp-') && f !== '.rs-store-gens' && f !== '.rs-store-writers')
  assert.ok(all.includes('.rs-store-gens'))
  assert.ok(all.includes('.rs-store-writers'), 'the write locks of every process on the directory')
  assert.ok(all.length - files.length <= 65, 'a bounded number of recycled temp files')
  assert.equal(files.length, 3)
  for (const f of files) assert.match(f, /^[0-9a-f]{64}\.sess$/)
  const texts = files.map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
  const a = texts.find((t) => t.includes('"id":"a"'))
  const [header, body] = a.split('\n')
  assert.equal(JSON.parse(header).id, 'a')
  assert.equal(typeof JSON.parse(header).sum, 'number', 'a checksum of the session')
  assert.deepEqual(JSON.parse(body), session(1))
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700)
  await store.close()
  await rejectsWith(store.get('a'), 'ERR_STORE_CLOSED')

  store = rs.file({ dir })
  assert.deepEqual(await store.get('a'), session(1), 'survives a restart')
  assert.equal(await store.ttl('a'), 120)
  assert.equal(await store.remove('a'), true)
  assert.equal(await store.get('a'), null)
  assert.equal(await store.clear(), 2)
  assert.deepEqual(fs.readdirSync(dir).sort(), ['.rs-store-gens', '.rs-store-writers'], 'no session, no temp file left')
  // add(): one winner between two stores on one directory (as two processes)
  const other = rs.file({ dir })
  await checkAdd([store, other])
  await other.close()
  await store.close()
})

test('file: hostile ids never escape the directory or collide', async () => {
  const parent = tmp('hostile')
  const dir = path.join(parent, 'store')
  const store = rs.file({ dir })
  const ids = ['..', '../escape', '../../etc/passwd', 'a/b', '/abs', 'nul\0byte', '.', 'x'.repeat(1024), 'X'.repeat(1024)]
  for (const id of ids) await store.set(id, { id }, 60_000)
  for (const id of ids) assert.deepEqual(await store.get(id), { id })
  assert.deepEqual(fs.readdirSync(parent), ['store'], 'nothing written outside dir')
  assert.equal(fs.readdirSync(dir).filter((f) => f.endsWith('.sess')).length, ids.length, 'no collisions')
  await rejectsWith(store.set('y'.repeat(1025), {}, 1000), 'ERR_INVALID_ID')
  assert.equal(await store.get('y'.repeat(5000)), null)
  await store.close()
})

test('file: bad directories and bad input get coded errors', async () => {
  const parent = tmp('baddir')
  const notDir = path.join(parent, 'file')
  fs.writeFileSync(notDir, 'x')
  assert.throws(() => rs.file({ dir: notDir }), (e) => e.code === 'ERR_INVALID_OPTION' && /not a directory/.test(e.message))
  assert.throws(() => rs.file({ dir: path.join(notDir, 'sub') }), (e) => e.code === 'ERR_STORE_IO')
  assert.throws(() => rs.file({ dir: '/proc/rs-store-cannot' }), (e) => e.code === 'ERR_STORE_IO')
  assert.throws(() => rs.file({ dir: 42 }), (e) => e.code === 'ERR_INVALID_OPTION' && e instanceof TypeError)
  const store = rs.file({ dir: path.join(parent, 'ok'), maxSessionBytes: 100 })
  await store.set('k', { a: 1 }, 60_000)
  await rejectsWith(store.set('k', { big: 'x'.repeat(200) }, 1000), 'ERR_SESSION_TOO_LARGE')
  await rejectsWith(store.set('k', { b: 1n }, 1000), 'ERR_NOT_SERIALIZABLE')
  assert.deepEqual(await store.get('k'), { a: 1 }, 'stored data intact')
  await store.close()
})

test('file: a write the disk refuses (a file size limit, as a full disk would) rejects ERR_STORE_IO and keeps the old session', async () => {
  const dir = tmp('full')
  // RLIMIT_FSIZE of 8 KiB for a child process: a bigger write fails with
  // EFBIG (its SIGXFSZ ignored), the way a full disk fails one with ENOSPC.
  const script = `
    process.on('SIGXFSZ', () => {})
    const s = require(${JSON.stringify(ROOT)}).file({ dir: ${JSON.stringify(dir)} })
    ;(async () => {
      await s.set('k', { small: true }, 60000)
      let code = null
      try { await s.set('k', { big: 'x'.repeat(64 * 1024) }, 60000) } catch (e) { code = e.code }
      let other = null
      try { await s.set('new', { big: 'y'.repeat(64 * 1024) }, 60000) } catch (e) { other = e.code }
      process.stdout.write(JSON.stringify({ code, other, after: await s.get('k'), missing: await s.get('new') }))
      await s.close()
    })().catch((e) => { console.error(e); process.exit(1) })`
  const child = spawn('bash', ['-c', 'ulimit -f 8 && exec "$0" -e "$1"', process.execPath, script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  const code = await new Promise((resolve) => child.once('exit', resolve))
  assert.equal(code, 0)
  assert.deepEqual(JSON.parse(out), { code: 'ERR_STORE_IO', other: 'ERR_STORE_IO', after: { small: true }, missing: null })
  const store = rs.file({ dir })
  assert.deepEqual(await store.get('k'), { small: true }, 'the old session is intact on disk')
  assert.deepEqual((await store.entries()).map((e) => e.id), ['k'])
  await store.close()
  for (const f of fs.readdirSync(dir)) assert.ok(fs.statSync(path.join(dir, f)).size <= 8 * 1024 || f === '.rs-store-gens', `no partial file left: ${f}`)
})

test('file: expired sessions are invisible at once and swept from disk', async () => {
  const dir = tmp('sweep')
  const sessionFiles = () => fs.readdirSync(dir).filter((f) => f.endsWith('.sess')).length
  // No sweep while it writes (a loaded machine may take longer than the
  // 100 ms ttl to write 21 files, and the sweep deleted the first before
  // they were counted); a read of an expired session removes its file.
  const store = rs.file({ dir, sweepIntervalMs: 3_600_000 })
  for (let i = 0; i < 20; i++) await store.set(`s${i}`, session(i), 100)
  await store.set('keep', session(), 60_000)
  assert.equal(sessionFiles(), 21)
  await sleep(150)
  assert.equal(await store.get('s3'), null)
  assert.equal(await store.exists('s3'), false)
  assert.equal(await store.length(), 1)
  assert.deepEqual(await store.ids(), ['keep'])
  await store.close()
  const sweeping = rs.file({ dir, sweepIntervalMs: 50 })
  const until = Date.now() + 10_000
  while (sessionFiles() > 1 && Date.now() < until) await sleep(50)
  assert.equal(sessionFiles(), 1, 'the sweep deleted the expired files nobody read')
  assert.deepEqual(await sweeping.get('keep'), session())
  await sweeping.close()
})

test('file: a corrupt or foreign file is skipped and reported, never a crash', async () => {
  const dir = tmp('corrupt')
  const reported = []
  const store = rs.file({ dir, sweepIntervalMs: 30, onError: (e) => reported.push(e) })
  await store.set('good', session(), 60_000)
  fs.writeFileSync(path.join(dir, `${'0'.repeat(64)}.sess`), 'garbage without header')
  fs.utimesSync(path.join(dir, `${'0'.repeat(64)}.sess`), new Date(0), new Date(0))
  fs.writeFileSync(path.join(dir, 'README.txt'), 'a foreign file')
  assert.equal(await store.length(), 1)
  assert.equal((await store.all()).length, 1)
  await sleep(150)
  assert.ok(reported.length > 0, 'reported')
  assert.ok(reported.every((e) => e.code === 'ERR_CORRUPT_DATA'))
  assert.deepEqual(await store.get('good'), session())
  await store.close()
})

test('file: two OS processes share one directory', async () => {
  const dir = tmp('multi')
  const worker = (name) => `
    const rs = require(${JSON.stringify(ROOT)})
    const s = rs.file({ dir: ${JSON.stringify(dir)} })
    ;(async () => {
      for (let i = 0; i < 200; i++) {
        await s.set('${name}' + i, { by: '${name}', i }, 60000)
        await s.set('shared', { by: '${name}', i }, 60000)
        const other = await s.get('shared')
        if (!other || typeof other.i !== 'number') throw new Error('torn read')
        // add() races the other process: the winner records its win
        if (await s.add('race' + i, { by: '${name}' }, 60000)) await s.set('won-${name}' + i, {}, 60000)
      }
      await s.close()
    })().catch((e) => { console.error(e); process.exit(1) })`
  const [a, b] = [node(worker('a')), node(worker('b'))]
  const results = await Promise.all([a.done, b.done])
  assert.deepEqual(results.map((r) => r.code), [0, 0])
  const store = rs.file({ dir })
  for (let i = 0; i < 200; i++) {
    const wins = [await store.exists(`won-a${i}`), await store.exists(`won-b${i}`)]
    assert.equal(wins.filter(Boolean).length, 1, `race${i}: one winner`)
    assert.equal((await store.get(`race${i}`)).by, wins[0] ? 'a' : 'b')
    await store.remove(`race${i}`)
    await store.remove(`won-${wins[0] ? 'a' : 'b'}${i}`)
  }
  assert.equal(await store.length(), 401)
  assert.deepEqual(await store.get('a199'), { by: 'a', i: 199 })
  assert.deepEqual(await store.get('b0'), { by: 'b', i: 0 })
  assert.equal((await store.get('shared')).i, 199)
  await store.close()
})

test('file: a reader process never sees a torn, foreign or going-back session while another process rewrites them (recycled temp files)', { timeout: 60_000 }, async () => {
  const dir = tmp('torn')
  const ids = Array.from({ length: 12 }, (_, i) => `t${i}`)
  // sizes vary, so a recycled inode is often longer or shorter than the record written into it
  const writer = node(`
    const rs = require(${JSON.stringify(ROOT)})
    const s = rs.file({ dir: ${JSON.stringify(dir)} })
    ;(async () => {
      const end = Date.now() + 3000
      for (let n = 0; Date.now() < end; n++) {
        const ids = ${JSON.stringify(ids)}
        await Promise.all(ids.map((id, k) => s.set(id, { id, n, pad: 'x'.repeat((n * 37 + k * 101) % 3000) }, 60000)))
      }
      await s.close()
    })().catch((e) => { console.error(e); process.exit(1) })`)
  const reader = node(`
    const rs = require(${JSON.stringify(ROOT)})
    let reported = 0
    const s = rs.file({ dir: ${JSON.stringify(dir)}, onError: () => reported++ })
    ;(async () => {
      const ids = ${JSON.stringify(ids)}
      let reads = 0, seen = 0, missing = 0
      const last = ids.map(() => -1)
      const end = Date.now() + 3000
      while (Date.now() < end) {
        const got = await Promise.all(ids.map((id) => s.get(id)))
        got.forEach((v, k) => {
          reads++
          if (v === null) {
            if (last[k] >= 0) missing++ // seen before and never removed: it exists
            return
          }
          seen++
          if (v.id !== ids[k] || v.pad !== 'x'.repeat((v.n * 37 + k * 101) % 3000)) throw new Error('torn or foreign: ' + JSON.stringify(v).slice(0, 80))
          // never a version not yet in place, then an older one
          if (v.n < last[k]) throw new Error('went back: ' + ids[k] + ' ' + v.n + ' after ' + last[k])
          last[k] = v.n
        })
        const all = await s.entries()
        for (const e of all) if (e.session.id !== e.id) throw new Error('entries: foreign session under ' + e.id)
      }
      process.stdout.write(JSON.stringify({ reads, seen, missing, reported }))
      await s.close()
    })().catch((e) => { console.error(e); process.exit(1) })`)
  const [w, r] = await Promise.all([writer.done, reader.done])
  assert.deepEqual([w.code, r.code], [0, 0])
  const stats = JSON.parse(r.out)
  assert.ok(stats.seen > 1000, `the reader read sessions: ${r.out}`)
  assert.equal(stats.missing, 0, `an existing session never reads as missing: ${r.out}`)
  assert.equal(stats.reported, 0, `nothing reported as corrupt: ${r.out}`)
  const store = rs.file({ dir })
  for (const id of ids) assert.equal((await store.get(id)).id, id)
  await store.close()
})

test('file: fast reads see every change by another store or process at once, and keep call order', { timeout: 60_000 }, async () => {
  const dir = tmp('fastreads')
  const a = rs.file({ dir })
  const b = rs.file({ dir }) // another writer, as another process would be
  try {
    await a.set('x', { v: 1 }, 60_000)
    assert.deepEqual(await a.get('x'), { v: 1 })
    assert.deepEqual(await a.get('x'), { v: 1 }, 'again')
    await b.set('x', { v: 2 }, 60_000)
    assert.deepEqual(await a.get('x'), { v: 2 }, 'a rename by another writer shows at once')
    await b.remove('x')
    assert.equal(await a.get('x'), null, 'a removal shows at once')
    await b.set('x', { v: 3 }, 60_000)
    assert.deepEqual(await a.get('x'), { v: 3 })
    // same size, within the file system's timestamp granularity
    await b.set('x', { v: 4 }, 60_000)
    assert.deepEqual(await a.get('x'), { v: 4 })
    // calls on one id in call order, not awaited
    const r = await Promise.all([a.get('x'), a.set('x', { v: 5 }, 60_000), a.get('x'), a.remove('x'), a.get('x'), a.set('x', { v: 6 }, 60_000), a.get('x')])
    assert.deepEqual([r[0], r[2], r[4], r[6]], [{ v: 4 }, { v: 5 }, null, { v: 6 }])
    const c = await Promise.all([a.clear(), a.get('x')])
    assert.deepEqual(c, [1, null])
    // expiry is checked on fast reads too
    await a.set('short', { s: 1 }, 150)
    assert.deepEqual(await a.get('short'), { s: 1 })
    await sleep(200)
    assert.equal(await a.get('short'), null)
    // a child process rewrites a session while this one keeps reading it
    await a.set('shared', { n: 0 }, 60_000)
    const writer = node(`
      const rs = require(${JSON.stringify(ROOT)})
      const s = rs.file({ dir: ${JSON.stringify(dir)} })
      ;(async () => { for (let n = 1; n <= 300; n++) await s.set('shared', { n }, 60000); await s.close() })()`)
    let last = 0
    while (writer.child.exitCode === null) {
      const { n } = await a.get('shared')
      assert.ok(n >= last, `never goes back: ${n} after ${last}`)
      last = n
      await sleep(0)
    }
    await writer.done
    assert.equal((await a.get('shared')).n, 300, 'the last write is seen')
    // fastReads: false sends every read to the I/O threads; the store works the same
    const off = rs.file({ dir, fastReads: false })
    assert.equal((await off.get('shared')).n, 300)
    await off.close()
    assert.throws(() => rs.file({ dir, fastReads: 'yes' }), (e) => e.code === 'ERR_INVALID_OPTION')
  } finally {
    await a.close()
    await b.close()
  }
})

test('file: the read cache serves a session only while no process has changed its file', { timeout: 60_000 }, async () => {
  const dir = tmp('cache')
  const a = rs.file({ dir })
  const nocache = rs.file({ dir, readCacheBytes: 0, fastReads: false })
  // another process sets 'ball' when asked; this one then reads it at once
  const child = spawn(process.execPath, ['-e', `
    const s = require(${JSON.stringify(ROOT)}).file({ dir: ${JSON.stringify(dir)} })
    process.on('message', async (n) => {
      if (n === 'end') { await s.close(); process.disconnect(); return }
      await s.set('ball', { n }, 60000)
      process.send(n)
    })`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const ask = (n) => new Promise((resolve) => { child.once('message', resolve); child.send(n) })
  try {
    await a.set('ball', { n: 0 }, 60_000)
    for (let n = 1; n <= 300; n++) {
      for (let k = 0; k < 3; k++) assert.equal((await a.get('ball')).n, n - 1)
      assert.equal(await ask(n), n)
      assert.equal((await a.get('ball')).n, n, 'the other process\'s write is seen by the next get')
    }
    // A file rewritten by hand (not by rs-store) is not seen by a cached
    // copy (for up to 1 s), which shows the copy above came from the cache.
    const file = path.join(dir, crypto.createHash('sha256').update('ball').digest('hex') + '.sess')
    fs.writeFileSync(file, `{"rs-store":1,"id":"ball","expires":null}\n{"n":-1}`)
    assert.equal((await a.get('ball')).n, 300, 'served from the cache')
    assert.equal((await nocache.get('ball')).n, -1, 'readCacheBytes: 0 reads the file')
    await sleep(1100)
    assert.equal((await a.get('ball')).n, -1, 'a cached copy older than 1 s is read again')
    // A store that caches nothing still tells the others' caches of its changes.
    assert.equal((await a.get('ball')).n, -1)
    await nocache.set('ball', { n: 301 }, 60_000)
    assert.equal((await a.get('ball')).n, 301, 'a write of a store with readCacheBytes: 0 is seen at once')
    assert.equal(await nocache.remove('ball'), true)
    assert.equal(await a.get('ball'), null, 'and its removal')
    await a.set('ball', { n: 302 }, 60_000)
    assert.throws(() => rs.file({ dir, readCacheBytes: -1 }), (e) => e.code === 'ERR_INVALID_OPTION')
    assert.ok(fs.statSync(path.join(dir, '.rs-store-gens')).isFile(), 'the shared table of counters')
    assert.equal(await a.length(), 1, 'which is no session')
  } finally {
    child.send('end')
    await exited
    await a.close()
    await nocache.close()
  }
})

test('file: kill -9 mid-write, again and again: no session is ever corrupt or partial', { timeout: 60_000 }, async () => {
  const dir = tmp('crash')
  const writer = `
    const rs = require(${JSON.stringify(ROOT)})
    const s = rs.file({ dir: ${JSON.stringify(dir)} })
    let round = 0
    process.stdout.write('ready\\n')
    ;(async () => {
      for (;;) {
        round++
        const ops = []
        for (let i = 0; i < 50; i++) {
          const pad = String(round).repeat(2000 + ((round * 7 + i) % 500))
          ops.push(s.set('s' + i, { round, i, pad, len: pad.length }, 600000))
        }
        await Promise.all(ops)
      }
    })()`
  for (let k = 0; k < 8; k++) {
    const w = node(writer)
    await new Promise((r) => w.child.stdout.once('data', r))
    await sleep(80 + Math.floor(Math.random() * 150))
    w.child.kill('SIGKILL')
    const { signal } = await w.done
    assert.equal(signal, 'SIGKILL')
  }
  const store = rs.file({ dir })
  let seen = 0
  for (let i = 0; i < 50; i++) {
    const s = await store.get(`s${i}`)
    if (s === null) continue
    seen++
    assert.equal(s.i, i)
    assert.equal(s.pad.length, s.len, 'whole payload')
    assert.equal(s.pad, String(s.round).repeat(s.pad.length / String(s.round).length))
  }
  assert.ok(seen >= 40, `sessions written before the kills are there (${seen})`)
  // leftovers of killed writers are temp files only, never session files
  for (const f of fs.readdirSync(dir)) assert.match(f, /^([0-9a-f]{64}\.sess|\.tmp-.*|\.rs-store-gens|\.rs-store-writers)$/)
  await store.close()
})

test('file: a real simpleS 0.9 server keeps its sessions across a restart', async () => {
  const { startCounterApp, client } = require('../demo/counter-app')
  const dir = tmp('simples')
  let store = rs.file({ dir })
  let app = await startCounterApp({ store })
  const c = client(app.port)
  assert.equal((await c.get('/')).text, 'visits: 1')
  assert.equal((await c.get('/')).text, 'visits: 2')
  await app.close()
  await store.close()
  store = rs.file({ dir })
  app = await startCounterApp({ store, port: app.port })
  try {
    assert.equal((await c.get('/')).text, 'visits: 3')
    assert.equal((await c.get('/peek')).text, 'visits: 3')
  } finally {
    await app.close()
    await store.close()
  }
})

test('sessions.json: one JSON object, coalesced writes, survives a restart', async () => {
  const dir = tmp('synchro')
  const file = path.join(dir, 'sessions.json')
  let store = rs.file({ sessionStateFile: file, coalesceMs: 300 })
  const ops = []
  for (let i = 0; i < 100; i++) ops.push(store.set(`id${i}`, session(i), 60_000))
  await Promise.all(ops)
  await checkAdd([store, store])
  await sleep(100)
  assert.equal(fs.existsSync(file), false, 'a burst is not written change by change')
  await store.flush()
  const onDisk = JSON.parse(fs.readFileSync(file, 'utf8'))
  assert.equal(Object.keys(onDisk).length, 100)
  assert.deepEqual(onDisk.id42, session(42), 'readable as { id: session }')
  await store.remove('id0')
  await store.set('late', { x: 1 }, 60_000)
  await store.close() // writes what is pending
  const after = JSON.parse(fs.readFileSync(file, 'utf8'))
  assert.equal(after.id0, undefined)
  assert.deepEqual(after.late, { x: 1 })

  store = rs.file({ sessionStateFile: file })
  assert.deepEqual(await store.get('id42'), session(42))
  assert.equal(await store.ttl('id42') > 50, true, 'expiry kept across the restart')
  assert.equal(await store.length(), 100)
  await store.close()
})

test('sessions.json: a corrupt file is refused, not overwritten', () => {
  const dir = tmp('synchro-bad')
  const file = path.join(dir, 'sessions.json')
  fs.writeFileSync(file, '{"half": ')
  assert.throws(() => rs.file({ sessionStateFile: file }), (e) => e.code === 'ERR_CORRUPT_DATA')
  assert.equal(fs.readFileSync(file, 'utf8'), '{"half": ')
  assert.throws(() => rs.file({ sessionStateFile: path.join(dir, 'missing-dir', 's.json') }), (e) => e.code === 'ERR_INVALID_OPTION')
})

test('file: stores dropped without close() are reclaimed when garbage-collected (threads, fds, temp files)', { timeout: 120_000 }, async () => {
  const dir = tmp('dropped')
  // In a child with --expose-gc, counting its own threads and descriptors.
  const child = spawn(process.execPath, ['--expose-gc', '-e', `
    const fs = require('node:fs')
    const rs = require(${JSON.stringify(ROOT)})
    const dir = ${JSON.stringify(dir)}
    const now = () => ({ threads: fs.readdirSync('/proc/self/task').length, fds: fs.readdirSync('/proc/self/fd').length })
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
    ;(async () => {
      // one store made, used and closed first: the threads every store shares exist from here on
      const warm = rs.file({ dir })
      await Promise.all([1, 2, 3].map((n) => warm.set('w' + n, { n }, 60000)))
      await warm.get('w1')
      await warm.close()
      global.gc()
      await sleep(100)
      const base = now()
      // (in a function of its own: no frame of this one keeps the last store)
      const use = async (i) => {
        const s = rs.file({ dir })
        await s.set('k' + i, { i }, 60000)
        await s.set('k' + i, { i, again: true }, 60000) // leaves a recycled temp file
        if ((await s.get('k' + i)).i !== i) throw new Error('wrong session')
      }
      for (let i = 0; i < 100; i++) await use(i)
      const peak = now()
      let after = now()
      for (let k = 0; k < 200; k++) {
        global.gc()
        await sleep(50)
        after = now()
        if (after.threads <= base.threads + 2 && after.fds <= base.fds + 2) break
      }
      const temps = fs.readdirSync(dir).filter((f) => f.startsWith('.tmp-')).length
      process.stdout.write(JSON.stringify({ base, peak, after, temps }))
    })().catch((e) => { console.error(e); process.exit(1) })`], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  assert.equal(await new Promise((resolve) => child.once('exit', resolve)), 0)
  const { base, peak, after, temps } = JSON.parse(out)
  assert.ok(peak.threads >= base.threads + 100, `each open store has its threads: ${out}`)
  assert.ok(after.threads <= base.threads + 2, `threads back to the baseline: ${out}`)
  assert.ok(after.fds <= base.fds + 2, `descriptors back to the baseline: ${out}`)
  assert.equal(temps, 0, `the dropped stores' recycled temp files are removed: ${out}`)
  const store = rs.file({ dir })
  assert.equal(await store.length(), 103, 'every session written is kept')
  await store.close()
})

test('file: processes touching and replacing sessions never undo another process\'s writes or removals', { timeout: 120_000 }, async () => {
  const dir = tmp('touch-race')
  const stop = path.join(tmp('touch-race-stop'), 'stop')
  const ids = Array.from({ length: 8 }, (_, i) => `r${i}`)
  // Two processes keep touching (update) and replacing the writer's sessions until it is done.
  const toucher = (how) => node(`
    const fs = require('node:fs')
    const s = require(${JSON.stringify(ROOT)}).file({ dir: ${JSON.stringify(dir)} })
    const ids = ${JSON.stringify(ids)}
    ;(async () => {
      let hits = 0
      while (!fs.existsSync(${JSON.stringify(stop)})) {
        const r = await Promise.all(ids.map((id) => ${how === 'update' ? 's.update(id, 60000)' : "s.replace(id, { n: -1 }, 60000)"}))
        hits += r.filter(Boolean).length
      }
      process.stdout.write(JSON.stringify({ hits }))
      await s.close()
    })().catch((e) => { console.error(e); process.exit(1) })`)
  const touchers = [toucher('update'), toucher('replace')]
  // The writer sets each session and reads it back, then removes it and reads again.
  const writer = node(`
    const fs = require('node:fs')
    const s = require(${JSON.stringify(ROOT)}).file({ dir: ${JSON.stringify(dir)} })
    const ids = ${JSON.stringify(ids)}
    ;(async () => {
      let lost = 0, back = 0, reads = 0
      for (let n = 0; n < 400; n++) {
        await Promise.all(ids.map((id) => s.set(id, { n }, 60000)))
        // n, or -1: a replace that came after this set
        for (const v of await Promise.all(ids.map((id) => s.get(id)))) if (!v || (v.n !== n && v.n !== -1)) lost++
        await Promise.all(ids.map((id) => s.remove(id)))
        for (const v of await Promise.all(ids.map((id) => s.get(id)))) if (v !== null) back++
        reads += 2 * ids.length
      }
      fs.writeFileSync(${JSON.stringify(stop)}, '')
      process.stdout.write(JSON.stringify({ lost, back, reads }))
      await s.close()
    })().catch((e) => { console.error(e); process.exit(1) })`)
  const [w, ...t] = await Promise.all([writer.done, ...touchers.map((c) => c.done)])
  assert.deepEqual([w.code, ...t.map((r) => r.code)], [0, 0, 0])
  const { lost, back, reads } = JSON.parse(w.out)
  const [touched, replaced] = t.map((r) => JSON.parse(r.out).hits)
  assert.ok(touched > 0 && replaced > 0, `the other processes did touch and replace sessions: ${touched}, ${replaced}`)
  assert.equal(reads, 400 * 2 * ids.length)
  // lost: read-backs right after set() that saw an older session; back: removed sessions that came back
  assert.deepEqual({ lost, back }, { lost: 0, back: 0 }, `touched ${touched}, replaced ${replaced}`)
  const store = rs.file({ dir })
  assert.equal(await store.length(), 0, 'every session the writer removed stays removed')
  await store.close()
})

// A rotation holds both ids' write locks; ids whose locks share an
// in-process mutex (one pair in 64) must not wait on themselves.
for (const [what, opts] of [['a plain file store', {}], ['a file store with userOf', { userOf: (s) => s.user }]]) {
  test(`rotate on ${what}: 300 random ids, one after another and 4 at a time, all finish`, { timeout: 120_000 }, async () => {
    const dir = tmp('rotate-many')
    const store = rs.file({ dir, ...opts })
    try {
      const id = () => crypto.randomBytes(12).toString('hex')
      let moved = 0
      for (let i = 0; i < 300; i++) {
        const [from, to] = [id(), id()]
        await store.set(from, session(i % 7), 3600)
        assert.equal(await store.rotate(from, to), true)
        assert.equal(await store.get(from), null)
        assert.deepEqual(await store.get(to), session(i % 7))
        moved++
      }
      const live = Array.from({ length: 4 }, () => id())
      for (const [i, s] of live.entries()) await store.set(s, session(i), 3600)
      await Promise.all(
        live.map(async (start, i) => {
          let at = start
          for (let n = 0; n < 75; n++) {
            const next = id()
            assert.equal(await store.rotate(at, next), true)
            at = next
            moved++
          }
          assert.deepEqual(await store.get(at), session(i))
        }),
      )
      assert.equal(moved, 600)
      assert.equal(await store.length(), 304)
    } finally {
      await store.close()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
}
