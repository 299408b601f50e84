'use strict'
// The first hour of a new user: the mistakes people make first each get a
// way forward (an error at once that names what to do), never a crash later.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { ExpressStore } = require('rs-store/express')
const { FastifyStore } = require('rs-store/fastify')

const tmp = (name) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-${name}-`))
const listening = (server) => new Promise((r) => server.once('listening', r))
/** `n` users at once, each with a cookie jar of its own, `rounds` requests each. */
async function users(port, n, rounds, route = '/') {
  return Promise.all(
    Array.from({ length: n }, async () => {
      let cookie = ''
      const seen = []
      for (let i = 0; i < rounds; i++) {
        const res = await fetch(`http://127.0.0.1:${port}${route}`, { headers: cookie ? { cookie } : {}, signal: AbortSignal.timeout(5000) })
        const set = res.headers.getSetCookie().map((c) => c.split(';')[0])
        if (set.length) cookie = set.join('; ')
        seen.push(`${res.status} ${await res.text()}`)
      }
      return seen
    }),
  )
}

test('express-session given a bare store fails at once, naming ExpressStore', () => {
  const session = require('express-session')
  const store = rs.memory()
  try {
    assert.throws(() => session({ store, secret: 's', resave: false, saveUninitialized: false }), {
      code: 'ERR_INVALID_ARGUMENT',
      message: /not an express-session store.*new ExpressStore\(\{ store \}\).*rs-store\/express/,
    })
  } finally {
    store.close()
  }
})

test('an adapter given the store instead of { store } says to pass { store }', () => {
  const store = rs.memory()
  try {
    assert.throws(() => new ExpressStore(store), { code: 'ERR_INVALID_OPTION', message: /new ExpressStore\(\{ store \}\), not new ExpressStore\(store\)/ })
    assert.throws(() => new FastifyStore(store), { code: 'ERR_INVALID_OPTION', message: /new FastifyStore\(\{ store \}\)/ })
  } finally {
    store.close()
  }
})

test('@fastify/session given a bare store: each request fails with the error naming FastifyStore, the process lives on', async () => {
  const Fastify = require('fastify')
  const reports = []
  const store = rs.file({ dir: tmp('bare-fastify'), onError: (e) => reports.push(e) })
  const app = Fastify()
  app.register(require('@fastify/cookie'))
  app.register(require('@fastify/session'), { secret: 'a fastify session secret of at least 32 characters', store, cookie: { secure: false } })
  app.get('/', async (req) => ((req.session.visits = (req.session.visits || 0) + 1), `visits: ${req.session.visits}`))
  await app.listen({ port: 0, host: '127.0.0.1' })
  try {
    const seen = await users(app.server.address().port, 5, 3)
    for (const s of seen.flat()) assert.match(s, /^500 .*ERR_INVALID_ARGUMENT.*new FastifyStore\(\{ store \}\)/)
    assert.equal(reports.length, 1, 'onError hears of it once')
  } finally {
    await app.close()
    await store.close()
  }
})

test('simpleS 0.8.8 given a bare store: pages are served, onError names rs-store/simples-0.8 once, no crash', async () => {
  const simples = require('rs-store-test-simples-0.8')
  const reports = []
  const store = rs.memory({ onError: (e) => reports.push(e) })
  const server = simples(0)
  server.config({ session: { enabled: true, store, timeout: 3600 } })
  server.get('/', (c) => {
    c.session.visits = (c.session.visits || 0) + 1
    c.end(`visits: ${c.session.visits}`)
  })
  await listening(server.instance)
  try {
    const seen = await users(server.instance.address().port, 5, 3)
    for (const s of seen.flat()) assert.match(s, /^200 visits: \d+$/)
    await new Promise((r) => setTimeout(r, 50)) // simpleS 0.8.8 stores after the response
    assert.equal(reports.length, 1)
    assert.equal(reports[0].code, 'ERR_INVALID_ARGUMENT')
    assert.match(reports[0].message, /require\('rs-store\/simples-0.8'\)\(store\)/)
  } finally {
    await new Promise((r) => server.stop(r))
    await store.close()
  }
})

