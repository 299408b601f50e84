'use strict'
// Hostile input, hostile files and hostile requests, run through every store
// with one list (ids, texts, sizes, callbacks, options, tampering), then the
// defects an outside test found, one test each.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { spawn, execFileSync } = require('node:child_process')
const rs = require('..')
const { startRedis, sleep } = require('./support/redis-servers')
const { startDaemon } = require('./support/daemon')

const tmp = (name) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-hostile-${name}-`))
const SECRET = 'a hostile-test secret that is long enough for the rule of 64 chars'
const mode = (p) => fs.statSync(p).mode & 0o777

let redis
let daemon
test.before(async () => {
  redis = await startRedis()
  daemon = await startDaemon(0, tmp('daemon'))
})
test.after(async () => {
  await redis.stop()
  await daemon.stop()
})

/** Every store, fresh, with `extra` options, and where its data lives. */
function stores(extra = {}) {
  const dir = tmp('file')
  const json = path.join(tmp('json'), 'sessions.json')
  const objects = tmp('objects')
  return {
    memory: { make: (more) => rs.memory({ ...extra, ...more }) },
    // (The read cache would serve a copy read before a change made by hand
    // for up to 1 s, as documented: tampering shows at once without it.)
    file: { make: (more) => rs.file({ dir, readCacheBytes: 0, ...extra, ...more }), dir },
    sessionStateFile: { make: (more) => rs.file({ sessionStateFile: json, ...extra, ...more }), json },
    redis: { make: (more) => rs.redis({ url: redis.url, prefix: `h${Math.random()}:`, ...extra, ...more }) },
    daemon: { make: (more) => rs.daemon({ port: daemon.port, prefix: `h${Math.random()}:`, ...extra, ...more }) },
    objectStore: { make: (more) => rs.objectStore({ directory: objects, ...extra, ...more }), dir: objects },
    memoized: {
      make: () => {
        const inner = rs.memory(extra)
        const m = rs.memoized(inner)
        return { ...m, close: () => m.close().then(() => inner.close()) }
      },
    },
  }
}

const code = (c, Cls) => (e) => (!Cls || e instanceof Cls) && e.code === c

for (const [name, { make }] of Object.entries(stores({ maxSessionBytes: 4096 }))) {
  test(`hostile input on ${name}: ids, texts, sizes, callbacks; stored data intact`, async () => {
    const s = make()
    try {
      assert.equal(await s.set('good', { n: 1 }, 60_000), undefined, 'set resolves undefined')
      // ids are untrusted: hostile but valid ones are just keys
      for (const id of ['..', '../../etc/passwd', 'a/b', 'nul\0byte', '\r\nPING', '*', 'lock:good', 'x'.repeat(1024)]) {
        await s.set(id, { id }, 60_000)
        assert.deepEqual(await s.get(id), { id })
      }
      // ids no session can have: writes refuse, reads answer "missing"
      for (const id of ['', 'x'.repeat(1025), '\uD800', 'a\uDFFFb']) {
        await assert.rejects(s.set(id, {}, 1000), code('ERR_INVALID_ID', RangeError), JSON.stringify(id))
        assert.equal(await s.get(id), null)
        assert.equal(await s.exists(id), false)
      }
      assert.equal(await s.get('\uFFFD'), null, 'a lone surrogate is not U+FFFD')
      await assert.rejects(s.get(42), code('ERR_INVALID_ID', TypeError))
      // session text: exactly one JSON value, nothing spliced
      for (const text of ['not json', '{"a":1},"forged":{"admin":true}', '{"a":1} {"b":2}', '']) {
        await assert.rejects(s.set('good', text, 1000), code('ERR_NOT_SERIALIZABLE', TypeError), text)
      }
      assert.equal(await s.exists('forged'), false)
      await assert.rejects(s.set('good', { big: 'x'.repeat(5000) }, 1000), code('ERR_SESSION_TOO_LARGE', RangeError))
      // deep nesting is stored and read back
      let deep = { leaf: true }
      for (let i = 0; i < 300; i++) deep = { d: deep }
      await s.set('deep', deep, 60_000)
      assert.deepEqual(await s.get('deep'), deep)
      // a callback where a timeout goes points at the Promise API
      await assert.rejects(s.get('good', () => {}), (e) => e.code === 'ERR_INVALID_ARGUMENT' && /Promises.*rs-store\/express/.test(e.message))
      await assert.rejects(s.set('good', { n: 2 }, () => {}), code('ERR_INVALID_ARGUMENT', TypeError))
      assert.deepEqual(await s.get('good'), { n: 1 }, 'stored data intact')
    } finally {
      await s.close()
    }
  })
}

test('unknown options are refused with the option named and the one meant', () => {
  const cases = [
    [() => rs.redis({ prot: 6379 }), /'prot'.*'port'/],
    [() => rs.memory({ maxEntires: 10 }), /'maxEntires'.*'maxEntries'/],
    [() => rs.file({ dir: tmp('opt'), readCache: 0 }), /'readCache'.*'readCacheBytes'/],
    [() => rs.file({ sessionStateFile: path.join(tmp('opt'), 's.json'), coalesce: 5 }), /'coalesce'.*'coalesceMs'/],
    [() => rs.daemon({ port: daemon.port, prefx: '' }), /'prefx'.*'prefix'/],
    [() => rs.objectStore({ directory: tmp('opt'), sweepInterval: 5 }), /'sweepInterval'.*'sweepIntervalMs'/],
    [() => rs.memoized(rs.memory(), { maxEntry: 1 }), /'maxEntry'.*'maxEntries'/],
    [() => rs.fromConfig({ configfile: 'x' }), /'configfile'.*'configFile'/],
    [() => rs.dummy({ zzz: 1 }), /'zzz'$/],
  ]
  for (const [make, message] of cases) assert.throws(make, (e) => e.code === 'ERR_INVALID_OPTION' && message.test(e.message), String(make))
})

for (const name of ['redis', 'daemon', 'file', 'sessionStateFile', 'objectStore']) {
  test(`tampered data on ${name}: get resolves null and reports, exists answers false`, async () => {
    const reports = []
    const onError = (e) => reports.push(e.code)
    const where = stores({ secret: SECRET })[name]
    let s = where.make({ onError })
    try {
      await s.set('t', { secret: 'data' }, 60_000)
      await s.set('other', { fine: true }, 60_000)
      if (name === 'sessionStateFile') {
        await s.close() // sessions.json is read at start: tamper, then open again
        await tamper(name, where, 't')
        s = where.make({ onError })
      } else await tamper(name, where, 't')
      assert.equal(await s.get('t'), null)
      assert.equal(await s.exists('t'), false, 'a session that cannot be read does not exist')
      assert.deepEqual(await s.get('other'), { fine: true })
      await sleep(50)
      assert.ok(reports.includes('ERR_CORRUPT_DATA'), reports.join())
    } finally {
      await s.close()
    }
  })
}

/** Flips a byte of the stored value of `id` in the backend itself. */
async function tamper(name, where, id) {
  const flip = (buf) => {
    const b = Buffer.from(buf)
    b[b.length - 3] ^= 0x55
    return b
  }
  if (name === 'redis' || name === 'daemon') {
    const { createClient, RESP_TYPES } = require('redis')
    const c = createClient({ url: name === 'redis' ? redis.url : `redis://127.0.0.1:${daemon.port}` })
    await c.connect()
    const raw = c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
    const keys = (await c.keys('*')).filter((k) => k.endsWith(`:${id}`))
    assert.ok(keys.length > 0)
    for (const key of keys) await c.set(key, flip(await raw.get(key)))
    await c.quit()
  } else if (name === 'sessionStateFile') {
    const text = JSON.parse(fs.readFileSync(where.json, 'utf8'))
    const b = Buffer.from(text[id], 'base64')
    text[id] = flip(b).toString('base64')
    fs.writeFileSync(where.json, JSON.stringify(text))
  } else {
    const files = []
    const walk = (d) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name)
        if (e.isDirectory()) walk(p)
        else if (p.endsWith('.sess')) files.push(p)
      }
    }
    walk(where.dir)
    let n = 0
    for (const f of files) {
      const text = fs.readFileSync(f)
      if (text.toString('latin1').includes(`"id":"${id}"`)) {
        fs.writeFileSync(f, flip(text))
        n++
      }
    }
    assert.equal(n, 1)
  }
}

