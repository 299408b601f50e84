'use strict'
// The session daemon (bin/rs-store-daemon.js) as users run it: a separate OS
// process on a loopback port or a UNIX socket, reached with rs.daemon() and
// with redis-cli.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, execFile } = require('node:child_process')
const { promisify } = require('node:util')
const rs = require('..')
const { waitFor, sleep } = require('./support/redis-servers')
const { startDaemon, BIN } = require('./support/daemon')
const { counterRace, lockHolder, checkAdd } = require('./support/counter-race')

const DAY_MS = 86_400_000
const tmp = (name) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-${name}-`))

const cli = async (port, ...args) => (await promisify(execFile)('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 })).stdout.trim()

test('daemon: the store shape over a storage daemon; redis-cli speaks to it; hostile ids stay inside the storage dir', async () => {
  const dir = tmp('daemon-store')
  const d = await startDaemon(0, dir)
  const s = rs.daemon(d.port)
  try {
    assert.equal(await cli(d.port, 'ping'), 'PONG')
    await s.set('a', { user: 'ada', n: 1 }, 60_000)
    assert.deepEqual(await s.get('a'), { user: 'ada', n: 1 })
    assert.equal(await s.exists('a'), true)
    assert.equal(await s.ttl('a'), 60)
    await s.update('a', 120_000)
    assert.equal(await s.ttl('a'), 120)
    assert.equal(await s.get('missing'), null)
    assert.equal(await s.ttl('missing'), -2)
    // hostile ids are just keys: stored under hashed file names in dir
    for (const id of ['../escape', 'a/b', 'nul\0id', '..']) await s.set(id, { id }, 60_000)
    for (const id of ['../escape', 'a/b', 'nul\0id', '..']) assert.deepEqual(await s.get(id), { id })
    assert.ok(fs.readdirSync(dir).every((f) => /^([0-9a-f]{64}\.sess|\.rs-store-gens|\.rs-store-writers)$/.test(f)), fs.readdirSync(dir).join())
    assert.ok(!fs.existsSync(path.join(path.dirname(dir), 'escape')))
    await assert.rejects(s.set('x'.repeat(2000), {}, 1000), (e) => e.code === 'ERR_INVALID_ID')
    assert.equal(await s.length(), 5)
    assert.equal(await cli(d.port, 'dbsize'), '5')
    assert.equal((await cli(d.port, '--scan', '--pattern', 'a*')).split('\n').sort().join(), 'a,a/b')
    assert.equal(JSON.parse(await cli(d.port, 'get', 'a')).user, 'ada', 'values are the JSON sessions')
    assert.match(await cli(d.port, 'set', 'k'), /wrong number of arguments/)
    // SET … NX, as Redis answers it; add() over it, two clients racing
    assert.equal(await cli(d.port, 'set', 'nx', 'v1', 'NX', 'PX', '60000'), 'OK')
    assert.equal(await cli(d.port, 'set', 'nx', 'v2', 'NX'), '')
    assert.equal(await cli(d.port, 'get', 'nx'), 'v1')
    // SET … XX (replace) writes only over a live value
    assert.equal(await cli(d.port, 'set', 'nx', 'v3', 'XX'), 'OK')
    assert.equal(await cli(d.port, 'set', 'missing', 'v', 'XX'), '')
    assert.equal(await cli(d.port, 'exists', 'missing'), '0')
    assert.match(await cli(d.port, 'set', 'nx', 'v4', 'KEEPTTL'), /only NX, XX, PX or EX/)
    await cli(d.port, 'del', 'nx')
    const other = rs.daemon(d.port)
    await checkAdd([s, other])
    await other.close()
    assert.deepEqual((await s.all()).length, 5)
    assert.equal(await s.remove('a'), true)
    assert.equal(await s.get('a'), null)
    assert.equal(await s.clear(), 4)
    assert.equal(await s.length(), 0)
    // calls on one id apply in call order when not awaited
    const p = [s.set('o', { v: 1 }, 60_000), s.get('o'), s.remove('o'), s.get('o'), s.update('o', 60_000), s.get('o')]
    const r = await Promise.all(p)
    assert.deepEqual([r[1], r[3], r[5]], [{ v: 1 }, null, null])
    // encryption at rest works through the daemon like anywhere else
    const enc = rs.daemon({ port: d.port, prefix: 'enc:', secret: 's'.repeat(64) })
    await enc.set('e', { token: 'plaintext-marker' }, 60_000)
    assert.deepEqual(await enc.get('e'), { token: 'plaintext-marker' })
    assert.ok(!(await cli(d.port, 'get', 'enc:e')).includes('plaintext-marker'))
    await enc.close()
  } finally {
    await s.close()
    await d.stop()
  }
})

test('daemon: a restart with a storage dir keeps sessions (a 30-day expiry too); clients fail fast while it is down and reconnect by themselves', { timeout: 60_000 }, async () => {
  const dir = tmp('daemon-restart')
  let d = await startDaemon(0, dir)
  const port = d.port
  const s = rs.daemon({ port, commandTimeoutMs: 1000, connectTimeoutMs: 1000 })
  try {
    await s.set('month', { stay: true }, 30 * DAY_MS)
    await s.set('short', { gone: true }, 200)
    const t0 = Date.now()
    assert.equal(await d.stop('SIGTERM'), 0, 'SIGTERM stops the daemon cleanly')
    await assert.rejects(s.get('month'), (e) => e.code === 'ERR_STORE_UNAVAILABLE')
    assert.ok(Date.now() - t0 < 3000, 'no call waits past its timeout')
    await sleep(300)
    d = await startDaemon(port, dir)
    let back
    await waitFor('client reconnected', async () => (back = await s.get('month').catch(() => undefined)) !== undefined)
    assert.deepEqual(back, { stay: true })
    const ttl = await s.ttl('month')
    assert.ok(ttl > 30 * 86_400 - 60 && ttl <= 30 * 86_400, `30 days survive: ${ttl} s`)
    assert.equal(await s.get('short'), null, 'expired while down: gone')
    // a daemon without a storage dir keeps sessions in memory only
    await d.stop('SIGKILL')
    d = await startDaemon(port)
    await waitFor('client reconnected', async () => (await s.get('month').catch(() => undefined)) === null)
  } finally {
    await s.close()
    await d.stop()
  }
})

test('daemon locks: one holder across clients, freed when the holder disconnects or dies; --lock mode on a UNIX socket as another store\'s lockManager', { timeout: 60_000 }, async () => {
  const sock = path.join(tmp('daemon-sock'), 'locks.sock')
  const d = await startDaemon('--lock', sock)
  assert.equal(d.address, sock)
  assert.equal(fs.statSync(sock).mode & 0o777, 0o600, 'the socket is private to its user')
  const a = rs.daemon({ socket: sock })
  const b = rs.daemon(sock)
  try {
    // the original kept locks per connection, so two clients could both hold one
    const held = await a.lock('s1', { ttlMs: 60_000 })
    await assert.rejects(b.lock('s1', { waitMs: 100 }), (e) => e.code === 'ERR_LOCK_TIMEOUT')
    await held.release()
    const mine = await b.lock('s1', { waitMs: 100 })
    await mine.release()
    // a holder process killed while holding: its connection closes, the lock goes with it
    const holder = await lockHolder(`rs.daemon({ socket: ${JSON.stringify(sock)} })`, 's2', { ttlMs: 600_000 })
    await assert.rejects(a.lock('s2', { waitMs: 100 }), (e) => e.code === 'ERR_LOCK_TIMEOUT')
    holder.kill('SIGKILL')
    const t0 = Date.now()
    const taken = await a.lock('s2', { waitMs: 5000 })
    assert.ok(Date.now() - t0 < 2000, 'freed on disconnect, long before its 10-minute ttl')
    await taken.release()
    // a lock daemon keeps no sessions
    await assert.rejects(a.set('x', {}, 1000), (e) => e.code === 'ERR_INVALID_OPTION' && /locks only/.test(e.message))
    // ...but lends its locks to a store that has the data (HTTP Sessions' DaemonLockManager)
    const data = rs.memory({ lockManager: b })
    await data.set('sess', { n: 0 }, 60_000)
    const l = await data.lock('sess')
    await assert.rejects(a.lock('sess', { waitMs: 50 }), (e) => e.code === 'ERR_LOCK_TIMEOUT', 'the daemon holds it')
    await data.write(l, { n: 1 }, Date.now() + 60_000, true)
    assert.deepEqual(await data.read('sess'), { n: 1 })
    await (await a.lock('sess', { waitMs: 100 })).release()
    assert.throws(() => rs.memory({ lockManager: {} }), (e) => e.code === 'ERR_INVALID_OPTION')
    await data.close()
  } finally {
    await a.close()
    await b.close()
    await d.stop()
  }
  assert.ok(!fs.existsSync(sock), 'the socket file is removed on stop')
})

test('daemon locks: two OS processes × 5,000 locked cycles through the daemon lose nothing; without locks they do', { timeout: 300_000 }, async () => {
  const d = await startDaemon(0, tmp('daemon-count'))
  const setup = rs.daemon(d.port)
  const run = (locked, cycles) => counterRace(`rs.daemon(${d.port})`, setup, { locked, cycles })
  try {
    assert.equal(await run(true, 5000), 10_000, 'exact with the daemon lock manager')
    assert.ok((await run(false, 2000)) < 4000, 'without locks, updates are lost')
  } finally {
    await setup.close()
    await d.stop()
  }
})

test('daemon CLI: usage errors, a port in use and a live socket are refused with a clear message; oversized values are refused and the daemon stays up', async () => {
  const usage = spawn(process.execPath, [BIN], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  usage.stderr.on('data', (x) => (err += x))
  assert.equal(await new Promise((r) => usage.once('exit', r)), 2)
  assert.match(err, /usage: rs-store-daemon/)
  const d = await startDaemon(0)
  try {
    const again = spawn(process.execPath, [BIN, String(d.port)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    again.stderr.on('data', (x) => (out += x))
    assert.equal(await new Promise((r) => again.once('exit', r)), 1)
    assert.match(out, /ERR_STORE_IO: cannot listen on 127\.0\.0\.1/)
  } finally {
    await d.stop()
  }
  // a socket file of a live daemon is not taken over; a stale one (daemon killed) is
  const sock = path.join(tmp('daemon-live'), 'd.sock')
  const live = await startDaemon(sock)
  try {
    const second = spawn(process.execPath, [BIN, sock], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    second.stderr.on('data', (x) => (out += x))
    assert.equal(await new Promise((r) => second.once('exit', r)), 1)
    assert.match(out, /another daemon is listening/)
    await live.stop('SIGKILL')
    assert.ok(fs.existsSync(sock), 'a killed daemon leaves its socket file')
    const next = await startDaemon(sock)
    await next.stop()
  } finally {
    await live.stop()
  }
  // oversized values: refused with a code; a request too large to read is cut off
  const small = await startDaemon('--max-value-bytes', 1000, 0)
  const c = rs.daemon({ port: small.port, commandTimeoutMs: 2000 })
  try {
    await c.set('ok', { pad: 'x'.repeat(500) }, 60_000)
    await assert.rejects(c.set('big', { pad: 'x'.repeat(2000) }, 60_000), (e) => e.code === 'ERR_SESSION_TOO_LARGE')
    await assert.rejects(c.set('huge', { pad: 'x'.repeat(20_000) }, 60_000), (e) => e.code === 'ERR_SESSION_TOO_LARGE' || e.code === 'ERR_STORE_UNAVAILABLE')
    assert.equal(small.child.exitCode, null, 'the daemon is still up')
    let back
    await waitFor('client reconnected', async () => (back = await c.get('ok').catch(() => null)) !== null)
    assert.equal(back.pad.length, 500, 'stored data intact')
    assert.equal(await c.get('big'), null)
    assert.equal(await c.get('huge'), null)
  } finally {
    await c.close()
    await small.stop()
  }
  assert.throws(() => rs.daemon({}), (e) => e.code === 'ERR_INVALID_OPTION')
  assert.throws(() => rs.daemon({ port: 1, socket: '/x' }), (e) => e.code === 'ERR_INVALID_OPTION')
})
