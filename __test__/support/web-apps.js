'use strict'
// Real web apps over rs-store, for the framework tests and the end-to-end
// bench: express + express-session, fastify + @fastify/session, koa +
// koa-session, hapi + @hapi/yar, simpleS 0.8.8. Each runs in this process (`startApp`) or as a child process
// (`spawnApp`, for restarts and for two processes sharing one store), with
// the same routes:
//   GET /           visits + 1              → "visits: N"
//   GET /peek       reads only              → "visits: N"
//   GET /login?user=u  a fresh session id for u → "hello u"
//   GET /logout     destroys the session    → "bye"
//   GET /add?item=x&ms=d  reads the items, waits d ms, adds x → "items: N"
//   GET /items      the items as JSON
//   GET /slow?ms=d[&write=0]  reads, waits d ms, then visits + 1 (unless write=0)
//   GET /circular, /big  a session that cannot be stored
// An error reaches the app's error handler: 500 "error: <code>" (express:
// also listed by GET /errors, since a failed save comes after the page).
// Without a session (express-session's `disconnect`) pages say "no session".
const path = require('node:path')
const { spawn } = require('node:child_process')
const rs = require('../..')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const SECRET = 'rs-store test secret'
const HOUR_MS = 3_600_000

/**
 * An rs-store store (or a peer's) from a plain description, so a child
 * process can build the same one: { kind: 'memory' | 'file' | 'redis' |
 * 'daemon' | 'postgres' | 'connect-redis' | 'connect-pg-simple' | 'memorystore' |
 * 'session-file-store' | 'express-memory', url, dir, port, options }.
 */
function makeBackend(spec) {
  const o = spec.options || {}
  switch (spec.kind) {
    case 'memory':
      return rs.memory(o)
    case 'file':
      return rs.file({ dir: spec.dir, ...o })
    case 'redis':
      return rs.redis({ url: spec.url, ...o })
    case 'daemon':
      return rs.daemon({ port: spec.port, ...o })
    case 'postgres':
      return rs.postgres({ url: spec.url, ...o })
    default:
      throw new Error(`unknown store kind ${spec.kind}`)
  }
}

/** express-session's store for `spec`: rs-store through ExpressStore, or a peer. */
async function expressSessionStore(spec, adapter = {}) {
  const session = require('express-session')
  switch (spec.kind) {
    case 'connect-redis': {
      const { RedisStore } = require('connect-redis')
      const { createClient } = require('redis')
      const client = createClient({ url: spec.url })
      await client.connect()
      return { store: new RedisStore({ client, prefix: 'sess:' }), close: () => client.quit() }
    }
    case 'connect-pg-simple': {
      const PgStore = require('connect-pg-simple')(session)
      const { Pool } = require('pg')
      const pool = new Pool({ connectionString: spec.url, max: 10 })
      pool.on('error', () => {}) // a server stopped under the app: calls fail, the process stays up
      const store = new PgStore({ pool, tableName: spec.table || 'session', createTableIfMissing: true, pruneSessionInterval: false })
      return { store, close: () => (store.close(), pool.end()) }
    }
    case 'express-memory':
      return { store: new session.MemoryStore(), close: () => {} }
    case 'bare-redis': {
      // What an app would write without rs-store/express: the bench's
      // yardstick for the adapter's own cost.
      const backend = rs.redis({ url: spec.url })
      class Bare extends session.Store {
        get(sid, cb) {
          backend.get(sid).then((s) => cb(null, s), cb)
        }
        set(sid, sess, cb) {
          backend.set(sid, sess, sess.cookie.maxAge || HOUR_MS).then(() => cb(), cb)
        }
        destroy(sid, cb) {
          backend.remove(sid).then(() => cb(), cb)
        }
        touch(sid, sess, cb) {
          backend.update(sid, sess.cookie.maxAge || HOUR_MS).then(() => cb(), cb)
        }
      }
      return { store: new Bare(), close: () => backend.close() }
    }
    case 'memorystore': {
      const MemoryStore = require('memorystore')(session)
      const store = new MemoryStore({ checkPeriod: HOUR_MS })
      return { store, close: () => store.stopInterval() }
    }
    case 'session-file-store': {
      const FileStore = require('session-file-store')(session)
      return { store: new FileStore({ path: spec.dir, logFn: () => {}, retries: 0 }), close: () => {} }
    }
    default: {
      const { ExpressStore } = require('rs-store/express')
      const backend = makeBackend(spec)
      const store = new ExpressStore({ store: backend, ...adapter })
      return { store, close: () => (store.close(), backend.close()) }
    }
  }
}

