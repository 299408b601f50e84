'use strict'
// Per-user sessions through the framework adapters, under the real express +
// express-session and fastify + @fastify/session over HTTP with cookie jars:
// two browsers of one user (and other users beside them), the device list,
// "log out other devices", and express's rotateRequest (the rotated cookie
// works, the old one does not). The express example of docs/frameworks.md
// is run as written.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const rs = require('..')
const { ExpressStore } = require('rs-store/express')
const { FastifyStore } = require('rs-store/fastify')
const { client } = require('./support/web-apps')
const { freePort } = require('./support/redis-servers')

const ROOT = path.join(__dirname, '..')
const HOUR = 3_600_000
const userOf = (s) => s.user

/** A client whose cookie jar holds a copy of `other`'s cookies (the same browser, before a change). */
function copyOf(other) {
  const c = client(other.port)
  for (const [k, v] of other.jar) c.jar.set(k, v)
  return c
}

/** express + express-session over `backend`, with login (rotating), devices, logout-others routes. */
async function expressApp(backend) {
  const express = require('express')
  const session = require('express-session')
  const store = new ExpressStore({ store: backend })
  const app = express()
  app.use(session({ store, secret: 'a test secret', resave: false, saveUninitialized: false, cookie: { maxAge: HOUR } }))
  const route = (fn) => (req, res, next) => Promise.resolve(fn(req, res)).catch(next)
  app.get(
    '/visit',
    route((req, res) => {
      req.session.visits = (req.session.visits ?? 0) + 1
      res.send(`visits: ${req.session.visits}`)
    }),
  )
  app.get(
    '/login',
    route(async (req, res) => {
      const moved = await store.rotateRequest(req)
      req.session.user = req.query.user
      req.session.device = req.query.device
      res.send(`hello ${req.query.user} (rotated: ${moved}, ${req.session.id === req.sessionID})`)
    }),
  )
  app.get(
    '/devices',
    route(async (req, res) => {
      const list = await store.sessionsOf(req.session.user)
      res.json(list.map((s) => ({ device: s.session.device, current: s.id === req.sessionID })).sort((a, b) => a.device.localeCompare(b.device)))
    }),
  )
  app.get('/logout-others', route(async (req, res) => res.send(`removed ${await store.revokeUser(req.session.user, { except: [req.sessionID] })}`)))
  app.get('/', (req, res) => res.send(req.session.user ? `${req.session.user} on ${req.session.device}, visits: ${req.session.visits ?? 0}` : 'anonymous'))
  app.use((err, req, res, next) => res.status(500).send(`error: ${err.code || err.message}`))
  const server = await new Promise((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', (err) => (err ? reject(err) : resolve(s)))
  })
  return { port: server.address().port, store, close: () => new Promise((r) => server.close(r)) }
}

test('express: two browsers of one user, a rotated login, the device list and "log out other devices"; other users untouched', async () => {
  const backend = rs.memory({ userOf })
  const app = await expressApp(backend)
  try {
    const laptop = client(app.port)
    const phone = client(app.port)
    const bob = client(app.port)
    // The laptop has an anonymous session before it logs in (session fixation's case).
    assert.equal((await laptop.get('/visit')).text, 'visits: 1')
    const before = copyOf(laptop)
    const anonId = laptop.sessionId()
    assert.equal((await laptop.get('/login?user=ada&device=laptop')).text, 'hello ada (rotated: true, true)')
    assert.notEqual(laptop.sessionId(), anonId, 'the response set the cookie to the new id')
    assert.equal((await laptop.get('/')).text, 'ada on laptop, visits: 1', 'the rotated cookie works, with the data kept')
    assert.equal((await before.get('/')).text, 'anonymous', 'the old cookie does not')
    assert.equal(await backend.get(anonId), null)
    // First visits log in without a stored session: nothing to rotate.
    assert.equal((await phone.get('/login?user=ada&device=phone')).text, 'hello ada (rotated: false, true)')
    assert.equal((await bob.get('/login?user=bob&device=desk')).text, 'hello bob (rotated: false, true)')
    assert.deepEqual(JSON.parse((await laptop.get('/devices')).text), [
      { device: 'laptop', current: true },
      { device: 'phone', current: false },
    ])
    assert.deepEqual(JSON.parse((await phone.get('/devices')).text), [
      { device: 'laptop', current: false },
      { device: 'phone', current: true },
    ])
    // A second login of the logged-in laptop rotates again; the previous id stops working.
    const loggedIn = copyOf(laptop)
    assert.equal((await laptop.get('/login?user=ada&device=laptop')).text, 'hello ada (rotated: true, true)')
    assert.equal((await loggedIn.get('/')).text, 'anonymous')
    assert.equal((await laptop.get('/logout-others')).text, 'removed 1')
    assert.equal((await phone.get('/')).text, 'anonymous', 'the other browser is logged out')
    assert.equal((await laptop.get('/')).text, 'ada on laptop, visits: 1')
    assert.deepEqual(JSON.parse((await laptop.get('/devices')).text), [{ device: 'laptop', current: true }])
    assert.equal((await bob.get('/')).text, 'bob on desk, visits: 0', 'another user is untouched')
    assert.deepEqual((await backend.sessionsOf('bob')).map((s) => s.session.device), ['desk'])
  } finally {
    await app.close()
    await backend.close()
  }
})