test('sessions.json: what the store accepted it reopens; one bad entry costs that entry; dead writers’ temp files go; files are 0600', async () => {
  const dir = tmp('json-reopen')
  const file = path.join(dir, 'sessions.json')
  let deep = { leaf: 1 }
  for (let i = 0; i < 300; i++) deep = { d: deep }
  let s = rs.file({ sessionStateFile: file })
  await s.set('deep', deep, 60_000)
  await s.set('plain', { ok: true }, 60_000)
  await s.close()
  assert.equal(mode(file), 0o600)
  assert.equal(mode(`${file}.expires`), 0o600)
  // a writer killed mid-write left its temp copy of every session
  const dead = spawn(process.execPath, ['-e', '0'])
  await new Promise((r) => dead.once('exit', r))
  const stale = path.join(dir, `.sessions.json.tmp-${dead.pid}`)
  fs.writeFileSync(stale, fs.readFileSync(file))
  s = rs.file({ sessionStateFile: file })
  assert.deepEqual(await s.get('deep'), deep, 'a session nested 300 levels reopens')
  assert.equal(fs.existsSync(stale), false, 'the dead writer’s temp file is removed')
  await s.close()
  // encrypted: one entry that is not base64 costs that entry only
  const enc = path.join(dir, 'enc.json')
  s = rs.file({ sessionStateFile: enc, secret: SECRET })
  await s.set('a', { n: 1 }, 60_000)
  await s.set('b', { n: 2 }, 60_000)
  await s.close()
  const text = JSON.parse(fs.readFileSync(enc, 'utf8'))
  text.a = '%%% not base64 %%%'
  fs.writeFileSync(enc, JSON.stringify(text))
  const reports = []
  s = rs.file({ sessionStateFile: enc, secret: SECRET, onError: (e) => reports.push(e.code) })
  assert.equal(await s.get('a'), null)
  assert.deepEqual(await s.get('b'), { n: 2 })
  await sleep(50)
  assert.deepEqual(reports, ['ERR_CORRUPT_DATA'])
  await s.close()
})

