'use strict'
// Per-user sessions (#26): what `userOf` (and the cap and absolute lifetime
// with it) costs per call next to the same store without it, and how long
// `sessionsOf` of a user with 10 sessions takes among 100k sessions.
// CPU is this process's per call; on Redis and Redis Cluster the servers'
// CPU per call is printed beside it (the per-user steps are Lua scripts).
const fs = require('node:fs')
const rs = require('..')
const { startRedis, startCluster } = require('../__test__/support/redis-servers')
const { startPostgres } = require('../__test__/support/postgres-server')
const { benchSession, ids, rate, table } = require('./harness')

const N = 10_000
const TTL_MS = 3_600_000
const userOf = (s) => (s.user ? String(s.user.id) : undefined)
const rules = { userOf, maxSessionsPerUser: 50, maxLifetime: 24 * TTL_MS }

/** CPU time (user + system, µs) a process has used so far, from /proc. */
function procCpuUs(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100 // utime, stime in 1/100 s
}

/** Like harness.compare, plus the servers' CPU per call when `serverPids` are given. */
async function compareWithServer(contenders, cases, { ms, rounds = 5, serverPids = [] }) {
  const serverCpu = () => serverPids.reduce((sum, pid) => sum + procCpuUs(pid), 0)
  const samples = contenders.map(() => ({}))
  for (let r = 0; r < rounds; r++) {
    for (const [metric, { inflight, op }] of Object.entries(cases)) {
      for (let c = 0; c < contenders.length; c++) {
        const s0 = serverCpu()
        const call = op(contenders[c])
        let calls = 0 // the warm-up's too, as the server's CPU counts them
        const v = await rate((i) => (calls++, call(i)), { ms: ms / rounds, inflight, warmupMs: r === 0 ? 200 : 50 })
        const push = (k, x) => (samples[c][k] ||= []).push(x)
        push(metric, v.ops)
        push(`${metric} µs`, v.cpu)
        if (serverPids.length) push(`${metric} server µs`, (serverCpu() - s0) / calls)
      }
    }
  }
  const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1]
  return contenders.map((c, i) => {
    const row = { name: c.name }
    for (const m of Object.keys(samples[i])) row[m] = median(samples[i][m])
    return row
  })
}

/** Median and 99th percentile (ms) of `sessionsOf` of users holding 10 sessions each among `total`. */
async function sessionsOfLatency(store, total) {
  const users = total / 10
  const sessIds = ids(total)
  for (let i = 0; i < total; i += 200) {
    await Promise.all(sessIds.slice(i, i + 200).map((id, k) => store.set(id, benchSession((i + k) % users), TTL_MS)))
  }
  const times = []
  for (let k = 0; k < 500; k++) {
    const user = String(100_000 + ((k * 7919) % users))
    const t0 = performance.now()
    const list = await store.sessionsOf(user)
    times.push(performance.now() - t0)
    if (list.length !== 10) throw new Error(`sessionsOf(${user}) listed ${list.length} sessions, not 10`)
  }
  times.sort((a, b) => a - b)
  return { median: times[times.length >> 1], p99: times[Math.floor(times.length * 0.99)] }
}

function print(title, rows, serverCpu) {
  const metrics = ['set@1', 'get@1', 'set@50', 'get@50']
  table(title, rows, metrics, rows[0].name)
  if (!serverCpu) return
  console.log(`\nServer CPU per call (µs): ${rows.map((r) => `${r.name}: ${metrics.map((m) => `${m} ${r[`${m} server µs`].toFixed(1)}`).join(', ')}`).join('; ')}`)
}

