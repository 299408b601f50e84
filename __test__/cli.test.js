'use strict'
// The `rs-store` CLI (bin/rs-store.js) as operators run it: a separate
// process against real backends (redis-server, the daemon, files,
// sessions.json, a local object-store directory, s3rver), with data the real
// connect-redis and session-file-store wrote.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const rs = require('..')
const { startRedis, sleep, waitFor } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')

const BIN = path.join(__dirname, '../bin/rs-store.js')
const tmp = (name) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-cli-${name}-`))
const SECRET = 'the secret of an encrypted store for the CLI test, 64 chars or more'

/** Runs the CLI; resolves { code, out, err, ms }. */
function cli(args, { input, env } = {}) {
  return new Promise((resolve) => {
    const t = Date.now()
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.stdin.end(input ?? '')
    child.once('exit', (code) => resolve({ code, out, err, ms: Date.now() - t }))
  })
}
const ok = async (args, opts) => {
  const r = await cli(args, opts)
  assert.equal(r.code, 0, `rs-store ${args.join(' ')}: ${r.err}`)
  return r
}
const json = async (args, opts) => JSON.parse((await ok([...args, '--json'], opts)).out)

const servers = redisAndDaemon(test)

test('cli: every command on Redis, with --json output for scripts', async () => {
  const R = servers.redis.url
  const P = ['--prefix', 'c1:']
  // ttls count down while the CLI processes start (seconds each on a busy machine)
  const near = (t, want, since) => assert.ok(t <= want && t >= want - Math.ceil((Date.now() - since) / 1000) - 1, `ttl ${t}, wanted ${want}`)
  const setAt = Date.now()
  await ok(['set', R, 'ada', '{"user":"ada","n":1}', '--ttl', '600', ...P])
  await ok(['set', R, 'bob', '-', '--ttl', '7200', ...P], { input: '{"user":"bob"}' })
  assert.deepEqual(JSON.parse((await ok(['get', R, 'ada', ...P])).out), { user: 'ada', n: 1 })
  assert.deepEqual(await json(['get', R, 'bob', ...P]), { user: 'bob' })
  const ls = await json(['ls', R, ...P])
  assert.deepEqual(ls.map((s) => s.id).sort(), ['ada', 'bob'])
  near(ls.find((s) => s.id === 'ada').ttl, 600, setAt)
  assert.ok(ls.every((s) => s.decodes && s.bytes > 10))
  assert.deepEqual((await json(['ls', R, '--match', 'a*', ...P])).map((s) => s.id), ['ada'])
  assert.equal((await json(['ls', R, '--limit', '1', ...P])).length, 1)
  assert.match((await ok(['ls', R, ...P])).out, /^ada\s+(10|9)m\s+20 B$/m, 'ttl 600 s, less what passed')
  near((await json(['ttl', R, 'ada', ...P])).ttl, 600, setAt)
  const expireAt = Date.now()
  await ok(['expire', R, 'ada', '1200', ...P])
  near(Number((await ok(['ttl', R, 'ada', ...P])).out), 1200, expireAt)
  assert.equal((await json(['count', R, ...P])).count, 2)
  const st = await json(['stats', R, ...P])
  assert.equal(st.count, 2)
  assert.equal(st.largest.id, 'ada')
  assert.equal(st.ttl['< 1 hour'], 1)
  assert.equal(st.ttl['< 1 day'], 1)
  // missing things: exit 1 with a code
  const missing = await cli(['get', R, 'nobody', ...P])
  assert.equal(missing.code, 1)
  assert.match(missing.err, /ERR_NOT_FOUND/)
  assert.equal((await cli(['expire', R, 'nobody', '5', ...P])).code, 1)
  assert.equal((await json(['rm', R, 'bob', 'nobody', ...P])).removed, 1)
  // export and import: NDJSON {id, ttlMs, session}, ttl kept
  const file = path.join(tmp('export'), 'out.ndjson')
  assert.equal((await json(['export', R, file, ...P])).exported, 1)
  const line = JSON.parse(fs.readFileSync(file, 'utf8').trim())
  assert.deepEqual(line.session, { user: 'ada', n: 1 })
  // ttls count down from `expire` while the CLI processes start (seconds each on a busy machine)
  assert.ok(line.ttlMs <= 1_200_000 && line.ttlMs >= 1_200_000 - (Date.now() - expireAt) - 1000, `ttlMs ${line.ttlMs}`)
  assert.equal(JSON.parse((await ok(['export', R, ...P])).out.trim()).id, 'ada', 'to stdout')
  assert.equal((await json(['import', R, file, '--prefix', 'c2:'])).imported, 1)
  near((await json(['ttl', R, 'ada', '--prefix', 'c2:'])).ttl, 1200, expireAt)
  const piped = await json(['import', R, '--prefix', 'c3:'], { input: '{"id":"x","ttlMs":-1,"session":{"a":1}}\n{"id":"old","ttlMs":0,"session":{}}\n' })
  assert.deepEqual(piped, { imported: 1, expired: 1 })
  const bad = await cli(['import', R, '--prefix', 'c4:'], { input: '{"id":"y","ttlMs":60000,"session":{}}\nnot json\n' })
  assert.equal(bad.code, 1)
  assert.match(bad.err, /^rs-store: ERR_NOT_SERIALIZABLE: line 2 is not JSON/, 'one coded line, not an unhandled rejection')
  assert.doesNotMatch(bad.err, /\n\s+at /, 'no stack trace')
  assert.equal((await json(['ttl', R, 'x', '--prefix', 'c3:'])).ttl, -1)
  // clear: refused without --yes when nobody can confirm, --dry-run lists
  const refused = await cli(['clear', R, ...P])
  assert.equal(refused.code, 2)
  assert.match(refused.err, /--yes/)
  assert.equal((await json(['count', R, ...P])).count, 1, 'nothing removed')
  assert.equal((await json(['clear', R, '--dry-run', ...P])).wouldRemove, 1)
  assert.equal((await json(['clear', R, '--yes', ...P])).removed, 1)
  assert.equal((await json(['count', R, ...P])).count, 0)
})

test('cli: usage errors exit 2, --help on every command, --version names the binary', async () => {
  for (const args of [['frob'], ['ls'], ['get', servers.redis.url], ['ls', servers.redis.url, '--nope'], ['ls', 'nokind:x'], []]) {
    const r = await cli(args)
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`)
  }
  for (const c of ['ls', 'get', 'set', 'rm', 'ttl', 'expire', 'count', 'stats', 'clear', 'export', 'import', 'migrate', 'watch']) {
    const r = await ok([c, '--help'])
    assert.match(r.out, new RegExp(`usage: rs-store ${c} `))
    assert.match(r.out, /Example:\n {2}rs-store /)
  }
  const v = await json(['--version'])
  assert.equal(v.package, require('../package.json').version)
  assert.match(v.binary, /native\/rs-store\..*\.node|rs-store-/)
})