/** Handlers shared by the three frameworks; `s` is the session (or null). */
const pages = {
  visits(s) {
    s.visits = (s.visits || 0) + 1
    return `visits: ${s.visits}`
  },
  peek: (s) => `visits: ${s.visits || 0}`,
  async add(s, q) {
    const items = s.items || []
    await sleep(Number(q.ms || 0))
    s.items = [...items, q.item]
    return `items: ${s.items.length}`
  },
  async slow(s, q) {
    await sleep(Number(q.ms || 0))
    if (q.write !== '0') s.visits = (s.visits || 0) + 1
    return 'slow done'
  },
}

async function startExpress({ spec, adapter, port = 0, lean = false }) {
  const express = require('express')
  const session = require('express-session')
  const { store, close } = await expressSessionStore(spec, adapter)
  const app = express()
  app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false, cookie: { maxAge: HOUR_MS } }))
  const page = (fn) => async (req, res, next) => {
    if (!req.session) return res.send('no session')
    try {
      res.send(await fn(req.session, req.query))
    } catch (e) {
      next(e)
    }
  }
  // The bench's case: one read and one write of the session per request.
  app.get('/', page(pages.visits))
  if (!lean) {
    app.get('/peek', page(pages.peek))
    app.get('/add', page(pages.add))
    app.get('/slow', page(pages.slow))
    app.get('/items', (req, res) => res.json(req.session ? req.session.items || [] : null))
    app.get('/login', (req, res, next) =>
      req.session.regenerate((err) => {
        if (err) return next(err)
        req.session.user = req.query.user
        res.send(`hello ${req.query.user}`)
      }),
    )
    app.get('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.send('bye'))))
    // (A circular session is not tried here: express-session's own change
    // check stringifies it first and throws inside res.end.)
    app.get('/big', page((s) => ((s.big = 'x'.repeat(2 << 20)), 'stored?')))
    app.get('/errors', (req, res) => res.json(errors))
  }
  // A failed save arrives after the page was sent: kept for /errors.
  const errors = []
  app.use((err, req, res, next) => {
    errors.push(err.code || err.message)
    if (res.headersSent) return res.end()
    res.status(500).send(`error: ${err.code || err.message}`)
  })
  return listen((cb) => app.listen(port, '127.0.0.1', cb), close)
}

async function startFastify({ spec, adapter, port = 0, maxAge = HOUR_MS }) {
  const Fastify = require('fastify')
  const { FastifyStore } = require('rs-store/fastify')
  const backend = makeBackend(spec)
  const store = new FastifyStore({ store: backend, ...adapter })
  const app = Fastify()
  app.register(require('@fastify/cookie'))
  app.register(require('@fastify/session'), {
    secret: 'a fastify session secret of at least 32 characters',
    store,
    saveUninitialized: false,
    cookie: { secure: false, maxAge },
  })
  if (adapter && adapter.lockRequests) app.register(store.plugin)
  // failClosed: false while the backend is down: an empty session that is never saved.
  const page = (fn) => async (req) => (req.session.storeUnavailable ? 'no session' : fn(req.session, req.query))
  app.get('/', page(pages.visits))
  app.get('/peek', page(pages.peek))
  app.get('/add', page(pages.add))
  app.get('/slow', page(pages.slow))
  app.get('/items', async (req) => req.session.items || [])
  app.get('/login', async (req) => {
    await req.session.regenerate()
    req.session.user = req.query.user
    return `hello ${req.query.user}`
  })
  app.get('/logout', async (req) => {
    await req.session.destroy()
    return 'bye'
  })
  app.get('/circular', page((s) => ((s.self = s), 'stored?')))
  app.get('/big', page((s) => ((s.big = 'x'.repeat(2 << 20)), 'stored?')))
  app.setErrorHandler((err, req, reply) => reply.status(500).send(`error: ${err.code || err.message}`))
  await app.listen({ port, host: '127.0.0.1' })
  return { port: app.server.address().port, store, close: () => app.close().then(() => (store.close(), backend.close())) }
}

