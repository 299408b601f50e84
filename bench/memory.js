'use strict'
// Memory stores side by side: rs-store memory (bounded) vs express-session's
// MemoryStore and memorystore, set and get of the same ~430-byte session,
// at 1 and 50 calls in flight.
const { promisify } = require('node:util')
const session = require('express-session')
const createMemoryStore = require('memorystore')
const rs = require('..')
const { benchSession, ids, fill, setGetCases, compare, table } = require('./harness')

const N = 10_000 // sessions in the store while measuring

function callbackStore(store) {
  return {
    set: promisify(store.set.bind(store)),
    get: promisify(store.get.bind(store)),
    close: () => store.stopInterval && store.stopInterval(),
  }
}

module.exports = async function memoryBench({ ms }) {
  const keys = ids(N)
  const sess = benchSession()
  const MemoryStore = createMemoryStore(session)
  const contenders = [
    { name: 'express-session MemoryStore', make: () => callbackStore(new session.MemoryStore()) },
    { name: 'memorystore', make: () => callbackStore(new MemoryStore({ checkPeriod: 60_000, max: 100_000 })) },
    {
      name: 'rs-store memory',
      make: () => {
        const s = rs.memory({ maxEntries: 100_000, maxBytes: 256 * 1024 * 1024 })
        return { set: (id, v) => s.set(id, v, 3_600_000), get: s.get, close: s.close }
      },
    },
  ]
  const stores = contenders.map((c) => ({ name: c.name, ...c.make() }))
  await fill(stores, keys, sess)
  const cases = setGetCases(keys, sess)
  const rows = await compare(stores, cases, { ms: ms * 2, rounds: 5 })
  for (const s of stores) await s.close()
  table(`Memory stores (${N} sessions, ${JSON.stringify(sess).length}-byte session; ops/s and CPU µs per call at 1 and 50 calls in flight)`, rows, Object.keys(cases), 'express-session MemoryStore')
  return rows
}