test('express: many users at once, each logging out their other devices', async () => {
  const backend = rs.memory({ userOf, maxSessionsPerUser: 3 })
  const app = await expressApp(backend)
  try {
    const users = ['u0', 'u1', 'u2', 'u3', 'u4']
    const browsers = users.map((u) => ['a', 'b', 'c', 'd'].map((d) => ({ u, d, c: client(app.port) })))
    // Every browser of every user logs in at once (each visited first, so each login rotates).
    await Promise.all(browsers.flat().map(({ c }) => c.get('/visit')))
    const logins = await Promise.all(browsers.flat().map(({ u, d, c }) => c.get(`/login?user=${u}&device=${d}`)))
    for (const r of logins) assert.match(r.text, /rotated: true, true/)
    for (const u of users) assert.equal((await backend.sessionsOf(u)).length, 3, `${u}: the cap holds`)
    // Each user's last surviving browser logs the others out, all at once.
    const keepers = await Promise.all(
      users.map(async (u, i) => {
        const live = new Set((await backend.sessionsOf(u)).map((s) => s.id))
        return browsers[i].find(({ c }) => live.has(c.sessionId()))
      }),
    )
    const removed = await Promise.all(keepers.map(({ c }) => c.get('/logout-others')))
    assert.deepEqual(
      removed.map((r) => r.text),
      users.map(() => 'removed 2'),
    )
    for (const [i, u] of users.entries()) {
      assert.deepEqual(
        (await backend.sessionsOf(u)).map((s) => s.id),
        [keepers[i].c.sessionId()],
      )
      for (const { c, d } of browsers[i]) assert.equal((await c.get('/')).text, c === keepers[i].c ? `${u} on ${d}, visits: 1` : 'anonymous')
    }
  } finally {
    await app.close()
    await backend.close()
  }
})

test('express: rotateRequest refuses a request that is not its own, with coded errors', async () => {
  const orphans = []
  const store = new ExpressStore({ store: rs.memory({ userOf }), onError: (e) => orphans.push(e.code) })
  await assert.rejects(store.rotateRequest({}), { code: 'ERR_INVALID_ARGUMENT' })
  await assert.rejects(store.rotateRequest({ session: {}, sessionID: 'x', sessionStore: {} }), { code: 'ERR_INVALID_OPTION' })
  assert.deepEqual(orphans, ['ERR_INVALID_ARGUMENT', 'ERR_INVALID_OPTION'], 'onError hears them too, as for every adapter call without a callback')
  const plain = new ExpressStore({ store: rs.memory(), onError: () => {} })
  await assert.rejects(plain.sessionsOf('ada'), { code: 'ERR_INVALID_OPTION' })
  // Callbacks too, as express-session's own methods.
  const list = await new Promise((resolve, reject) => store.sessionsOf('ada', (err, l) => (err ? reject(err) : resolve(l))))
  assert.deepEqual(list, [])
  const n = await new Promise((resolve, reject) => store.revokeUser('ada', (err, k) => (err ? reject(err) : resolve(k))))
  assert.equal(n, 0)
  await store.store.close()
  await plain.store.close()
})