test('guesses a newcomer makes: a port for rs.redis, peers\' option names, CLI typos, an encrypted session without a secret', async () => {
  const { startRedis, waitFor } = require('./support/redis-servers')
  const { execFileSync } = require('node:child_process')
  const r = await startRedis()
  // rs.redis(port), as rs.daemon(port): two stores at once on one server
  const stores = [rs.redis(r.port), rs.redis(r.port)]
  try {
    await Promise.all(stores.map((s, i) => s.set(`p${i}`, { i }, 60_000)))
    assert.deepEqual(await stores[0].get('p1'), { i: 1 })
  } finally {
    await Promise.all(stores.map((s) => s.close()))
    await r.stop()
  }
  // the names other stores use point at ours
  assert.throws(() => rs.memory({ ttl: 5 }), { code: 'ERR_INVALID_OPTION', message: /'ttl': rs-store calls it 'defaultTtl'/ })
  assert.throws(() => rs.file({ path: './s' }), { code: 'ERR_INVALID_OPTION', message: /'path': rs-store calls it 'dir'/ })
  assert.throws(() => rs.memory({ checkPeriod: 1000 }), { code: 'ERR_INVALID_OPTION', message: /'checkPeriod': rs-store calls it 'sweepIntervalMs'/ })
  // the CLI: the command's usage and the option or command meant, not parseArgs' own text
  const cli = (...args) => {
    try {
      execFileSync(process.execPath, [path.join(__dirname, '../bin/rs-store.js'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (e) {
      return { code: e.status, err: e.stderr }
    }
    return { code: 0 }
  }
  let out = cli('ls', 'file:./x', '--jsn')
  assert.equal(out.code, 2)
  assert.match(out.err, /^rs-store: unknown option --jsn \(did you mean --json\?\)\n\nusage: rs-store ls/)
  out = cli('lss', 'file:./x')
  assert.match(out.err, /^rs-store: unknown command "lss" \(did you mean ls\?\)/)
  assert.match(cli('ls', 'file:./x', '--prefix').err, /^rs-store: option --prefix needs a value/)
  // an encrypted session read by a store given no secret says so
  const dir = tmp('no-secret')
  const secret = 'a secret of sixty-four characters or more, for the no-secret test here'
  const writer = rs.file({ dir, secret })
  const reports = []
  const reader = rs.file({ dir, compress: true, onError: (e) => reports.push(e) })
  try {
    await writer.set('enc', { n: 1 }, 60_000)
    assert.equal(await reader.get('enc'), null)
    await waitFor('the report', async () => reports.length > 0) // reports cross from the store's thread
    assert.equal(reports[0].code, 'ERR_CORRUPT_DATA')
    assert.match(reports[0].message, /no secret configured/)
  } finally {
    await writer.close()
    await reader.close()
  }
})

test('Redis configuration mistakes are named: a db the server does not have, rediss:// against a plain Redis', async () => {
  const { startRedis } = require('./support/redis-servers')
  const r = await startRedis()
  try {
    for (const ioThread of [false, true]) {
      const stores = [rs.redis({ url: r.url, db: 99, ioThread }), rs.redis({ url: `${r.url}/99`, ioThread })]
      try {
        for (const s of stores) await assert.rejects(s.set('a', { n: 1 }), { code: 'ERR_INVALID_OPTION', message: /no such database \(option db\)/ })
      } finally {
        await Promise.all(stores.map((s) => s.close()))
      }
    }
    const tls = [rs.redis({ url: `rediss://127.0.0.1:${r.port}`, connectTimeoutMs: 500 }), rs.redis({ url: `rediss://127.0.0.1:${r.port}`, connectTimeoutMs: 500 })]
    try {
      const errs = await Promise.all(tls.map((s) => s.get('a').then(() => null, (e) => e)))
      for (const e of errs) {
        assert.equal(e.code, 'ERR_STORE_UNAVAILABLE')
        assert.match(e.message, /no TLS handshake within 500 ms.*a plain Redis is redis:\/\//)
      }
    } finally {
      await Promise.all(tls.map((s) => s.close()))
    }
  } finally {
    await r.stop()
  }
})