test('files and directories that hold ids or sessions are readable by their owner only', async () => {
  const existing = tmp('perm')
  fs.chmodSync(existing, 0o755)
  const f = rs.file({ dir: existing })
  await f.set('a', { n: 1 }, 60_000)
  const l = await f.lock('a')
  for (const name of fs.readdirSync(existing)) assert.equal(mode(path.join(existing, name)) & 0o077, 0, `${name} is 0600`)
  await l.release()
  await f.close()
  const fresh = path.join(tmp('perm'), 'new-dir')
  await rs.file({ dir: fresh }).close()
  assert.equal(mode(fresh), 0o700)
  const objects = path.join(tmp('perm'), 'objects')
  const o = rs.objectStore({ directory: objects })
  await o.set('a', { n: 1 }, 60_000)
  const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? [path.join(d, e.name), ...walk(path.join(d, e.name))] : [path.join(d, e.name)]))
  assert.equal(mode(objects), 0o700)
  for (const p of walk(objects)) assert.equal(mode(p) & 0o077, 0, `${p} is private`)
  await o.close()
})

test('file store: links planted in its directory are never written or read through, not even once the exchange moved them to the temp pool', async () => {
  const parent = tmp('links')
  const dir = path.join(parent, 'store')
  const name = (id) => `${require('node:crypto').createHash('sha256').update(id).digest('hex')}.sess`
  // a file the store must never touch, as a root-owned 0600 file would be
  const victim = path.join(parent, 'victim')
  fs.writeFileSync(victim, 'precious', { mode: 0o600 })
  // a real session of another store, which a link would let this one read as its own
  const elsewhere = path.join(parent, 'elsewhere')
  const other = rs.file({ dir: elsewhere })
  await other.set('forged', { role: 'admin' }, 60_000)
  await other.close()
  fs.mkdirSync(dir, { mode: 0o700 })
  fs.symlinkSync(victim, path.join(dir, name('planted')))
  fs.symlinkSync(path.join(elsewhere, name('forged')), path.join(dir, name('forged')))
  const reported = []
  const s = rs.file({ dir, readCacheBytes: 0, onError: (e) => reported.push(e) })
  try {
    assert.equal(await s.get('forged'), null, 'a link is no session of this store')
    assert.equal(await s.get('planted'), null)
    assert.ok(reported.length >= 2 && reported.every((e) => e.code === 'ERR_CORRUPT_DATA' && /symbolic link/.test(e.message)), reported.map((e) => e.message).join('; '))
    // The exchange swaps each link into the temp pool; later writes reuse those temp names.
    for (let round = 0; round < 30; round++) {
      await Promise.all([s.set('planted', { round }, 60_000), s.set('forged', { round }, 60_000)])
      await sleep(2)
      await Promise.all(Array.from({ length: 8 }, (_, i) => s.set(`other${i}`, { round, i }, 60_000)))
    }
    assert.equal(fs.readFileSync(victim, 'utf8'), 'precious', 'nothing written through a link')
    const forged = rs.file({ dir: elsewhere })
    assert.deepEqual(await forged.get('forged'), { role: 'admin' }, "the other store's session is intact")
    await forged.close()
    assert.deepEqual(await s.get('planted'), { round: 29 })
    assert.deepEqual(await s.get('forged'), { round: 29 })
    for (const f of fs.readdirSync(dir)) assert.ok(!fs.lstatSync(path.join(dir, f)).isSymbolicLink(), `the links are gone: ${f}`)
  } finally {
    await s.close()
  }
  // A link at the store's own files (the read cache's table, the write locks, the lock-maintenance file).
  for (const own of ['.rs-store-gens', '.rs-store-writers', '.locks']) {
    const d = tmp('own-links')
    fs.symlinkSync(victim, path.join(d, own))
    let store
    try {
      store = rs.file({ dir: d })
      await store.set('a', { n: 1 }, 60_000)
      await (await store.lock('a')).release()
    } catch (e) {
      assert.equal(e.code, 'ERR_STORE_IO', e.message)
      assert.match(e.message, /symbolic link/)
    } finally {
      if (store) await store.close()
    }
    assert.equal(fs.readFileSync(victim, 'utf8'), 'precious', `nothing written through ${own}`)
    assert.ok(fs.lstatSync(path.join(d, own)).isSymbolicLink(), `${own} left as it was`)
  }
})

