'use strict'
// What rs-store's own napi calls cost per Redis call on the JS-thread
// connection (lib/redis-wire.js), with no server and no socket: queue 50
// calls (`q`), pack them (`pack`), then parse a canned reply to all 50
// (`feed`), in a loop. The rest of a call's CPU (JSON, promises, the
// socket, the kernel) is Node's and is in the `redis` section's figures.
const native = require('../lib/native')
const { redisConfig } = require('../lib/redis')
const { benchSession } = require('./harness')

const BATCH = 50

function crossings(op, text, rounds) {
  // Never connected: the wire is only fed what this loop hands it.
  const h = native.wireStore(native.redisWireStore({ ...redisConfig('redis://127.0.0.1:1'), session: {} }))
  h.opened()
  const ids = Array.from({ length: BATCH }, (_, i) => `bench-wire-session-${String(i).padStart(8, '0')}`)
  const reply = Buffer.from((op === 'set' ? '+OK\r\n' : `$${Buffer.byteLength(text)}\r\n${text}\r\n`).repeat(BATCH))
  const t = [0n, 0n, 0n]
  for (let r = 0; r < rounds; r++) {
    const a = process.hrtime.bigint()
    for (const id of ids) op === 'set' ? h.q('set', id, text, 3_600_000) : h.q('get', id)
    const b = process.hrtime.bigint()
    h.pack()
    const c = process.hrtime.bigint()
    const out = h.feed(reply)
    const d = process.hrtime.bigint()
    if (out.length !== BATCH || (op === 'get' && out[0] !== text)) throw new Error(`wire bench: unexpected answer to ${op}`)
    t[0] += b - a
    t[1] += c - b
    t[2] += d - c
  }
  return t.map((x) => Number(x) / (rounds * BATCH))
}

module.exports = async function wireBench({ ms }) {
  const text = JSON.stringify(benchSession())
  const rounds = Math.max(200, Math.round(ms * 4))
  console.log(`\n## Redis on the JS thread: rs-store's napi calls per call (${text.length}-byte session, batches of ${BATCH}, no server; medians of 7 loops), ns`)
  console.log('| call | q (queue) | pack (the batch) | feed (parse, answer) | total |')
  console.log('|---|---|---|---|---|')
  const rows = []
  for (const op of ['set', 'get']) {
    crossings(op, text, 100) // warm-up
    const runs = Array.from({ length: 7 }, () => crossings(op, text, rounds))
    const med = (k) => runs.map((r) => r[k]).sort((x, y) => x - y)[3]
    const row = { name: op, q: med(0), pack: med(1), feed: med(2) }
    row.total = row.q + row.pack + row.feed
    console.log(`| ${op} | ${row.q.toFixed(0)} | ${row.pack.toFixed(0)} | ${row.feed.toFixed(0)} | ${row.total.toFixed(0)} |`)
    rows.push(row)
  }
  return rows
}