test('cli: a store that is down is a clear error within the timeout (exit 1)', async () => {
  const r = await cli(['ls', 'redis://127.0.0.1:1', '--timeout', '300'])
  assert.equal(r.code, 1)
  assert.match(r.err, /ERR_STORE_UNAVAILABLE: Redis at 127\.0\.0\.1:1/)
  assert.ok(r.ms < 5000, `${r.ms} ms`)
  const d = await cli(['count', 'daemon:1', '--timeout', '300'])
  assert.equal(d.code, 1)
  assert.match(d.err, /rs-store daemon at/)
})

test('cli: files, sessions.json, the daemon and object storage (a directory, S3) under the same commands', async () => {
  const S3rver = require('s3rver')
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: tmp('s3rver'), configureBuckets: [{ name: 'bucket' }] })
  const { port } = await s3.run()
  const s3env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_ENDPOINT: `http://127.0.0.1:${port}`, AWS_ALLOW_HTTP: 'true', AWS_VIRTUAL_HOSTED_STYLE_REQUEST: 'false' }
  const dir = tmp('files')
  const specs = [`file:${dir}`, `json:${path.join(tmp('json'), 'sessions.json')}`, `daemon:${servers.daemon.port}`, `dir:${tmp('objects')}`, 's3://bucket/tenant-a']
  try {
    for (const spec of specs) {
      const env = spec.startsWith('s3:') ? s3env : {}
      for (const id of ['one', 'two', '../../etc/passwd']) await ok(['set', spec, id, `{"id":${JSON.stringify(id)}}`, '--ttl', '300'], { env })
      assert.deepEqual((await json(['ls', spec], { env })).map((s) => s.id).sort(), ['../../etc/passwd', 'one', 'two'], spec)
      assert.deepEqual(await json(['get', spec, '../../etc/passwd'], { env }), { id: '../../etc/passwd' })
      assert.equal((await json(['count', spec], { env })).count, 3)
      assert.equal((await json(['stats', spec], { env })).count, 3)
      assert.equal((await json(['clear', spec, '--yes'], { env })).removed, 3)
    }
    assert.ok(fs.readdirSync(dir).every((f) => !f.includes('passwd')), 'ids never become paths')
    assert.ok(!fs.existsSync(path.join(dir, '..', '..', 'etc', 'passwd')) || !fs.readFileSync(path.join(dir, '..', '..', 'etc', 'passwd'), 'utf8').includes('"id"'))
    const r = await cli(['ls', `file:${path.join(dir, 'not-there')}`])
    assert.equal(r.code, 1)
    assert.equal(fs.existsSync(path.join(dir, 'not-there')), false, 'a typo creates nothing')
  } finally {
    await s3.close()
  }
})