test('file store: a FIFO at a session name never blocks a read, a write or the sweep', { timeout: 30_000 }, async () => {
  const dir = tmp('fifo')
  const name = `${require('node:crypto').createHash('sha256').update('f').digest('hex')}.sess`
  execFileSync('mkfifo', ['-m', '600', path.join(dir, name)])
  const reported = []
  const s = rs.file({ dir, sweepIntervalMs: 20, readCacheBytes: 0, onError: (e) => reported.push(e.code) })
  assert.equal(await s.get('f'), null)
  assert.equal(await s.exists('f'), false)
  await sleep(100) // sweeps meet it
  await s.set('f', { n: 1 }, 60_000)
  await sleep(2)
  await s.set('g', { n: 2 }, 60_000) // reuses the temp name the FIFO was swapped to
  assert.deepEqual(await s.get('f'), { n: 1 })
  assert.deepEqual(await s.get('g'), { n: 2 })
  await s.close()
  assert.ok(reported.length > 0 && reported.every((c) => c === 'ERR_CORRUPT_DATA'), String(reported))
  for (const f of fs.readdirSync(dir)) assert.ok(!fs.lstatSync(path.join(dir, f)).isFIFO(), `no FIFO left in the pool: ${f}`)
})

test('file store: a directory other users can write into, or that another user owns, is refused with a clear error and left as it is', () => {
  for (const m of [0o777, 0o1777, 0o770, 0o702]) {
    const dir = tmp('shared-dir')
    fs.chmodSync(dir, m)
    assert.throws(
      () => rs.file({ dir }),
      (e) => e.code === 'ERR_INVALID_OPTION' && e instanceof RangeError && e.message.includes(dir) && /writable by other users/.test(e.message),
      m.toString(8),
    )
    assert.equal(fs.statSync(dir).mode & 0o7777, m, 'mode left as it was')
    assert.deepEqual(fs.readdirSync(dir), [], 'nothing created in it')
  }
  if (process.getuid && process.getuid() === 0) {
    const dir = tmp('others-dir')
    fs.chownSync(dir, 65534, 65534) // nobody's, mode 0700: nobody could plant links in it
    assert.throws(() => rs.file({ dir }), (e) => e.code === 'ERR_INVALID_OPTION' && /belongs to another user/.test(e.message))
  }
  for (const m of [0o700, 0o750, 0o755]) {
    const dir = tmp('private-dir')
    fs.chmodSync(dir, m)
    const s = rs.file({ dir })
    s.close()
  }
})

