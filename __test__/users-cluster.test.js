'use strict'
// Per-user sessions on Redis Cluster (the users.test.js matrix runs there
// too): where the keys sit, what each step costs in scripts, rotations
// across slots, and two processes at once: concurrent logins of one user
// capped, a revocation racing the other process's replaces.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const rs = require('..')
const { startCluster } = require('./support/redis-servers')

const userOf = (s) => s.user
const ids = async (store, user) => (await store.sessionsOf(user)).map((s) => s.id).sort()
const HOUR = 3_600_000

let cluster
let nodes
test.before(async () => {
  cluster = await startCluster(3)
  nodes = cluster.nodes.map((n) => `127.0.0.1:${n.port}`)
})
test.after(() => cluster.stop())

/** Every key of the cluster (each master's), as redis-cli prints them. */
async function allKeys(pattern = '*') {
  const out = await Promise.all(cluster.nodes.map((n) => n.cli('--scan', '--pattern', pattern)))
  return out.flatMap((o) => (o === '' ? [] : o.split('\n')))
}
const slot = (key) => cluster.nodes[0].cli('cluster', 'keyslot', key)

/** The scripts every master ran since `reset()` (an EVALSHA that met NOSCRIPT, the script not yet on that master, is followed by its EVAL: counted once). */
const scripts = {
  reset: () => Promise.all(cluster.nodes.map((n) => n.cli('config', 'resetstat'))),
  async count() {
    let n = 0
    for (const node of cluster.nodes) {
      const stats = await node.cli('info', 'commandstats')
      for (const m of stats.matchAll(/cmdstat_(evalsha|eval):calls=(\d+),.*rejected_calls=(\d+),failed_calls=(\d+)/g)) {
        n += Number(m[2]) - (m[1] === 'evalsha' ? Number(m[3]) + Number(m[4]) : 0)
      }
    }
    return n
  },
}

test('cluster: a meta key sits on its session\'s slot, braces in ids too; a rewrite is one script, a login three', async () => {
  const store = rs.redis({ nodes, prefix: 'k:', userOf })
  for (const id of ['plain', 'br{ace}s', '{}x', 'x}{y']) {
    await store.set(id, { user: 'ada' }, HOUR)
    const metas = (await allKeys('*')).filter((k) => k.endsWith(`k:${id}`) && k !== `k:${id}`)
    assert.equal(metas.length, 1, `one meta key beside ${id}: ${metas}`)
    assert.equal(await slot(metas[0]), await slot(`k:${id}`), id)
  }
  assert.deepEqual(await ids(store, 'ada'), ['br{ace}s', 'plain', 'x}{y', '{}x'])
  assert.equal(await store.length(), 4, 'meta and index keys are not sessions')
  await scripts.reset()
  await store.set('plain', { user: 'ada', n: 2 }, HOUR)
  await store.update('plain', HOUR)
  assert.equal(await scripts.count(), 2, 'a rewrite and an update of a filed session: one script each')
  await scripts.reset()
  await store.set('new', { user: 'ada' }, HOUR)
  assert.equal(await scripts.count(), 3, 'a new session: the write finds it unfiled, files it, writes')
  await scripts.reset()
  await store.get('new')
  assert.equal(await scripts.count(), 0, 'a get is a plain GET')
  await store.clear()
  await store.close()
  // A store without the options sends no script on its writes.
  const plain = rs.redis({ nodes, prefix: 'plain:' })
  await scripts.reset()
  for (let i = 0; i < 10; i++) await plain.set(`p${i}`, { i }, HOUR)
  await plain.update('p0', HOUR)
  await plain.remove('p1')
  assert.equal(await scripts.count(), 0)
  await plain.clear()
  await plain.close()
})

