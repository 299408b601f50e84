'use strict'
// `npm run bench -- migrate`: `rs-store migrate` of MIGRATE_N sessions
// (default 1,000,000) file → Redis and Redis → Redis, timed with process
// start, peak RSS and CPU from /usr/bin/time. Not in the default run (it
// takes minutes and ~2 GiB of disk).
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { startRedis } = require('../__test__/support/redis-servers')

const CLI = path.join(__dirname, '..', 'bin', 'rs-store.js')
const DAY = 86_400_000
const session = (i) => ({ cookie: { originalMaxAge: DAY, expires: new Date(Date.now() + DAY).toISOString(), httpOnly: true, path: '/' }, user: `user${i}`, n: i })

async function fill(store, n) {
  for (let i = 0; i < n; i += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, n - i) }, (_, k) => store.set(`s${i + k}`, session(i + k), DAY)))
  }
  await store.close()
}

function migrate(label, from, to, n) {
  const t = Date.now()
  const p = spawnSync('/usr/bin/time', ['-v', process.execPath, CLI, 'migrate', from, to, '--json'], { encoding: 'utf8' })
  const ms = Date.now() - t
  if (p.status !== 0) throw new Error(`${label}: exit ${p.status}\n${p.stderr}`)
  const { migrated } = JSON.parse(p.stdout)
  if (migrated !== n) throw new Error(`${label}: migrated ${migrated} of ${n}`)
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(p.stderr)[1])
  const user = /User time \(seconds\): ([\d.]+)/.exec(p.stderr)[1]
  const sys = /System time \(seconds\): ([\d.]+)/.exec(p.stderr)[1]
  console.log(`${label.padEnd(16)} ${n} sessions in ${(ms / 1000).toFixed(1)} s = ${Math.round(n / (ms / 1000))}/s, peak RSS ${Math.round(rss / 1024)} MiB, CPU user ${user} s + sys ${sys} s`)
}

module.exports = async function () {
  if (!fs.existsSync('/usr/bin/time')) throw new Error('bench migrate needs /usr/bin/time (Debian package time)')
  const n = Number(process.env.MIGRATE_N || 1_000_000)
  console.log(`\n## migrate (the CLI, ${n} sessions)`)
  const a = await startRedis()
  const b = await startRedis()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-bench-migrate-'))
  try {
    await fill(rs.file({ dir }), n)
    await fill(rs.redis({ url: a.url }), n)
    migrate('file → Redis', `file:${dir}`, `${b.url}/0`, n)
    migrate('Redis → Redis', a.url, `${b.url}/1`, n)
  } finally {
    await a.stop()
    await b.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