async function startKoa({ spec, port = 0, maxAge = HOUR_MS }) {
  const Koa = require('koa')
  const { createSession } = require('koa-session')
  const { KoaStore } = require('rs-store/koa')
  const backend = makeBackend(spec)
  const app = new Koa()
  app.keys = [SECRET]
  // Outside the session middleware: its load and its save fail here too.
  app.use(async (ctx, next) => {
    try {
      await next()
    } catch (e) {
      ctx.status = 500
      ctx.body = `error: ${e.code || e.message}`
    }
  })
  app.use(createSession({ store: new KoaStore({ store: backend }), maxAge }, app))
  const routes = {
    '/': (ctx) => pages.visits(ctx.session),
    '/peek': (ctx) => pages.peek(ctx.session),
    '/add': (ctx) => pages.add(ctx.session, ctx.query),
    '/slow': (ctx) => pages.slow(ctx.session, ctx.query),
    '/items': (ctx) => JSON.stringify(ctx.session.items || []),
    async '/login'(ctx) {
      await ctx.session.regenerate()
      ctx.session.user = ctx.query.user
      return `hello ${ctx.query.user}`
    },
    '/logout'(ctx) {
      ctx.session = null
      return 'bye'
    },
  }
  app.use(async (ctx) => {
    const route = routes[ctx.path]
    if (route) ctx.body = await route(ctx)
  })
  return listen((cb) => app.listen(port, '127.0.0.1', cb), () => backend.close())
}

async function startHapi({ spec, port = 0, expiresIn = HOUR_MS }) {
  const Hapi = require('@hapi/hapi')
  const { CatboxEngine } = require('rs-store/hapi')
  const backend = makeBackend(spec)
  const server = Hapi.server({ port, host: '127.0.0.1', cache: [{ name: 'sessions', provider: { constructor: CatboxEngine, options: { store: backend } } }] })
  await server.register({
    plugin: require('@hapi/yar'),
    options: { name: 'sid', maxCookieSize: 0, cache: { cache: 'sessions', expiresIn }, cookieOptions: { password: 'a hapi cookie password of at least 32 characters', isSecure: false } },
  })
  // A failure carries its code (hapi keeps the thrown error's own properties);
  // after yar's own onPreResponse, whose save may fail too.
  server.ext('onPreResponse', (request, h) => {
    const r = request.response
    return r.isBoom && r.output.statusCode === 500 ? h.response(`error: ${r.code || r.message}`).code(500) : h.continue
  }, { after: ['@hapi/yar'] })
  const page = (fn) => async (request) => {
    const s = request.yar.get('s') || {}
    const out = await fn(s, request.query)
    request.yar.set('s', s)
    return out
  }
  server.route([
    { method: 'GET', path: '/', handler: page(pages.visits) },
    { method: 'GET', path: '/peek', handler: (request) => pages.peek(request.yar.get('s') || {}) },
    { method: 'GET', path: '/slow', handler: page(pages.slow) },
    { method: 'GET', path: '/id', handler: (request) => request.yar.id },
    {
      method: 'GET',
      path: '/logout',
      handler: async (request) => {
        await server.yar.revoke(request.yar.id)
        request.yar.reset()
        return 'bye'
      },
    },
  ])
  await server.start()
  return { port: server.info.port, server, close: () => server.stop().then(() => backend.close()) }
}

async function startSimples08({ spec, port = 0, timeout = 3600 }) {
  const simples = require('rs-store-test-simples-0.8')
  const adapt = require('rs-store/simples-0.8')
  const backend = makeBackend(spec)
  const server = simples(port)
  server.config({ session: { enabled: true, store: adapt(backend), timeout } })
  server.get('/', (c) => {
    c.session.visits = (c.session.visits || 0) + 1
    c.end(`visits: ${c.session.visits}`)
  })
  server.get('/peek', (c) => c.end(`visits: ${c.session.visits || 0}`))
  await new Promise((r) => server.on('start', r))
  const addr = server.instance.address()
  return {
    port: addr.port,
    close: () => new Promise((r) => server.stop(r)).then(() => backend.close()),
  }
}