test('cluster: rotate across slots, with and without userOf and a codec; a taken id changes nothing', async () => {
  for (const opts of [{}, { userOf }, { userOf, secret: 'k'.repeat(64), maxLifetime: HOUR }]) {
    const store = rs.redis({ nodes, prefix: 'r:', ...opts })
    // ids on different slots (and masters) of this three-master cluster
    assert.notEqual(await slot('r:from'), await slot('r:to'))
    await store.set('from', { user: 'ada', cart: [1] }, 600_000)
    await store.set('taken', { user: 'bob' }, HOUR)
    assert.equal(await store.rotate('from', 'to'), true)
    assert.equal(await store.get('from'), null)
    assert.deepEqual(await store.get('to'), { user: 'ada', cart: [1] })
    const ttl = await store.ttl('to')
    assert.ok(ttl > 590 && ttl <= 600, `ttl ${ttl}`)
    assert.equal(await store.rotate('to', 'taken'), false)
    assert.deepEqual(await store.get('to'), { user: 'ada', cart: [1] })
    assert.deepEqual(await store.get('taken'), { user: 'bob' })
    assert.equal(await store.rotate('missing', 'x'), false)
    if (opts.userOf) {
      assert.deepEqual(await ids(store, 'ada'), ['to'])
      assert.equal(await store.revokeUser('ada'), 1)
    }
    assert.deepEqual((await allKeys('*rot*')).filter((k) => k.includes('r:')), [], 'nothing left aside')
    await store.clear()
    await store.close()
  }
})

/** Runs `script` (an async function body with `rs`, `cfg`, `say`) in a child process. */
function child(script, cfg) {
  const code = `const rs = require(${JSON.stringify(path.join(__dirname, '..'))}); const cfg = ${JSON.stringify(cfg)};
    cfg.userOf = (s) => s.user; const say = (x) => process.stdout.write(JSON.stringify(x) + '\\n');
    (async () => { ${script} })().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })`
  const proc = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = []
  const waiters = []
  let buf = ''
  proc.stdout.on('data', (d) => {
    buf += d
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)))
      buf = buf.slice(nl + 1)
      for (const w of waiters.splice(0)) w()
    }
  })
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  const next = async () => {
    while (lines.length === 0) await new Promise((r) => waiters.push(r))
    return lines.shift()
  }
  return { next, exited }
}

test('cluster, two processes: 20 + 20 concurrent logins of one user leave exactly n; a revocation racing the other process\'s replaces brings none back', { timeout: 120_000 }, async () => {
  const cfg = { nodes, prefix: 'procs:', maxSessionsPerUser: 5 }
  const store = rs.redis({ ...cfg, userOf })
  await store.length()
  const other = child(`const s = rs.redis(cfg); await s.length(); say('ready');
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.set('c' + i, { user: 'ada', i }, 3600000))); say('done'); await s.close()`, cfg)
  assert.equal(await other.next(), 'ready')
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`p${i}`, { user: 'ada', i }, HOUR)))
  assert.equal(await other.next(), 'done')
  assert.equal(await other.exited, 0)
  const left = await store.sessionsOf('ada')
  assert.equal(left.length, 5, JSON.stringify(left.map((s) => s.id)))
  assert.equal(await store.length(), 5, 'the others were removed')

  // bob's 30 sessions; the child replaces and updates them while this process revokes bob
  const open = rs.redis({ nodes, prefix: 'procs:', userOf })
  for (let i = 0; i < 30; i++) await open.set(`b${i}`, { user: 'bob', i }, HOUR)
  const writer = child(`const s = rs.redis({ nodes: cfg.nodes, prefix: cfg.prefix, userOf: cfg.userOf }); say('ready'); let last = []; let round = 0;
    for (const end = Date.now() + 60000; Date.now() < end; round++) {
      last = await Promise.all(Array.from({ length: 30 }, (_, i) => round % 2 ? s.replace('b' + i, { user: 'bob', i, round }, 3600000) : s.update('b' + i, 3600000)));
      if (round === 1) say(last);
      if (round > 1 && last.every((x) => !x)) break;
    }
    say({ last, round }); await s.close()`, cfg)
  assert.equal(await writer.next(), 'ready')
  assert.deepEqual(await writer.next(), Array(30).fill(true), 'writing before the revocation')
  assert.equal(await open.revokeUser('bob'), 30)
  for (let i = 0; i < 30; i++) assert.equal(await open.get(`b${i}`), null, `b${i} stays revoked`)
  const { last, round } = await writer.next()
  assert.equal(await writer.exited, 0)
  assert.ok(round > 1, `the writes went on around the revocation (${round} rounds)`)
  assert.deepEqual(last, Array(30).fill(false), 'the writes after the revocation found nothing')
  for (let i = 0; i < 30; i++) assert.equal(await open.get(`b${i}`), null)
  assert.deepEqual(await open.sessionsOf('bob'), [])
  await open.clear()
  await open.close()
  await store.close()
})
