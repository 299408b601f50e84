'use strict'
// The lost-update race the lock managers exist for: two OS processes each run
// `cycles` read-increment-write cycles on one session, with or without the
// store's lock. Resolves the final count (2 × cycles when nothing was lost).
// Also a process that holds a lock until it is killed.
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')

const ROOT = path.join(__dirname, '..', '..')

/**
 * @param storeExpr JS source that makes the store in a child, with `rs` in scope
 * @param setup the same store in this process (sets the counter, reads the result)
 */
async function counterRace(storeExpr, setup, { locked, cycles, lockOpts = { ttlMs: 5000, waitMs: 120000 } }) {
  const worker = `
    const rs = require(${JSON.stringify(ROOT)})
    const s = ${storeExpr}
    ;(async () => {
      // Both children start their cycles together (on a loaded machine the
      // second one to start could otherwise find the first one done).
      process.stdout.write('ready\\n')
      await new Promise((r) => process.stdin.once('data', r))
      process.stdin.destroy()
      for (let i = 0; i < ${cycles}; i++) {
        const step = async () => {
          const c = await s.get('counter')
          await s.set('counter', { n: c.n + 1 }, 600000)
        }
        if (${locked}) await s.withLock('counter', step, ${JSON.stringify(lockOpts)})
        else await step()
      }
      await s.close()
    })().catch((e) => { console.error(e); process.exit(1) })`
  await setup.set('counter', { n: 0 }, 600_000)
  const kids = [0, 1].map(() => spawn(process.execPath, ['-e', worker], { stdio: ['pipe', 'pipe', 'inherit'] }))
  const exits = kids.map((k) => new Promise((r) => k.once('exit', r)))
  await Promise.all(kids.map((k) => new Promise((r) => k.stdout.once('data', r))))
  for (const k of kids) k.stdin.end('go\n')
  const codes = await Promise.all(exits)
  assert.deepEqual(codes, [0, 0])
  return (await setup.get('counter')).n
}

/** A child process that takes the lock of `id` and holds it until killed. */
async function lockHolder(storeExpr, id, lockOpts) {
  const holder = spawn(process.execPath, ['-e', `
    const rs = require(${JSON.stringify(ROOT)})
    ;(${storeExpr}).lock(${JSON.stringify(id)}, ${JSON.stringify(lockOpts)}).then(() => { process.stdout.write('held\\n'); setInterval(() => {}, 1000) })`], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise((r) => holder.stdout.once('data', r))
  return holder
}

/**
 * `add` (set-if-absent) on `stores`, which share one backend (several
 * clients, or one store twice): of many concurrent adds of one id exactly
 * one wins, the winner's session is what is stored, a live session is never
 * overwritten, and a removed one can be added again.
 */
async function checkAdd(stores, id = `add-${process.hrtime.bigint()}`) {
  const [a] = stores
  const tries = stores.flatMap((s, k) => Array.from({ length: 10 }, (_, i) => ({ s, by: `${k}.${i}` })))
  const won = await Promise.all(tries.map(({ s, by }) => s.add(id, { by }, 60_000)))
  assert.equal(won.filter((w) => w === true).length, 1, `one winner of ${won.length}: ${won}`)
  const winner = tries[won.indexOf(true)].by
  for (const s of stores) assert.deepEqual(await s.get(id), { by: winner })
  assert.ok((await a.ttl(id)) > 50, 'the winner keeps its timeout')
  assert.equal(await a.add(id, { by: 'late' }, 60_000), false)
  assert.deepEqual(await a.get(id), { by: winner })
  assert.equal(await a.remove(id), true)
  assert.equal(await a.add(id, { by: 'again' }, 60_000), true)
  assert.deepEqual(await a.get(id), { by: 'again' })
  await a.remove(id)
  assert.equal(await a.add(id, { by: 'dead' }, 0), false, 'an expired add writes nothing')
  assert.equal(await a.exists(id), false)
  await assert.rejects(a.add(id, 1n), (e) => e.code === 'ERR_NOT_SERIALIZABLE')
  await assert.rejects(a.add('', {}), (e) => e.code === 'ERR_INVALID_ID')
}

module.exports = { counterRace, lockHolder, checkAdd }
