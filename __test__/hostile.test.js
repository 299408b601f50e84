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
