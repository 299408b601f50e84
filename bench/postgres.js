'use strict'
// PostgreSQL stores side by side against one private server started here:
// rs-store postgres vs connect-pg-simple 10 (node-postgres pool, its own
// SQL), at 1 and 50 calls in flight, on one table each. CPU is this
// process's (the app's side: the server's is not counted).
const { promisify } = require('node:util')
const session = require('express-session')
const rs = require('..')
const { startPostgres } = require('../__test__/support/postgres-server')
const { benchSession, ids, fill, setGetCases, compare, table } = require('./harness')

const N = 10_000
const TTL_MS = 3_600_000

module.exports = async function postgresBench({ ms }) {
  const server = await startPostgres()
  const url = await server.createDatabase('bench')
  const keys = ids(N)
  const sess = benchSession()
  const text = JSON.stringify(sess)
  const PgStore = require('connect-pg-simple')(session)
  const { Pool } = require('pg')
  const pool = new Pool({ connectionString: url, max: 10 })
  pool.on('error', () => {}) // the server stopping at the end
  const peer = new PgStore({ pool, tableName: 'cps', createTableIfMissing: true, pruneSessionInterval: false, ttl: TTL_MS / 1000 })
  const ours = rs.postgres({ url, table: 'rs' })
  const contenders = [
    { name: 'connect-pg-simple (pg)', set: promisify(peer.set.bind(peer)), get: promisify(peer.get.bind(peer)) },
    { name: 'rs-store postgres', set: (id, s) => ours.set(id, s, TTL_MS), get: ours.get },
  ]
  await fill(contenders, keys, sess, 100)
  const cases = setGetCases(keys, sess)
  const rows = await compare(contenders, cases, { ms: ms * 3, rounds: 5 })
  await ours.close()
  peer.close()
  await pool.end()
  await server.destroy()
  table(`PostgreSQL stores (${N} sessions, ${text.length}-byte session, ops/s at 1 and 50 calls in flight), ratios to connect-pg-simple`, rows, ['set@1', 'get@1', 'set@50', 'get@50'], 'connect-pg-simple (pg)')
  return rows
}