module.exports = async function usersBench({ ms, only }) {
  const want = (g) => !only || only.includes(g)
  // 1,000 users with 10 sessions each: no write reaches the cap of 50
  const keys = ids(N)
  const sessions = keys.map((_, i) => benchSession(i % 1000))
  const cases = {}
  for (const inflight of [1, 50]) {
    cases[`set@${inflight}`] = { inflight, op: (c) => (i) => c.set(keys[i % N], sessions[i % N]) }
    cases[`get@${inflight}`] = { inflight, op: (c) => (i) => c.get(keys[i % N]) }
  }
  const fill = async (contenders) => {
    for (const c of contenders) {
      for (let i = 0; i < N; i += 100) await Promise.all(keys.slice(i, i + 100).map((k, j) => c.set(k, sessions[i + j])))
      const back = await c.get(keys[N >> 1])
      if (!back || back.user.id !== sessions[N >> 1].user.id) throw new Error(`${c.name} returned a wrong session`)
    }
  }
  const latency = []

  if (want('memory')) {
    const plain = rs.memory()
    const users = rs.memory({ userOf })
    const capped = rs.memory(rules)
    const contenders = [
      { name: 'memory', set: (id, s) => plain.set(id, s, TTL_MS), get: plain.get },
      { name: 'memory + userOf', set: (id, s) => users.set(id, s, TTL_MS), get: users.get },
      { name: 'memory + userOf, cap, maxLifetime', set: (id, s) => capped.set(id, s, TTL_MS), get: capped.get },
    ]
    await fill(contenders)
    print('Memory store with and without per-user sessions (ops/s), ratios to the plain store', await compareWithServer(contenders, cases, { ms: ms * 3 }))
    for (const st of [plain, users, capped]) await st.close()
    const big = rs.memory({ userOf })
    latency.push(['memory', await sessionsOfLatency(big, 100_000)])
    await big.close()
  }

  if (want('file')) {
    // Each on a directory of its own, as an app's would be.
    const os = require('node:os')
    const path = require('node:path')
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-bench-users-'))
    const plain = rs.file({ dir: path.join(root, 'plain') })
    const users = rs.file({ dir: path.join(root, 'users'), userOf })
    const capped = rs.file({ dir: path.join(root, 'capped'), ...rules })
    const contenders = [
      { name: 'file', set: (id, s) => plain.set(id, s, TTL_MS), get: plain.get },
      { name: 'file + userOf', set: (id, s) => users.set(id, s, TTL_MS), get: users.get },
      { name: 'file + userOf, cap, maxLifetime', set: (id, s) => capped.set(id, s, TTL_MS), get: capped.get },
    ]
    await fill(contenders)
    print('File store with and without per-user sessions (ops/s), ratios to the plain store', await compareWithServer(contenders, cases, { ms: ms * 3 }))
    for (const st of [plain, users, capped]) await st.close()
    fs.rmSync(root, { recursive: true, force: true })
  }

  if (want('redis')) {
    const server = await startRedis()
    const plain = rs.redis({ url: server.url, prefix: 'p:' })
    const users = rs.redis({ url: server.url, prefix: 'u:', userOf })
    const capped = rs.redis({ url: server.url, prefix: 'c:', ...rules })
    const contenders = [
      { name: 'redis', set: (id, s) => plain.set(id, s, TTL_MS), get: plain.get },
      { name: 'redis + userOf', set: (id, s) => users.set(id, s, TTL_MS), get: users.get },
      { name: 'redis + userOf, cap, maxLifetime', set: (id, s) => capped.set(id, s, TTL_MS), get: capped.get },
    ]
    await fill(contenders)
    print('Redis store with and without per-user sessions (ops/s), ratios to the plain store', await compareWithServer(contenders, cases, { ms: ms * 3, serverPids: [server.proc.pid] }), true)
    for (const st of [plain, users, capped]) await st.close()
    const big = rs.redis({ url: server.url, prefix: 'big:', userOf })
    latency.push(['redis', await sessionsOfLatency(big, 100_000)])
    await big.close()
    await server.stop()
  }

  if (want('cluster')) {
    const cluster = await startCluster(3)
    const nodes = cluster.nodes.map((n) => `127.0.0.1:${n.port}`)
    const plain = rs.redis({ nodes, prefix: 'p:' })
    const users = rs.redis({ nodes, prefix: 'u:', userOf })
    const capped = rs.redis({ nodes, prefix: 'c:', ...rules })
    const contenders = [
      { name: 'cluster', set: (id, s) => plain.set(id, s, TTL_MS), get: plain.get },
      { name: 'cluster + userOf', set: (id, s) => users.set(id, s, TTL_MS), get: users.get },
      { name: 'cluster + userOf, cap, maxLifetime', set: (id, s) => capped.set(id, s, TTL_MS), get: capped.get },
    ]
    await fill(contenders)
    const rows = await compareWithServer(contenders, cases, { ms: ms * 3, serverPids: cluster.nodes.map((n) => n.proc.pid) })
    print('Redis Cluster (3 masters) with and without per-user sessions (ops/s), ratios to the plain store; server CPU summed over the masters', rows, true)
    for (const st of [plain, users, capped]) await st.close()
    await cluster.stop()
  }

  if (want('postgres')) {
    const server = await startPostgres()
    const url = await server.createDatabase('bench_users')
    const plain = rs.postgres({ url, table: 'plain' })
    const users = rs.postgres({ url, table: 'users', userOf })
    const contenders = [
      { name: 'postgres', set: (id, s) => plain.set(id, s, TTL_MS), get: plain.get },
      { name: 'postgres + userOf', set: (id, s) => users.set(id, s, TTL_MS), get: users.get },
    ]
    await fill(contenders)
    print('PostgreSQL store with and without per-user sessions (ops/s), ratios to the plain store', await compareWithServer(contenders, cases, { ms: ms * 3 }))
    for (const st of [plain, users]) await st.close()
    await server.destroy()
  }

  if (latency.length) {
    console.log('\n## sessionsOf: a user with 10 sessions among 100k sessions (10k users), 500 calls one at a time')
    console.log('| store | median | p99 |\n|---|---|---|')
    for (const [name, l] of latency) console.log(`| ${name} | ${l.median.toFixed(3)} ms | ${l.p99.toFixed(3)} ms |`)
  }
}
