'use strict'
// A worker of __test__/workers.test.js's pools: loads rs-store (the main
// thread never does) and uses a memory, a file, a sessions.json and two
// Redis stores (the JS-thread socket and the I/O thread) at once.
// workerData: { tag, dir, redisUrl, busy }. Without `busy` it checks every
// round trip, closes its stores and posts { ok, checked }; with `busy` it
// posts 'busy' once calls are in flight and keeps calling (a bounded loop)
// until the main thread terminates it.
const { parentPort, workerData } = require('node:worker_threads')
const path = require('node:path')
const rs = require('../..')

const { tag, dir, redisUrl, busy } = workerData

function open() {
  return {
    memory: rs.memory(),
    file: rs.file({ dir: path.join(dir, 'files') }),
    json: rs.file({ sessionStateFile: path.join(dir, `${tag}.json`) }),
    redis: rs.redis({ url: redisUrl, prefix: `${tag}:` }),
    redisIo: rs.redis({ url: redisUrl, prefix: `${tag}:io:`, ioThread: true }),
  }
}

/** `n` sessions set, read back and half of them destroyed, all calls at once. */
async function round(store, name, n, r) {
  const ids = Array.from({ length: n }, (_, i) => `${tag}-${name}-${r}-${i}`)
  await Promise.all(ids.map((id, i) => store.set(id, { tag, name, i }, 60_000)))
  const got = await Promise.all(ids.map((id) => store.get(id)))
  got.forEach((v, i) => {
    if (!v || v.tag !== tag || v.name !== name || v.i !== i) throw new Error(`${name}: ${ids[i]} read back as ${JSON.stringify(v)}`)
  })
  await Promise.all(ids.filter((_, i) => i % 2).map((id) => store.destroy(id)))
  const left = await Promise.all(ids.map((id) => store.get(id)))
  left.forEach((v, i) => {
    if ((v === null) !== (i % 2 === 1)) throw new Error(`${name}: ${ids[i]} after destroying every other one: ${JSON.stringify(v)}`)
  })
  return n
}

async function main() {
  const stores = open()
  if (busy) {
    let posted = false
    // Bounded: the main thread terminates this worker long before it ends.
    for (let r = 0; r < 10_000; r++) {
      const calls = Object.entries(stores).map(([name, s]) => round(s, name, 20, r))
      if (!posted) {
        posted = true
        parentPort.postMessage('busy')
      }
      await Promise.all(calls)
    }
    return
  }
  let checked = 0
  for (let r = 0; r < 3; r++) {
    const counts = await Promise.all(Object.entries(stores).map(([name, s]) => round(s, name, 20, r)))
    checked += counts.reduce((a, b) => a + b, 0)
  }
  await Promise.all(Object.values(stores).map((s) => s.close()))
  parentPort.postMessage({ ok: true, checked })
}

main().catch((e) => parentPort.postMessage({ ok: false, error: `${e.code || ''} ${e.stack}` }))