test('a truncated .rs-store-gens turns the read cache off instead of killing the process (SIGBUS)', async () => {
  const dir = tmp('gens')
  const child = spawn(
    process.execPath,
    [
      '-e',
      `
      const rs = require(${JSON.stringify(path.join(__dirname, '..'))})
      const fs = require('fs')
      ;(async () => {
        const s = rs.file({ dir: ${JSON.stringify(dir)} })
        await s.set('a', { n: 1 }, 60000)
        await s.get('a')
        fs.truncateSync(${JSON.stringify(path.join(dir, '.rs-store-gens'))}, 0)
        await s.set('a', { n: 2 }, 60000)
        const v = await s.get('a')
        await s.close()
        console.log(JSON.stringify(v))
      })()`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const [codeOut, signal] = await new Promise((r) => child.once('exit', (c, s) => r([c, s])))
  assert.equal(signal, null, `no signal (${out})`)
  assert.equal(codeOut, 0, out)
  assert.deepEqual(JSON.parse(out.trim()), { n: 2 })
})

test('memoized: concurrent calls on one id share the entry and its lock (no self-deadlock); full store shape', async () => {
  const inner = rs.memory()
  const m = rs.memoized(inner, { waitMs: 2000 })
  try {
    const t0 = Date.now()
    const got = await Promise.all([m.get('u'), m.get('u'), ...[1, 2, 3, 4, 5].map((n) => m.set('u', { n }, 60_000)), m.get('u')])
    assert.ok(Date.now() - t0 < 1000, `answered in ${Date.now() - t0} ms`)
    assert.deepEqual(got.at(-1), { n: 5 }, 'calls on one id apply in call order')
    assert.equal(m.cached(), 1)
    assert.equal(await m.add('u', { n: 6 }, 60_000), false)
    assert.equal(await m.add('v', { n: 7 }, 60_000), true)
    assert.equal(await m.replace('v', { n: 8 }, 60_000), true)
    assert.equal(await m.replace('w', { n: 9 }, 60_000), false)
    assert.equal(await m.length(), 2)
    assert.deepEqual((await m.ids()).sort(), ['u', 'v'])
    assert.deepEqual((await m.entries()).map((e) => e.session.n).sort(), [5, 8])
    assert.equal(await m.clear(), 2)
    assert.equal(m.cached(), 0)
    await assert.rejects(m.set('x'.repeat(2000), {}, 1000), code('ERR_INVALID_ID', RangeError))
    assert.equal(await m.get('x'.repeat(2000)), null)
  } finally {
    await m.close()
    await inner.close()
  }
})

for (const name of ['memory', 'file', 'redis']) {
  test(`close() with a lock held (${name}) ends the lock's renewals: nothing throws afterwards`, async () => {
    const s = stores()[name].make()
    const lock = await s.lock('held', { ttlMs: 150 })
    await s.close()
    assert.equal(lock.released, true)
    await sleep(400) // several renewal periods: an uncaught error would fail this test file
    await assert.rejects(s.get('held'), code('ERR_STORE_CLOSED'))
  })
}

test("Redis with prefix '': a session id never names a lock key, and held locks are not sessions", async () => {
  const prefix = ''
  const r = await startRedis()
  const s = rs.redis({ url: r.url, prefix })
  const other = rs.redis({ url: r.url, prefix })
  try {
    const lock = await s.lock('victim', { waitMs: 0 })
    await other.set('lock:victim', { evil: true }, 60_000)
    await other.remove('lock:victim')
    await assert.rejects(other.lock('victim', { waitMs: 100 }), code('ERR_LOCK_TIMEOUT'), 'the lock is still held')
    assert.equal(await s.length(), 0, 'a held lock is not a session')
    assert.deepEqual(await s.ids(), [])
    await lock.release()
  } finally {
    await s.close()
    await other.close()
    await r.stop()
  }
})

test('connection errors name the backend and its address; a server that does not speak RESP is named as such', async () => {
  const down = rs.redis({ port: 1, commandTimeoutMs: 500 })
  await assert.rejects(down.get('a'), (e) => e.code === 'ERR_STORE_UNAVAILABLE' && /^Redis at 127\.0\.0\.1:1: /.test(e.message))
  await down.close()
  const d = rs.daemon({ port: 1, commandTimeoutMs: 500 })
  await assert.rejects(d.get('a'), (e) => e.code === 'ERR_STORE_UNAVAILABLE' && /^rs-store daemon at 127\.0\.0\.1:1: /.test(e.message))
  await d.close()
  const http = net.createServer((c) => c.end('HTTP/1.1 400 Bad Request\r\n\r\n'))
  await new Promise((r) => http.listen(0, '127.0.0.1', r))
  const wrong = rs.redis({ port: http.address().port, commandTimeoutMs: 1000 })
  await assert.rejects(wrong.get('a'), (e) => e.code === 'ERR_STORE_UNAVAILABLE' && /not RESP \(is it a Redis server\?\)/.test(e.message))
  await wrong.close()
  http.close()
})

test('object storage: a bucket that does not exist is a configuration error that names it', async () => {
  const S3rver = require('s3rver')
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: tmp('s3rver'), configureBuckets: [{ name: 'there' }] })
  const { port } = await s3.run()
  const cfg = { provider: 'amazon', keyId: 'S3RVER', key: 'S3RVER', endpoint: `http://127.0.0.1:${port}`, container: 'not-there' }
  const sessions = rs.objectStore(cfg)
  const modules = rs.moduleStore(cfg)
  try {
    const missing = (e) => e.code === 'ERR_INVALID_OPTION' && /"not-there" does not exist/.test(e.message)
    await assert.rejects(sessions.get('a'), missing)
    await assert.rejects(sessions.set('a', {}, 1000), missing)
    await assert.rejects(modules.getStoreFile('x.txt'), missing)
    await assert.rejects(modules.putStoreFile('x.txt', 'x'), missing)
    const fine = rs.objectStore({ ...cfg, container: 'there' })
    assert.equal(await fine.get('a'), null)
    await fine.close()
  } finally {
    await sessions.close()
    await s3.close()
  }
})