test('fastify: two browsers of one user, the device list, "log out other devices", and rotate passed through', async () => {
  const Fastify = require('fastify')
  const backend = rs.memory({ userOf })
  const store = new FastifyStore({ store: backend })
  const app = Fastify()
  app.register(require('@fastify/cookie'))
  app.register(require('@fastify/session'), { secret: 'a fastify session secret of at least 32 characters', store, saveUninitialized: false, cookie: { secure: false, maxAge: HOUR } })
  app.get('/login', async (req) => {
    await req.session.regenerate()
    req.session.user = req.query.user
    req.session.device = req.query.device
    return `hello ${req.query.user}`
  })
  app.get('/devices', async (req) => (await store.sessionsOf(req.session.user)).map((s) => ({ device: s.session.device, current: s.id === req.session.sessionId })))
  app.get('/logout-others', async (req) => `removed ${await store.revokeUser(req.session.user, { except: [req.session.sessionId] })}`)
  app.get('/', async (req) => (req.session.user ? `${req.session.user} on ${req.session.device}` : 'anonymous'))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = app.server.address().port
  try {
    const laptop = client(port, 'sessionId')
    const phone = client(port, 'sessionId')
    const bob = client(port, 'sessionId')
    assert.equal((await laptop.get('/login?user=ada&device=laptop')).text, 'hello ada')
    assert.equal((await phone.get('/login?user=ada&device=phone')).text, 'hello ada')
    assert.equal((await bob.get('/login?user=bob&device=desk')).text, 'hello bob')
    assert.deepEqual(JSON.parse((await phone.get('/devices')).text), [
      { device: 'laptop', current: false },
      { device: 'phone', current: true },
    ])
    assert.equal((await phone.get('/logout-others')).text, 'removed 1')
    assert.equal((await laptop.get('/')).text, 'anonymous', 'the other browser is logged out')
    assert.equal((await phone.get('/')).text, 'ada on phone')
    assert.equal((await bob.get('/')).text, 'bob on desk')
    // rotate through the adapter: the store moves the session, the old id reads missing.
    const old = phone.sessionId()
    assert.equal(await store.rotate(old, 'moved-by-the-app'), true)
    assert.equal(await backend.get(old), null)
    assert.deepEqual((await store.sessionsOf('ada')).map((s) => s.id), ['moved-by-the-app'])
    assert.equal((await phone.get('/')).text, 'anonymous', 'the old cookie no longer finds it')
    assert.equal(await store.rotate('nope', 'x'), false)
  } finally {
    await app.close()
    await backend.close()
  }
})

test("docs/frameworks.md's express example runs as written: rotate at login, devices, log out other devices", async () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/frameworks.md'), 'utf8')
  const code = [...doc.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).find((c) => c.includes('rotateRequest'))
  assert.ok(code, 'the example is there')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-frameworks-doc-'))
  fs.mkdirSync(path.join(dir, 'node_modules'))
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules/rs-store'))
  fs.writeFileSync(path.join(dir, 'example.js'), code)
  const port = await freePort()
  const child = spawn(process.execPath, ['example.js'], { cwd: dir, env: { ...process.env, PORT: String(port), NODE_PATH: path.join(ROOT, 'node_modules') }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const exited = new Promise((r) => child.once('exit', r))
  try {
    await new Promise((resolve, reject) => {
      const check = () => (out.includes('listening on') ? resolve() : null)
      child.stdout.on('data', check)
      exited.then(() => reject(new Error(`the example exited:\n${out}`)))
      check()
    })
    const laptop = client(port)
    const phone = client(port)
    assert.equal((await laptop.get('/login?user=ada')).text, 'hello ada')
    const first = copyOf(laptop)
    assert.equal((await laptop.get('/login?user=ada')).text, 'hello ada', 'a login of a stored session rotates it')
    assert.notEqual(laptop.sessionId(), first.sessionId())
    assert.equal((await first.get('/me')).text, 'anonymous', 'the id before the login no longer works')
    assert.equal((await laptop.get('/me')).text, 'user ada')
    assert.equal((await phone.get('/login?user=ada')).text, 'hello ada')
    const devices = JSON.parse((await phone.get('/devices')).text)
    assert.equal(devices.length, 2)
    assert.deepEqual(
      devices.map((d) => d.current),
      [false, true],
    )
    assert.equal((await phone.get('/logout-others')).text, 'logged out 1 other device(s)')
    assert.equal((await laptop.get('/me')).text, 'anonymous')
    assert.equal((await phone.get('/me')).text, 'user ada')
  } finally {
    child.kill('SIGTERM')
    await exited
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
