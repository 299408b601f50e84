'use strict'
// Shared by the bench sections: the session everyone stores, a time-boxed
// op-rate meter, and a table printer with ratios.
const crypto = require('node:crypto')

/** ~430 bytes of JSON, shaped like an express-session session. */
function benchSession(i = 0) {
  return {
    cookie: {
      originalMaxAge: 3_600_000,
      expires: new Date(Date.now() + 3_600_000).toISOString(),
      secure: false,
      httpOnly: true,
      path: '/',
      sameSite: 'lax',
    },
    user: { id: 100_000 + i, name: 'Ada Lovelace', email: 'ada@example.com', roles: ['admin', 'editor', 'viewer'] },
    csrfSecret: 'f3b1c2d4e5f60718293a4b5c6d7e8f90',
    cart: [
      { sku: 'A-1001', qty: 2, price: 19.99 },
      { sku: 'B-2002', qty: 1, price: 5.5 },
    ],
    preferences: { theme: 'dark', lang: 'en-GB', tz: 'Europe/London' },
    visits: 17,
    lastSeen: 1_763_800_000_000,
    flash: [],
  }
}

const ids = (n) => Array.from({ length: n }, () => crypto.randomBytes(16).toString('hex'))

/**
 * Runs `op(i)` (returns a Promise) with `inflight` calls outstanding for about
 * `ms` milliseconds after a short warm-up; returns ops per second and the
 * process's CPU time (every thread, user + system) per op in µs.
 */
async function rate(op, { ms = 1000, inflight = 1, warmupMs = 200 } = {}) {
  let i = 0
  const runFor = async (duration) => {
    const end = performance.now() + duration
    let done = 0
    const worker = async () => {
      while (performance.now() < end) {
        // 64 calls between clock reads keep the clock out of the measurement
        for (let k = 0; k < 64; k++) await op(i++)
        done += 64
      }
    }
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    await Promise.all(Array.from({ length: inflight }, worker))
    const cpu = process.cpuUsage(cpu0)
    return { ops: done / ((performance.now() - t0) / 1000), cpu: (cpu.user + cpu.system) / done }
  }
  await runFor(warmupMs)
  return runFor(ms)
}

/** Stores the session under every key in each contender, then checks one read. */
async function fill(contenders, keys, sess, parallel = 1) {
  for (const c of contenders) {
    for (let i = 0; i < keys.length; i += parallel) await Promise.all(keys.slice(i, i + parallel).map((k) => c.set(k, sess)))
    const check = await c.get(keys[keys.length >> 1])
    if (!check || check.user.name !== sess.user.name) throw new Error(`${c.name} returned a wrong session`)
  }
}

/** The per-call cases: a set and a get of `sess` over `keys`, at 1 and 50 calls in flight. */
function setGetCases(keys, sess) {
  const cases = {}
  for (const inflight of [1, 50]) {
    cases[`set@${inflight}`] = { inflight, op: (c) => (i) => c.set(keys[i % keys.length], sess) }
    cases[`get@${inflight}`] = { inflight, op: (c) => (i) => c.get(keys[i % keys.length]) }
  }
  return cases
}

/**
 * Measures every contender on every case in interleaved rounds (contender A,
 * B, C, then again…) and keeps each one's median, so that a machine whose
 * speed drifts (shared VMs do) biases no contender. `cases` maps a metric
 * name to { inflight, op: (contender) => (i) => Promise }; each row has the
 * metric (ops/s) and `<metric> µs` (CPU per op).
 */
async function compare(contenders, cases, { ms = 1000, rounds = 3 } = {}) {
  const samples = contenders.map(() => ({}))
  for (let r = 0; r < rounds; r++) {
    for (const [metric, { inflight = 1, op }] of Object.entries(cases)) {
      for (let c = 0; c < contenders.length; c++) {
        const v = await rate(op(contenders[c]), { ms: ms / rounds, inflight, warmupMs: r === 0 ? 200 : 50 })
        ;(samples[c][metric] ||= []).push(v.ops)
        ;(samples[c][`${metric} µs`] ||= []).push(v.cpu)
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

const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(1))

/** rows: [{ name, ...metrics }]; ratios against the row named `base`; `cpu` adds each metric's CPU µs per op. */
function table(title, rows, metrics, base, { cpu = true } = {}) {
  if (cpu) metrics = metrics.flatMap((m) => (rows[0][`${m} µs`] === undefined ? [m] : [m, `${m} µs`]))
  const ref = rows.find((r) => r.name === base)
  console.log(`\n## ${title}`)
  const head = ['store', ...metrics.flatMap((m) => [m, ref ? `× ${base}` : null].filter(Boolean))]
  console.log(`| ${head.join(' | ')} |`)
  console.log(`|${head.map(() => '---').join('|')}|`)
  for (const r of rows) {
    const cells = metrics.flatMap((m) => {
      const v = r[m]
      return [typeof v === 'number' ? fmt(v) : String(v), ref ? `${(v / ref[m]).toFixed(2)}×` : null].filter((c) => c !== null)
    })
    console.log(`| ${r.name} | ${cells.join(' | ')} |`)
  }
}

module.exports = { benchSession, ids, rate, fill, setGetCases, compare, table, fmt }
