'use strict'
// `rs-store user ls|revoke` (lib/cli.js) as operators run it, a separate
// process each time, against the stores with per-user sessions the CLI can
// open: sessions.json (json:FILE), whose index an app's store wrote to
// <file>.users, and a file store (file:DIR), Redis, PostgreSQL and the
// daemon (daemon:PORT) beside the running app. Object storage (dir:DIR)
// has no per-user sessions: the command says so with a coded error.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const rs = require('..')

const BIN = path.join(__dirname, '../bin/rs-store.js')
const HOUR = 3_600_000
const userOf = (s) => s.user

function cli(args, { input } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.stdin.end(input ?? '')
    child.once('exit', (code) => resolve({ code, out, err }))
  })
}
const ok = async (args, opts) => {
  const r = await cli(args, opts)
  assert.equal(r.code, 0, `rs-store ${args.join(' ')}: ${r.err}`)
  return r
}

test('cli: user ls and user revoke on sessions.json, what the app wrote, with --except and --yes', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-cli-users-'))
  const file = path.join(dir, 'sessions.json')
  const J = `json:${file}`
  try {
    // The app's store: several users' sessions, then it stops.
    const app = rs.file({ sessionStateFile: file, userOf, maxLifetime: 2 * HOUR })
    for (const id of ['a1', 'a2', 'a3']) await app.set(id, { user: 'ada', device: id }, HOUR)
    await app.set('b1', { user: 'bob' }, HOUR)
    await app.set('anon', { cart: [] }, HOUR)
    // While the app holds the file the CLI is refused, saying by whom.
    const busy = await cli(['user', 'ls', J, 'ada'])
    assert.equal(busy.code, 1)
    assert.match(busy.err, /ERR_STORE_IN_USE/)
    await app.close()

    const list = JSON.parse((await ok(['user', 'ls', J, 'ada', '--json'])).out)
    assert.deepEqual(
      list.map((s) => s.id),
      ['a1', 'a2', 'a3'],
      'least recently written first',
    )
    assert.deepEqual(list[0].session, { user: 'ada', device: 'a1' })
    assert.ok(list.every((s) => s.ttl > 3500 && s.ttl <= 3600), JSON.stringify(list))
    assert.match((await ok(['user', 'ls', J, 'ada'])).out, /^a1\s+(60|59)m\s+\d+ B$/m)
    assert.deepEqual(JSON.parse((await ok(['user', 'ls', J, 'nobody', '--json'])).out), [])

    // Not on a terminal and without --yes: refused, nothing removed.
    const unconfirmed = await cli(['user', 'revoke', J, 'ada'])
    assert.equal(unconfirmed.code, 2, unconfirmed.err)
    assert.match(unconfirmed.err, /--yes/)
    assert.equal(JSON.parse((await ok(['user', 'ls', J, 'ada', '--json'])).out).length, 3)

    assert.deepEqual(JSON.parse((await ok(['user', 'revoke', J, 'ada', '--except', 'a2', '--except', 'a3', '--yes', '--json'])).out), { removed: 1 })
    assert.equal((await ok(['user', 'revoke', J, 'bob', '--yes'])).out, 'removed 1\n')
    // As the app sees it when it starts again: the index, and the absolute ends, as they were.
    const again = rs.file({ sessionStateFile: file, userOf, maxLifetime: 2 * HOUR })
    try {
      assert.deepEqual(
        (await again.sessionsOf('ada')).map((s) => s.id),
        ['a2', 'a3'],
      )
      assert.deepEqual(await again.sessionsOf('bob'), [])
      assert.deepEqual(await again.get('anon'), { cart: [] })
      await again.update('a2', 10 * HOUR)
      assert.ok((await again.ttl('a2')) <= 2 * 3600, 'the absolute end survived the CLI')
    } finally {
      await again.close()
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('cli: user ls and user revoke on a file store, Redis, PostgreSQL and the daemon, while the app that wrote the sessions keeps running', { timeout: 120_000 }, async () => {
  const { startRedis } = require('./support/redis-servers')
  const { startPostgres } = require('./support/postgres-server')
  const { startDaemon } = require('./support/daemon')
  const redis = await startRedis()
  const pg = await startPostgres()
  const daemon = await startDaemon(0)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-cli-users-'))
  try {
    for (const [spec, app] of [
      [`file:${dir}`, rs.file({ dir, userOf, maxSessionsPerUser: 10 })],
      [redis.url, rs.redis({ url: redis.url, userOf })],
      [pg.url, rs.postgres({ url: pg.url, userOf })],
      [`daemon:${daemon.port}`, rs.daemon({ port: daemon.port, userOf })],
    ]) {
      try {
        // several devices of two users at once
        await Promise.all(['a1', 'a2', 'a3'].map((id) => app.set(id, { user: 'ada', device: id }, HOUR)))
        await app.set('b1', { user: 'bob' }, HOUR)
        const list = JSON.parse((await ok(['user', 'ls', spec, 'ada', '--json'])).out)
        assert.deepEqual(list.map((s) => s.id).sort(), ['a1', 'a2', 'a3'], spec)
        assert.ok(list.every((s) => s.ttl > 3500 && s.ttl <= 3600 && s.session.user === 'ada'), JSON.stringify(list))
        assert.deepEqual(JSON.parse((await ok(['user', 'revoke', spec, 'ada', '--except', 'a2', '--yes', '--json'])).out), { removed: 2 })
        // the running app sees it at once
        assert.deepEqual((await app.sessionsOf('ada')).map((s) => s.id), ['a2'])
        assert.equal(await app.get('a1'), null)
        assert.equal(await app.replace('a3', { user: 'ada', late: true }, HOUR), false, 'a revoked session is not written back')
        assert.deepEqual((await app.sessionsOf('bob')).map((s) => s.id), ['b1'])
      } finally {
        await app.close()
      }
    }
  } finally {
    await redis.stop()
    await pg.destroy()
    await daemon.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('cli: --user-field names the field (a dotted path) when the CLI writes: an import into sessions.json builds the index', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-cli-users-'))
  const J = `json:${path.join(dir, 'sessions.json')}`
  try {
    const ndjson = [
      { id: 'p1', ttlMs: HOUR, session: { passport: { user: 7 } } },
      { id: 'p2', ttlMs: HOUR, session: { passport: { user: 7 } } },
      { id: 'p3', ttlMs: HOUR, session: { passport: { user: 'x' } } },
      { id: 'p4', ttlMs: HOUR, session: { cart: [] } },
    ]
    await ok(['import', J, '-', '--user-field', 'passport.user'], { input: ndjson.map((r) => JSON.stringify(r)).join('\n') })
    const ids = async (user, field) => JSON.parse((await ok(['user', 'ls', J, user, '--json', ...(field ? ['--user-field', field] : [])])).out).map((s) => s.id)
    assert.deepEqual((await ids('7')).sort(), ['p1', 'p2'])
    assert.deepEqual(await ids('x', 'passport.user'), ['p3'])
    const bad = await cli(['user', 'ls', J, 'x', '--user-field', 'passport.'])
    assert.equal(bad.code, 2)
    assert.match(bad.err, /--user-field/)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('cli: user on a store without per-user sessions (dir:DIR, object storage) is a coded error naming it; usage errors exit 2', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-cli-users-'))
  try {
    const store = rs.objectStore({ directory: dir })
    await store.set('a', { user: 'ada' }, HOUR)
    await store.close()
    for (const args of [
      ['user', 'ls', `dir:${dir}`, 'ada'],
      ['user', 'revoke', `dir:${dir}`, 'ada', '--yes'],
    ]) {
      const r = await cli(args)
      assert.equal(r.code, 1, r.err)
      assert.match(r.err, /^rs-store: ERR_INVALID_OPTION: dir:.*the dir: store has no per-user sessions yet.*file:DIR, json:FILE/m)
    }
    const kept = rs.objectStore({ directory: dir })
    assert.deepEqual(await kept.get('a'), { user: 'ada' }, 'nothing was touched')
    await kept.close()
    const json = `json:${path.join(dir, 's.json')}`
    for (const [args, re] of [
      [['user'], /user needs one of ls, revoke/],
      [['user', 'frob', json, 'ada'], /not "frob"/],
      [['user', 'ls'], /user needs a store/],
      [['user', 'ls', json], /missing a user/],
    ]) {
      const r = await cli(args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`)
      assert.match(r.err, re)
    }
    assert.match((await ok(['user', '--help'])).out, /--user-field F/)
    assert.match((await ok(['--help'])).out, /^ {2}user +a user's sessions/m)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
