// Compiled by __test__/types.test.js with `tsc --strict --noEmit`: the
// published types for the framework entry points, used as the README does.
import session from 'express-session'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import * as rs from 'rs-store'
import { ExpressStore } from 'rs-store/express'
import { FastifyStore } from 'rs-store/fastify'
import simples08 = require('rs-store/simples-0.8')

const redis = rs.redis('redis://127.0.0.1:6379')
const expressStore: session.Store = new ExpressStore({ store: redis, lockRequests: { waitMs: 5000 }, touchAfter: 60, failClosed: false })
session({ store: expressStore, secret: 's', resave: false, saveUninitialized: false })
new ExpressStore({ store: rs.memory(), ttl: (s) => (s.cookie.maxAge ?? 0) / 1000 })

const app = Fastify()
app.register(fastifyCookie)
app.register(fastifySession, { secret: 'a fastify session secret of at least 32 characters', store: new FastifyStore({ store: rs.file({ dir: 'sessions' }) }) })
const locked = new FastifyStore({ store: redis, lockRequests: { waitMs: 5000 }, failClosed: false, touchAfter: 60 })
locked.on('disconnect', () => console.warn('sessions are down'))
app.register(fastifySession, { secret: 'a fastify session secret of at least 32 characters', store: locked })
app.register(locked.plugin)

const s08 = simples08(rs.daemon(7070), { onError: (e) => console.warn(e.code) })
s08.get('id', (s) => s?.container)

async function check(): Promise<string[]> {
  const replaced: boolean = await redis.replace('id', { a: 1 }, 1000)
  return replaced ? redis.ids() : []
}
void check

// koa-session (its own types; koa 3 ships none, so the app is typed loosely here)
import { createSession } from 'koa-session'
import { KoaStore } from 'rs-store/koa'
declare const koaApp: any
koaApp.use(createSession({ store: new KoaStore({ store: redis }), maxAge: 86_400_000 }, koaApp))

// hapi's server cache (and @hapi/yar through it)
import Hapi from '@hapi/hapi'
import { CatboxEngine } from 'rs-store/hapi'
const hapiServer = Hapi.server({ cache: [{ name: 'sessions', provider: { constructor: CatboxEngine, options: { store: redis } } }] })
const things = hapiServer.cache<{ n: number }>({ cache: 'sessions', segment: 'things', expiresIn: 60_000 })
void things.set('a', { n: 1 })

// React Router 7 sessions
import { createCookie } from 'react-router'
import { createRsSessionStorage } from 'rs-store/react-router'
const rrStorage = createRsSessionStorage<{ visits: number }>({ store: redis, cookie: createCookie('__session', { secrets: ['s'], maxAge: 3600 }) })
async function countVisit(cookieHeader: string | null): Promise<string> {
  const session = await rrStorage.getSession(cookieHeader)
  session.set('visits', (session.get('visits') ?? 0) + 1)
  return rrStorage.commitSession(session)
}
void countVisit
createRsSessionStorage({ store: rs.memory(), cookie: { name: 'rr', secrets: ['s'], httpOnly: true } })


// unstorage and better-auth: our types alone here (their own .d.ts files do
// not compile with skipLibCheck off: optional drivers' and bun's modules);
// frameworks.ts checks the assignments to their types.
import rsStoreDriver = require('rs-store/unstorage')
import { secondaryStorage } from 'rs-store/better-auth'
const driver = rsStoreDriver({ store: redis, ttl: 3600 })
void driver.setItem?.('a', 'text', { ttl: 60 })
const secondary = secondaryStorage(redis)
void secondary.increment('hits', 60).then((n: number) => n + 1)

async function users(): Promise<number> {
  const store = rs.memory({ userOf: (s) => s.user, maxSessionsPerUser: 5, maxLifetime: 86_400_000 })
  const mine: rs.UserSession[] = await store.sessionsOf('ada')
  const moved: boolean = await store.rotate('old', 'new')
  return moved ? store.revokeUser('ada', { except: mine.map((s) => s.id) }) : 0
}
void users
// per-user calls through the adapters, and rotating a request's session id (express)
async function devices(req: import('express').Request): Promise<number> {
  const users = new ExpressStore({ store: rs.file({ sessionStateFile: 'sessions.json', userOf: (s) => s.user }) })
  const rotated: boolean = await users.rotateRequest(req)
  const list: rs.UserSession[] = await users.sessionsOf('ada')
  const f = new FastifyStore({ store: rs.memory({ userOf: (s) => s.user }) })
  const moved: boolean = await f.rotate('a', 'b')
  users.revokeUser('ada', { except: [req.sessionID] }, (err, n) => void (err ?? n))
  return rotated && moved ? f.revokeUser('ada', { except: list.map((s) => s.id) }) : 0
}
void devices
// observability: stats() typed
const st: rs.StoreStats = redis.stats()
const unavailable: number = st.errors.ERR_STORE_UNAVAILABLE ?? 0
const p99: number | undefined = st.latency.get?.p99Ms
void unavailable
void p99
// ping() and the Prometheus entry
import { register as promRegister } from 'rs-store/prometheus'
const roundTrip: Promise<number> = redis.ping()
void roundTrip
declare const registry: { registerMetric(metric: unknown): void }
const unregister: () => void = promRegister(registry, redis, { name: 'sessions' })
void unregister
