'use strict'
// Per-user sessions on the session daemon beyond the matrix of
// users.test.js: two client processes on one daemon (memory and storage
// dir), and the daemon's per-user commands given bad input (coded errors,
// stored data intact).
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const net = require('node:net')
const crypto = require('node:crypto')
const { spawn, execFile } = require('node:child_process')
const { promisify } = require('node:util')
const rs = require('..')
const { startDaemon } = require('./support/daemon')

const userOf = (s) => s.user
const ids = async (store, user) => (await store.sessionsOf(user)).map((s) => s.id).sort()
const HOUR = 3_600_000
const cli = async (port, ...args) => (await promisify(execFile)('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 })).stdout.trim()

/** Sends one request (an array of bulk strings) on a fresh connection; resolves its one-line reply. */
function raw(port, args) {
  const parts = [`*${args.length}\r\n`]
  for (const a of args) parts.push(`$${Buffer.byteLength(a)}\r\n`, a, '\r\n')
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.end(parts.join('')))
    let answer = ''
    sock.on('data', (b) => {
      answer += b
      if (answer.endsWith('\r\n')) resolve(answer.trim()), sock.destroy()
    })
    sock.once('error', reject)
    sock.once('close', () => resolve(answer.trim()))
  })
}
/** The daemon process's peak resident memory (VmHWM) in MiB. */
const peakMiB = (d) => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${d.child.pid}/status`, 'utf8'))[1]) / 1024

/** A child process running `body` with `s`, a daemon store made with `cfg` (and userOf); `say(x)` prints a JSON line. */
function child(cfg, body) {
  const code = `const rs = require(${JSON.stringify(path.join(__dirname, '..'))})
    const s = rs.daemon({ ...${JSON.stringify(cfg)}, userOf: (x) => x.user })
    const say = (x) => process.stdout.write(JSON.stringify(x) + '\\n')
    let stop = false
    process.stdin.on('data', () => (stop = true))
    ;(async () => { ${body} })().then(() => s.close()).then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })`
  const proc = spawn(process.execPath, ['-e', code], { stdio: ['pipe', 'pipe', 'inherit'] })
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
  const next = async () => {
    while (lines.length === 0) await new Promise((r) => waiters.push(r))
    return lines.shift()
  }
  return { next, exited, stop: () => proc.stdin.end('stop\n') }
}

for (const storage of ['memory', 'storage dir']) {
  test(`daemon (${storage}), two processes: 20 + 20 concurrent logins of one user leave exactly n; a revocation racing the other process's replaces brings none back`, { timeout: 120_000 }, async () => {
    const dir = storage === 'memory' ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'rs-users-daemon-'))
    const d = await startDaemon(0, ...(dir ? [dir] : []))
    try {
      // The cap: 20 logins of ada in each process at once.
      const cfg = { port: d.port, prefix: 'cap:', maxSessionsPerUser: 5 }
      const store = rs.daemon({ ...cfg, userOf })
      const other = child(cfg, `say('ready'); await new Promise((r) => process.stdin.once('data', r));
        await Promise.all(Array.from({ length: 20 }, (_, i) => s.set('c' + i, { user: 'ada', i }, 3600000))); say('done')`)
      assert.equal(await other.next(), 'ready')
      other.stop() // the go: both log in at once
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`p${i}`, { user: 'ada', i }, HOUR)))
      assert.equal(await other.next(), 'done')
      assert.equal(await other.exited, 0)
      const left = await store.sessionsOf('ada')
      assert.equal(left.length, 5, JSON.stringify(left.map((s) => s.id)))
      assert.equal(await store.length(), 5, 'the others were removed, not just unlisted')
      await store.close()

      // The revocation: the child replaces and updates bob's 30 sessions round after round.
      const open = rs.daemon({ port: d.port, prefix: 'race:', userOf })
      const n = 30
      for (let i = 0; i < n; i++) await open.set(`b${i}`, { user: 'bob', i }, HOUR)
      const writer = child({ port: d.port, prefix: 'race:' }, `let round = 0
        while (!stop) {
          await Promise.all(Array.from({ length: ${n} }, (_, i) => round % 2 ? s.replace('b' + i, { user: 'bob', i, round }, 3600000) : s.update('b' + i, 3600000)))
          if (round++ === 1) say('started')
        }
        say(await Promise.all(Array.from({ length: ${n} }, (_, i) => s.replace('b' + i, { user: 'bob', i, last: true }, 3600000))))`)
      assert.equal(await writer.next(), 'started')
      assert.equal(await open.revokeUser('bob'), n)
      for (let i = 0; i < n; i++) assert.equal(await open.get(`b${i}`), null, `b${i} stays revoked`)
      writer.stop()
      assert.deepEqual(await writer.next(), Array(n).fill(false), "the child's replaces after the revocation answer false")
      assert.equal(await writer.exited, 0)
      for (let i = 0; i < n; i++) assert.equal(await open.get(`b${i}`), null)
      assert.deepEqual(await open.sessionsOf('bob'), [])
      assert.equal(await open.length(), 0)
      await open.close()
    } finally {
      await d.stop()
      if (dir) fs.rmSync(dir, { recursive: true, force: true })
    }
  })
}