test('cli: an encrypted store, without and with its secret (--secret-env)', async () => {
  const dir = tmp('secret')
  const s = rs.file({ dir, secret: SECRET })
  await s.set('enc', { card: '4111' }, 60_000)
  await s.close()
  const blind = await json(['ls', `file:${dir}`])
  assert.deepEqual(blind, [{ id: 'enc', ttl: blind[0].ttl, bytes: blind[0].bytes, decodes: false }])
  assert.match((await ok(['ls', `file:${dir}`])).out, /enc .*\(does not decode\)/)
  assert.equal((await cli(['get', `file:${dir}`, 'enc'])).code, 1)
  const env = { CLI_SECRET: SECRET }
  assert.deepEqual(await json(['get', `file:${dir}`, 'enc', '--secret-env', 'CLI_SECRET'], { env }), { card: '4111' })
  assert.equal((await json(['ls', `file:${dir}`, '--secret-env', 'CLI_SECRET'], { env }))[0].decodes, true)
  const unset = await cli(['ls', `file:${dir}`, '--secret-env', 'NOT_SET_ANYWHERE'])
  assert.equal(unset.code, 1)
  assert.match(unset.err, /NOT_SET_ANYWHERE/)
})

test('cli: migrate from what session-file-store and connect-redis wrote (the real packages), ttl kept', async () => {
  const session = require('express-session')
  const FileStore = require('session-file-store')(session)
  const sfsDir = tmp('sfs')
  const sfs = new FileStore({ path: sfsDir, ttl: 3600, logFn: () => {}, retries: 0 })
  const cookie = (ms) => ({ originalMaxAge: ms, expires: new Date(Date.now() + ms).toISOString(), httpOnly: true, path: '/' })
  const madeAt = Date.now()
  await new Promise((r, j) => sfs.set('sfs-1', { cookie: cookie(600_000), user: 'ada' }, (e) => (e ? j(e) : r())))
  await new Promise((r, j) => sfs.set('sfs-2', { cookie: { httpOnly: true, path: '/' }, user: 'bob' }, (e) => (e ? j(e) : r())))
  const moved = await json(['migrate', `session-file-store:${sfsDir}`, servers.redis.url, '--prefix', 'from-sfs:'])
  assert.deepEqual(moved, { migrated: 2, skipped: 0 })
  const R = rs.redis({ url: servers.redis.url, prefix: 'from-sfs:' })
  assert.equal((await R.get('sfs-1')).user, 'ada')
  const t1 = await R.ttl('sfs-1')
  // the CLI takes seconds to start on a busy machine: allow what passed
  assert.ok(t1 <= 600 && t1 >= 600 - Math.ceil((Date.now() - madeAt) / 1000) - 1, `cookie.expires kept (${t1})`)
  const t2 = await R.ttl('sfs-2')
  assert.ok(t2 > 3500 && t2 <= 3600, `__lastAccess + ttl kept (${t2})`)
  assert.equal((await R.get('sfs-2')).__lastAccess, undefined)
  await R.close()
  // connect-redis: plain JSON under sess:, read as it is
  const { RedisStore } = require('connect-redis')
  const { createClient } = require('redis')
  const client = createClient({ url: servers.redis.url })
  await client.connect()
  const cr = new RedisStore({ client, prefix: 'sess:' })
  await cr.set('cr-1', { cookie: cookie(900_000), user: 'grace' })
  await client.quit()
  const got = await json(['get', `connect-redis:${servers.redis.url}`, 'cr-1'])
  assert.equal(got.user, 'grace', 'rs-store reads connect-redis values as they are')
  assert.equal(got.cookie.originalMaxAge, 900_000)
  const dest = tmp('from-cr')
  assert.equal((await json(['migrate', `connect-redis:${servers.redis.url}`, `file:${dest}`, '--delete-source'])).migrated, 1)
  const f = rs.file({ dir: dest })
  assert.equal((await f.get('cr-1')).user, 'grace')
  assert.ok((await f.ttl('cr-1')) > 890)
  await f.close()
  assert.equal(await servers.redis.cli('exists', 'sess:cr-1'), '0', '--delete-source moved it')
})

