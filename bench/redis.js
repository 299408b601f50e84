'use strict'
// Redis stores side by side against one redis-server started here: rs-store
// redis vs connect-redis (node-redis 5) vs raw ioredis SET/GET (with the same
// JSON.stringify/JSON.parse), at 1 and 50 calls in flight. Also prints the
// main thread's own ceiling (JSON.stringify / JSON.parse of the session per
// second) and which fraction of it each store reaches.
const { promisify } = require('node:util')
const session = require('express-session')
const { RedisStore } = require('connect-redis')
const { createClient } = require('redis')
const IORedis = require('ioredis')
const rs = require('..')
const { startRedis } = require('../__test__/support/redis-servers')
const { benchSession, ids, fill, setGetCases, compare, table } = require('./harness')

const N = 10_000
const TTL_MS = 3_600_000

module.exports = async function redisBench({ ms }) {
  const server = await startRedis()
  const keys = ids(N)
  const sess = benchSession()
  const text = JSON.stringify(sess)
  const [ceilingRow] = await compare([{ name: 'json' }], {
    set: { op: () => () => Promise.resolve(JSON.stringify(sess)) },
    get: { op: () => () => Promise.resolve(JSON.parse(text)) },
  }, { ms, rounds: 3 })
  const ceiling = { set: ceilingRow.set, get: ceilingRow.get }
  const nodeRedis = createClient({ url: server.url })
  await nodeRedis.connect()
  const io = new IORedis(server.port, '127.0.0.1')
  const ioAuto = new IORedis(server.port, '127.0.0.1', { enableAutoPipelining: true })
  const connect = new RedisStore({ client: nodeRedis, prefix: 'cr:' })
  const rsStore = rs.redis({ url: server.url, prefix: 'rs:' })
  // The connection on rs-store's I/O thread (the path Cluster and Sentinel take).
  const rsThread = rs.redis({ url: server.url, prefix: 'rst:', ioThread: true })
  const secret = 'bench secret '.repeat(6)
  const rsSecret = rs.redis({ url: server.url, prefix: 'rss:', secret })
  const rsSecretThread = rs.redis({ url: server.url, prefix: 'rsst:', secret, ioThread: true })
  const contenders = [
    {
      name: 'connect-redis (node-redis 5)',
      set: promisify(connect.set.bind(connect)),
      get: promisify(connect.get.bind(connect)),
    },
    {
      name: 'ioredis',
      set: (id, s) => io.set(`io:${id}`, JSON.stringify(s), 'PX', TTL_MS),
      get: (id) => io.get(`io:${id}`).then((t) => (t === null ? null : JSON.parse(t))),
    },
    {
      name: 'ioredis (autopipelining)',
      set: (id, s) => ioAuto.set(`ioa:${id}`, JSON.stringify(s), 'PX', TTL_MS),
      get: (id) => ioAuto.get(`ioa:${id}`).then((t) => (t === null ? null : JSON.parse(t))),
    },
    { name: 'rs-store redis', set: (id, s) => rsStore.set(id, s, TTL_MS), get: rsStore.get },
    { name: 'rs-store redis (I/O thread)', set: (id, s) => rsThread.set(id, s, TTL_MS), get: rsThread.get },
    { name: 'rs-store redis + secret', set: (id, s) => rsSecret.set(id, s, TTL_MS), get: rsSecret.get },
    { name: 'rs-store redis + secret (I/O thread)', set: (id, s) => rsSecretThread.set(id, s, TTL_MS), get: rsSecretThread.get },
  ]
  await fill(contenders, keys, sess, 100)
  const cases = setGetCases(keys, sess)
  const rows = await compare(contenders, cases, { ms: ms * 3, rounds: 5 })
  for (const st of [rsStore, rsThread, rsSecret, rsSecretThread]) await st.close()
  await nodeRedis.quit()
  io.disconnect()
  ioAuto.disconnect()
  await server.stop()

  const metrics = ['set@1', 'get@1', 'set@50', 'get@50']
  const title = `Redis stores (${N} sessions, ${text.length}-byte session, ops/s at 1 and 50 calls in flight)`
  table(`${title}, ratios to connect-redis`, rows, metrics, 'connect-redis (node-redis 5)')
  table(`${title}, ratios to ioredis`, rows, metrics, 'ioredis')
  console.log(`\nMain-thread ceiling: JSON.stringify ${(ceiling.set / 1000).toFixed(1)}k/s, JSON.parse ${(ceiling.get / 1000).toFixed(1)}k/s of this session.`)
  for (const r of rows) {
    console.log(`- ${r.name}: set@50 ${((100 * r['set@50']) / ceiling.set).toFixed(0)}% of the stringify ceiling, get@50 ${((100 * r['get@50']) / ceiling.get).toFixed(0)}% of the parse ceiling`)
  }
  return rows
}