test('daemon: bad input to the per-user commands answers a coded error and leaves stored data intact', async () => {
  const d = await startDaemon(0)
  const store = rs.daemon({ port: d.port, prefix: 'p:', userOf, maxSessionsPerUser: 3 })
  try {
    await store.set('a', { user: 'ada', n: 1 }, HOUR)
    await store.set('b', { user: 'ada', n: 2 }, HOUR)
    const before = await cli(d.port, 'get', 'p:a')
    for (const [args, code] of [
      [['uwrite', 'p:', 'a'], /wrong number of arguments for 'uwrite'/],
      [['uwrite', 'p:', 'a', 'v', 'x', '', 'k', '', '', 'extra'], /wrong number of arguments/],
      [['uwrite', 'p:', 'a', 'v', 'soon', '', 'k', '', ''], /^ERR_INVALID_TIMEOUT/],
      [['uwrite', 'p:', 'a', 'v', '0', '', 'k', '', ''], /^ERR_INVALID_TIMEOUT/],
      [['uwrite', 'p:', 'a', 'v', '-5', '', 'k', '', ''], /^ERR_INVALID_TIMEOUT/],
      [['uwrite', 'p:', 'a', 'v', '1000', 'KEEPTTL', 'k', '', ''], /^ERR_INVALID_ARGUMENT/],
      [['uwrite', 'p:', 'a', 'v', '1000', '', 'x', '', ''], /^ERR_INVALID_ARGUMENT/],
      [['uwrite', 'p:', 'a', 'v', '1000', '', 'u', '', ''], /^ERR_INVALID_ARGUMENT/],
      [['uwrite', 'p:', 'a', 'v', '1000', 'XX', 'uada', '1.5', ''], /^ERR_INVALID_OPTION/],
      [['uwrite', 'p:', 'a', 'v', '1000', 'XX', 'uada', '', '0'], /^ERR_INVALID_OPTION/],
      [['uwrite', 'p:', 'a', 'v', '1000', 'XX', 'uada', '', String(2 ** 32)], /^ERR_INVALID_OPTION/],
      [['uwrite', 'p:', '', 'v', '1000', '', 'uada', '', ''], /^ERR_INVALID_ID/],
      [['sessionsof', 'p:'], /wrong number of arguments/],
      [['sessionsof', 'p:', ''], /^ERR_INVALID_ARGUMENT/],
      [['revokeuser', 'p:'], /wrong number of arguments/],
      [['revokeuser', 'p:', 'ada', ''], /^ERR_INVALID_ID/],
      [['rotate', 'p:', 'a'], /wrong number of arguments/],
      [['rotate', 'p:', 'a', 'z', 'digest'], /wrong number of arguments/],
      [['rotate', 'p:', 'a', 'z', 'not-hex', 'v'], /^ERR_INVALID_ARGUMENT/],
      [['rotate', 'p:', 'a', 'x'.repeat(5000)], /^ERR_INVALID_ID/],
    ]) {
      assert.match(await cli(d.port, ...args), code, args.join(' '))
    }
    // A digest of another value: the session changed since it was read (-1), nothing moved.
    assert.equal(await cli(d.port, 'rotate', 'p:', 'a', 'z', '0'.repeat(64), 'v'), '-1')
    assert.equal(await cli(d.port, 'get', 'p:a'), before, 'stored data intact')
    assert.equal(await cli(d.port, 'exists', 'p:z'), '0')
    assert.deepEqual(await ids(store, 'ada'), ['a', 'b'])
    assert.deepEqual(await store.get('a'), { user: 'ada', n: 1 })
    // The commands as redis-cli gives them work too, and clients of another prefix see other users.
    assert.equal(await cli(d.port, 'uwrite', 'q:', 'a', '{"user":"ada"}', '60000', '', 'uada', '', ''), '1')
    assert.deepEqual(await ids(store, 'ada'), ['a', 'b'])
    assert.equal(await cli(d.port, 'revokeuser', 'q:', 'ada'), '1')
    assert.deepEqual(await ids(store, 'ada'), ['a', 'b'])
  } finally {
    await store.close()
    await d.stop()
  }
})

