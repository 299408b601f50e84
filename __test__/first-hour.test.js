'use strict'
// The first hour of a new user: the mistakes people make first each get a
// way forward (an error at once that names what to do), never a crash later.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { ExpressStore } = require('../express')
const { FastifyStore } = require('../fastify')

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
