'use strict'
// rs-store in worker pools (piscina, vitest/jest thread pools, job
// runners): the main thread never loads it, workers load it, use every kind
// of store, exit or are terminated mid-call, and later workers load it again.
// Each scenario runs in a child process (support/pool.js) so that a crash is
// a failed assertion with its signal. This file itself never loads rs-store.
const test = require('node:test')
const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startRedis } = require('./support/redis-servers')

function pool(scenario, dir, redisUrl) {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(__dirname, 'support', 'pool.js'), scenario, dir, redisUrl], { timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, signal: err ? err.signal : null, stdout, stderr }),
    )
  })
}

let redis
test.before(async () => {
  redis = await startRedis()
})
test.after(() => redis && redis.stop())

const PER_CHECK = 5 * 3 * 20 // stores × rounds × sessions

for (const [scenario, expect] of [
  ['sequential', ['seq1', 'seq2', 'seq3'].map(() => 'checked')],
  ['concurrent', Array.from({ length: 8 }, () => 'checked')],
  ['terminate', [1, 2, 3].flatMap(() => ['terminated', 'terminated', 'checked'])],
]) {
  test(`workers: ${scenario}, the main thread never loading rs-store: no crash, every call answered right`, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rs-store-pool-${scenario}-`))
    try {
      const r = await pool(scenario, dir, redis.url)
      assert.equal(r.signal, null, `the process died of ${r.signal}\n${r.stderr}`)
      assert.equal(r.code, 0, r.stderr)
      const answers = JSON.parse(r.stdout)
      assert.deepEqual(
        answers.map((a) => (a === 'terminated' ? a : a && a.ok ? 'checked' : a)),
        expect,
      )
      for (const a of answers) if (a !== 'terminated') assert.equal(a.checked, PER_CHECK)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
}
