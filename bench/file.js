'use strict'
// File stores side by side: rs-store file (one file per session) vs
// session-file-store, express-session's MemoryStore as a reference; set and
// get of the same session, one call in flight, in a fresh temp directory.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { promisify } = require('node:util')
const session = require('express-session')
const FileStore = require('session-file-store')(session)
const rs = require('..')
const { benchSession, ids, fill, compare, table } = require('./harness')

const N = 2_000

module.exports = async function fileBench({ ms }) {
  const keys = ids(N)
  const sess = benchSession()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-bench-file-'))
  const sfs = new FileStore({ path: path.join(tmp, 'sfs'), ttl: 3600, retries: 0, reapInterval: -1, logFn: () => {} })
  const mem = new session.MemoryStore()
  const rsFile = rs.file({ dir: path.join(tmp, 'rs') })
  const contenders = [
    { name: 'express-session MemoryStore', set: promisify(mem.set.bind(mem)), get: promisify(mem.get.bind(mem)) },
    { name: 'session-file-store', set: promisify(sfs.set.bind(sfs)), get: promisify(sfs.get.bind(sfs)) },
    { name: 'rs-store file', set: (id, s) => rsFile.set(id, s, 3_600_000), get: rsFile.get },
  ]
  await fill(contenders, keys, sess)
  const rows = await compare(contenders, {
    'set@1': { op: (c) => (i) => c.set(keys[i % N], sess) },
    'get@1': { op: (c) => (i) => c.get(keys[i % N]) },
    'set@50': { inflight: 50, op: (c) => (i) => c.set(keys[i % N], sess) },
    'get@50': { inflight: 50, op: (c) => (i) => c.get(keys[i % N]) },
  }, { ms: ms * 2, rounds: 3 })
  await rsFile.close()
  fs.rmSync(tmp, { recursive: true, force: true })
  table(`File stores (${N} sessions, ${JSON.stringify(sess).length}-byte session; 1 and 50 calls in flight)`, rows, ['set@1', 'get@1', 'set@50', 'get@50'], 'session-file-store')
  return rows
}