for (const storage of ['memory', 'storage dir']) {
  test(`daemon (${storage}): the ids REVOKEUSER keeps are bounded with the prefix each key repeats: many one-byte ids under a long prefix answer ERR_INVALID_ARGUMENT without the daemon growing with them; a long list under a short prefix is served; data intact`, { timeout: 120_000 }, async (t) => {
    const dir = storage === 'memory' ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'rs-users-daemon-'))
    const limit = 1024 * 1024
    const d = await startDaemon('--max-value-bytes', limit, 0, ...(dir ? [dir] : []))
    const store = rs.daemon({ port: d.port, prefix: 'p:', userOf })
    try {
      // ~150k one-byte ids under a 4095-byte prefix fill one request (~1 MiB);
      // each built as prefix + id, they were ~600 MiB (before any storage call).
      const prefix = 'P'.repeat(4095)
      assert.equal(await raw(d.port, ['UWRITE', prefix, 'a', '{"user":"ada"}', '3600000', '', 'uada', '', '']), ':1')
      const attack = ['REVOKEUSER', prefix, 'ada', ...Array(150_000).fill('x')]
      const before = peakMiB(d)
      const answers = await Promise.all([1, 2, 3].map(() => raw(d.port, attack)))
      const grew = peakMiB(d) - before
      t.diagnostic(`peak RSS ${Math.round(before)} -> ${Math.round(before + grew)} MiB`)
      assert.ok(grew < 200, `the daemon's peak RSS grew ${Math.round(grew)} MiB over 3 such requests at once`)
      for (const a of answers) assert.match(a, /^-ERR_INVALID_ARGUMENT the ids to keep, each with the prefix, are at most 1048576 bytes/)
      assert.equal(await raw(d.port, ['GET', prefix + 'a']), '$14\r\n{"user":"ada"}', 'stored data intact')
      assert.match(await raw(d.port, ['SESSIONSOF', prefix, 'ada']), /^\*3\r\n\$1\r\na\r\n/)
      // A long list of real-looking ids under a short prefix fits and is served.
      for (const id of ['a', 'b', 'c']) await store.set(id, { user: 'ada' }, HOUR)
      const junk = Array.from({ length: 60_000 }, (_, i) => `k${i}`)
      assert.equal(await store.revokeUser('ada', { except: [...junk, 'b'] }), 2)
      assert.deepEqual(await ids(store, 'ada'), ['b'])
      assert.equal(await store.length(), 1)
      assert.equal(await raw(d.port, ['DBSIZE']), ':2', "b, and the long prefix's a")
    } finally {
      await store.close()
      await d.stop()
      if (dir) fs.rmSync(dir, { recursive: true, force: true })
    }
  })
}

test('daemon: ROTATE holds the value for the new id to --max-value-bytes as every write', async () => {
  const d = await startDaemon('--max-value-bytes', 1000, 0)
  try {
    const sha = crypto.createHash('sha256').update('v').digest('hex')
    assert.equal(await cli(d.port, 'set', 'p:a', 'v'), 'OK')
    // within the request's bound (it leaves room for two keys), over the value's
    assert.match(await cli(d.port, 'rotate', 'p:', 'a', 'z', sha, 'x'.repeat(1001)), /^ERR_SESSION_TOO_LARGE values are at most 1000 bytes/)
    assert.equal(await cli(d.port, 'get', 'p:a'), 'v', 'stored data intact')
    assert.equal(await cli(d.port, 'exists', 'p:z'), '0')
    assert.equal(await cli(d.port, 'rotate', 'p:', 'a', 'z', sha, 'y'.repeat(1000)), '1', 'at the limit it moves')
    assert.equal(await cli(d.port, 'get', 'p:z'), 'y'.repeat(1000))
    assert.equal(await cli(d.port, 'exists', 'p:a'), '0')
  } finally {
    await d.stop()
  }
})
