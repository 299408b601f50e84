'use strict'
// End to end: an express app with express-session doing one read and one
// write of the session per request (GET / counts visits), each contender's
// app in a child process of its own, loaded by autocannon from this process
// with 50 connections, each connection one browser with its own session.
// Reports req/s, p99 latency and the app process's CPU time per request;
// contenders run in turn (every other round in reverse), and each keeps its
// medians.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const autocannon = require('autocannon')
const { startRedis } = require('../__test__/support/redis-servers')
const { startPostgres } = require('../__test__/support/postgres-server')
const { spawnApp } = require('../__test__/support/web-apps')
const { table } = require('./harness')

const CONNECTIONS = 50

/** One timed load of `port`; resolves { rps, p99, requests }. */
function load(port, seconds) {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}/`,
        connections: CONNECTIONS,
        duration: seconds,
        requests: [
          {
            setupRequest(req, ctx) {
              return ctx.cookie ? { ...req, headers: { ...req.headers, cookie: ctx.cookie } } : req
            },
            onResponse(status, body, ctx, headers) {
              const set = headers['set-cookie']
              if (set) ctx.cookie = String(Array.isArray(set) ? set[0] : set).split(';')[0]
            },
          },
        ],
      },
      (err, r) => {
        if (err) return reject(err)
        if (r.non2xx || r.errors || r.timeouts) return reject(new Error(`port ${port}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`))
        resolve({ rps: r.requests.average, p99: r.latency.p99, requests: r.requests.total })
      },
    )
  })
}

const cpuOf = (app) =>
  new Promise((resolve) => {
    app.child.once('message', (m) => resolve(m.cpu.user + m.cpu.system))
    app.send('cpu')
  })

async function measure(contender, seconds) {
  const app = await spawnApp('express', { spec: contender.spec, adapter: contender.adapter, lean: true })
  try {
    await load(app.port, 1) // warm-up (JIT, connections, sessions created)
    const cpu0 = await cpuOf(app)
    const r = await load(app.port, seconds)
    const cpuUs = (await cpuOf(app)) - cpu0
    return { ...r, cpuPerReq: cpuUs / r.requests }
  } finally {
    await app.stop()
  }
}

module.exports = async function expressBench({ ms, only }) {
  const seconds = Math.max(2, Math.round((ms * 3) / 1000))
  const redis = await startRedis()
  const pg = !only || only.includes('postgres') ? await startPostgres() : null
  const pgUrl = pg && (await pg.createDatabase('bench'))
  const dir = (name) => fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-bench-${name}-`))
  const all = [
    { name: 'connect-redis (node-redis 5)', group: 'redis', spec: { kind: 'connect-redis', url: redis.url } },
    { name: 'rs-store redis', group: 'redis', spec: { kind: 'redis', url: redis.url } },
    { name: 'rs.redis in a bare 20-line Store', group: 'redis', spec: { kind: 'bare-redis', url: redis.url } },
    { name: 'rs-store redis (I/O thread)', group: 'redis', spec: { kind: 'redis', url: redis.url, options: { ioThread: true } } },
    { name: 'rs-store redis (I/O thread), spinMicros 0', group: 'redis', spec: { kind: 'redis', url: redis.url, options: { ioThread: true, spinMicros: 0 } } },
    { name: 'rs-store redis, lockRequests', group: 'redis', spec: { kind: 'redis', url: redis.url }, adapter: { lockRequests: true } },
    { name: 'connect-pg-simple (pg)', group: 'postgres', spec: { kind: 'connect-pg-simple', url: pgUrl } },
    { name: 'rs-store postgres', group: 'postgres', spec: { kind: 'postgres', url: pgUrl } },
    { name: 'express-session MemoryStore', group: 'memory', spec: { kind: 'express-memory' } },
    { name: 'memorystore', group: 'memory', spec: { kind: 'memorystore' } },
    { name: 'rs-store memory', group: 'memory', spec: { kind: 'memory' } },
    { name: 'session-file-store', group: 'file', spec: { kind: 'session-file-store', dir: dir('sfs') } },
    { name: 'rs-store file', group: 'file', spec: { kind: 'file', dir: dir('file') } },
  ]
  const contenders = all.filter((c) => !only || only.includes(c.group))
  const rounds = 5
  const samples = new Map(contenders.map((c) => [c, []]))
  for (let r = 0; r < rounds; r++) {
    // Every other round in reverse order: a VM that speeds up or slows down
    // within a round then favours nobody.
    for (const c of r % 2 ? [...contenders].reverse() : contenders) samples.get(c).push(await measure(c, seconds))
  }
  await redis.stop()
  if (pg) await pg.destroy()
  const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1]
  const rows = contenders.map((c) => {
    const s = samples.get(c)
    return { name: c.name, group: c.group, 'req/s': median(s.map((x) => x.rps)), 'p99 ms': median(s.map((x) => x.p99)), 'CPU µs/req': median(s.map((x) => x.cpuPerReq)) }
  })
  const title = `express + express-session end to end (${CONNECTIONS} connections, ${seconds} s × ${rounds} rounds, medians; CPU of the app process)`
  const bases = { redis: 'connect-redis (node-redis 5)', postgres: 'connect-pg-simple (pg)', memory: 'express-session MemoryStore', file: 'session-file-store' }
  for (const [group, base] of Object.entries(bases)) {
    const part = rows.filter((r) => r.group === group)
    if (part.length) table(`${title}: ${group}, ratios to ${base}`, part, ['req/s', 'p99 ms', 'CPU µs/req'], base)
  }
  return rows
}