test('cli: watch prints each change of a session as it happens', async () => {
  const R = rs.redis({ url: servers.redis.url, prefix: 'w:' })
  const child = spawn(process.execPath, [BIN, 'watch', servers.redis.url, 'x', '--prefix', 'w:', '--interval', '50', '--json'])
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  try {
    await waitFor('the first state', async () => out.split('\n').filter(Boolean).length >= 1)
    await R.set('x', { n: 1 }, 60_000)
    await waitFor('a change', async () => out.split('\n').filter(Boolean).length >= 2)
    await R.set('x', { n: 2 }, 60_000)
    await waitFor('another change', async () => out.split('\n').filter(Boolean).length >= 3)
    await sleep(200) // no change: nothing more printed
    const seen = out.split('\n').filter(Boolean).map((l) => JSON.parse(l).session)
    assert.deepEqual(seen, [null, { n: 1 }, { n: 2 }])
  } finally {
    child.kill()
    await R.close()
  }
})

test('cli: a 100,000-session migrate keeps every session and its ttl', { timeout: 300_000 }, async () => {
  const from = await startRedis()
  const to = await startRedis()
  try {
    const src = rs.redis({ url: from.url })
    const ttls = [60_000, 3_600_000, 86_400_000]
    const N = 100_000
    for (let i = 0; i < N; i += 1000) {
      await Promise.all(Array.from({ length: 1000 }, (_, k) => src.set(`s${i + k}`, { i: i + k }, ttls[(i + k) % 3])))
    }
    await src.close()
    const t = Date.now()
    const r = await json(['migrate', from.url, to.url])
    const ms = Date.now() - t
    assert.deepEqual(r, { migrated: N, skipped: 0 })
    const dst = rs.redis({ url: to.url })
    assert.equal(await dst.length(), N)
    for (const i of [0, 1, 2, 4242, 99_999]) {
      assert.deepEqual(await dst.get(`s${i}`), { i })
      const ttl = await dst.ttl(`s${i}`)
      const want = ttls[i % 3] / 1000
      assert.ok(ttl <= want && ttl > want - 60, `s${i}: ttl ${ttl}, wanted about ${want}`)
    }
    await dst.close()
    console.log(`# migrate Redis → Redis: ${N} sessions in ${ms} ms (${Math.round(N / (ms / 1000))}/s, process start included)`)
  } finally {
    await from.stop()
    await to.stop()
  }
})

test('cli: `rs-store daemon` stops with its daemon on SIGTERM and SIGINT (nothing left listening), two at once', async () => {
  const net = require('node:net')
  const refused = (port) =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => (s.destroy(), resolve(false)))
      s.once('error', () => resolve(true))
    })
  const start = async () => {
    const child = spawn(process.execPath, [BIN, 'daemon', '0', tmp('daemon-signal')], { stdio: ['ignore', 'pipe', 'pipe'] })
    let log = ''
    child.stdout.on('data', (d) => (log += d))
    child.stderr.on('data', (d) => (log += d))
    const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })))
    await waitFor('the daemon listening', async () => /listening on 127\.0\.0\.1:(\d+)/.test(log))
    return { child, exited, port: Number(/listening on 127\.0\.0\.1:(\d+)/.exec(log)[1]) }
  }
  const daemons = await Promise.all([start(), start()])
  try {
    for (const d of daemons) assert.equal(await refused(d.port), false, 'it serves')
    daemons[0].child.kill('SIGTERM')
    daemons[1].child.kill('SIGINT')
    for (const d of daemons) {
      assert.deepEqual(await d.exited, { code: 0, signal: null })
      assert.equal(await refused(d.port), true, `nothing listens on ${d.port} after the CLI exited`)
    }
  } finally {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL')
  }
})