function listen(start, close) {
  return new Promise((resolve, reject) => {
    const server = start((err) => {
      if (err) return reject(err)
      resolve({
        port: server.address().port,
        close: () => new Promise((r) => server.close(r)).then(close),
        server,
      })
    })
    server.on('error', reject)
  })
}

const FRAMEWORKS = { express: startExpress, fastify: startFastify, koa: startKoa, hapi: startHapi, 'simples-0.8': startSimples08 }

/** Starts `framework`'s app in this process. */
function startApp(framework, opts) {
  return FRAMEWORKS[framework](opts)
}

/**
 * The same app as a child process: resolves { port, child, stop() } once it
 * listens.
 */
function spawnApp(framework, opts) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [__filename, framework, JSON.stringify(opts)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    const exited = new Promise((r) => child.once('exit', r))
    const stop = (signal = 'SIGTERM') => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : (child.kill(signal), exited))
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`app process exited with ${code} before listening`)))
    child.on('message', (m) => {
      if (m.port) resolve({ port: m.port, child, stop, send: (msg) => child.send(msg) })
    })
  })
}

if (require.main === module) {
  const [framework, json] = process.argv.slice(2)
  startApp(framework, JSON.parse(json)).then((app) => {
    process.send({ port: app.port })
    // The bench asks for this process's CPU time.
    process.on('message', (m) => {
      if (m === 'cpu') process.send({ cpu: process.cpuUsage() })
    })
    process.on('SIGTERM', () => app.close().finally(() => process.exit(0)))
  })
}

/**
 * A cookie-keeping HTTP client; `name` is the session cookie's name. Set
 * `port` to take the same cookies to another app.
 */
function client(port, name = 'connect.sid') {
  let jar = new Map()
  return {
    jar,
    port,
    async get(p, { timeoutMs = 15_000 } = {}) {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
      const res = await fetch(`http://127.0.0.1:${this.port}${p}`, { headers: cookie ? { cookie } : {}, signal: AbortSignal.timeout(timeoutMs) })
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(';')
        const i = pair.indexOf('=')
        const value = pair.slice(i + 1)
        if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(pair.slice(0, i))
        else jar.set(pair.slice(0, i), value)
      }
      return { status: res.status, text: await res.text() }
    },
    /** The session id the cookie carries (express-session signs it `s:<id>.<sig>`, @fastify/session `<id>.<sig>`, koa-session `<id>` beside a `.sig` cookie). */
    sessionId() {
      const v = decodeURIComponent(jar.get(name) || '')
      if (name === 'koa.sess') return v
      if (v.startsWith('s:')) return v.slice(2, v.lastIndexOf('.'))
      return name === 'sessionId' ? v.slice(0, v.lastIndexOf('.')) : v
    },
    forget() {
      jar = new Map()
      this.jar = jar
    },
  }
}

/**
 * One browser's slow request (`write`: it changes the session at its end),
 * and a logout while it runs, on `framework`'s app over the redis-server
 * `redis`: the logout must stand.
 */
async function logoutDuringSlowRequest(framework, redis, { cookie, write }) {
  const assert = require('node:assert/strict')
  const app = await startApp(framework, { spec: { kind: 'redis', url: redis.url } })
  try {
    const c = client(app.port, cookie)
    assert.equal((await c.get('/')).text, 'visits: 1')
    const id = c.sessionId()
    const slow = c.get(`/slow?ms=300&write=${write ? 1 : 0}`)
    await sleep(50)
    assert.equal((await c.get('/logout')).text, 'bye')
    assert.equal((await slow).text, 'slow done')
    assert.equal(await redis.cli('exists', `sess:${id}`), '0', 'the logout stands')
    assert.equal((await c.get('/peek')).text, 'visits: 0')
  } finally {
    await app.close()
  }
}

module.exports = { startApp, spawnApp, client, makeBackend, expressSessionStore, logoutDuringSlowRequest, SECRET, HOUR_MS }