test('daemon: a request of millions of empty arguments costs bounded memory and is refused; others are served meanwhile', async () => {
  const d = await startDaemon(0)
  const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${d.child.pid}/status`, 'utf8'))[1])
  const client = rs.daemon(d.port)
  try {
    await client.set('a', { n: 1 }, 60_000)
    const before = rssKiB()
    // 10M empty bulk strings (60 MB) announced; the daemon cuts the request off
    const sock = net.connect(d.port, '127.0.0.1')
    await new Promise((r) => sock.once('connect', r))
    let answer = ''
    sock.on('data', (b) => (answer += b))
    const closed = new Promise((r) => sock.once('close', r))
    sock.on('error', () => {})
    const chunk = Buffer.from('$0\r\n\r\n'.repeat(100_000))
    sock.write(`*10000000\r\n`)
    let peak = before
    for (let i = 0; i < 100 && !sock.destroyed; i++) {
      if (!sock.write(chunk)) await new Promise((r) => (sock.once('drain', r), sock.once('close', r)))
      if (i % 10 === 0) {
        peak = Math.max(peak, rssKiB())
        assert.deepEqual(await client.get('a'), { n: 1 }, 'another client is served')
      }
    }
    await closed
    peak = Math.max(peak, rssKiB())
    assert.match(answer, /ERR_SESSION_TOO_LARGE/)
    assert.ok(peak - before < 120 * 1024, `the daemon grew ${Math.round((peak - before) / 1024)} MiB`)
  } finally {
    await client.close()
    await d.stop()
  }
})

test('memory stores: creating and closing many of them does not grow the process (even in a loop that never yields)', async () => {
  const script = `
    const rs = require(${JSON.stringify(path.join(__dirname, '..'))})
    ;(async () => {
      const rss = () => process.memoryUsage().rss
      for (let i = 0; i < 5000; i++) { const s = rs.memory(); await s.set('a', { i }); await s.close() }
      const start = rss()
      for (let i = 0; i < 40000; i++) { const s = rs.memory(); await s.set('a', { i }); await s.close() }
      console.log(Math.round((rss() - start) / 1048576))
    })()`
  const grew = Number(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 }).trim())
  // Before: +105 MiB over 40,000 cycles (a thread, a report callback and the
  // sessions of each closed store waited for the GC and the event loop).
  assert.ok(grew < 40, `RSS grew ${grew} MiB over 40,000 create/close cycles`)
})
