'use strict'
// rs.postgres and the real connect-pg-simple (with node-postgres) on one
// table: express apps switching both ways without logging anybody out, two
// app processes sharing the table, an app restarted, and the rows each one
// writes read by the other directly.
const test = require('node:test')
const assert = require('node:assert/strict')
const rs = require('..')
const { startPostgres } = require('./support/postgres-server')
const { startApp, spawnApp, client } = require('./support/web-apps')

let server
test.before(async () => {
  server = await startPostgres()
})
test.after(async () => {
  await server.destroy()
})

test('connect-pg-simple: express sessions move between connect-pg-simple and rs-store on one table, both ways', async () => {
  const url = await server.createDatabase('both_ways')
  const peer = await startApp('express', { spec: { kind: 'connect-pg-simple', url } })
  const ours = await startApp('express', { spec: { kind: 'postgres', url } })
  try {
    const c = client(peer.port)
    assert.equal((await c.get('/login?user=grace')).text, 'hello grace')
    assert.equal((await c.get('/')).text, 'visits: 1')
    const raw = JSON.parse(await server.sql(`SELECT sess FROM session WHERE sid = '${c.sessionId()}'`, 'both_ways'))
    assert.equal(raw.user, 'grace')
    c.port = ours.port
    assert.equal((await c.get('/')).text, 'visits: 2', 'rs-store reads what connect-pg-simple wrote')
    assert.equal((await c.get('/')).text, 'visits: 3')
    const left = Number(await server.sql(`SELECT extract(epoch FROM expire::timestamptz - now()) FROM session WHERE sid = '${c.sessionId()}'`, 'both_ways'))
    assert.ok(left > 3580 && left <= 3600, `rs-store keeps the cookie's ttl in expire (${left})`)
    assert.equal(JSON.parse(await server.sql(`SELECT sess FROM session WHERE sid = '${c.sessionId()}'`, 'both_ways')).visits, 3, 'and writes plain JSON')
    c.port = peer.port
    assert.equal((await c.get('/')).text, 'visits: 4', 'connect-pg-simple reads what rs-store wrote')
    c.port = ours.port
    assert.equal((await c.get('/logout')).text, 'bye')
    c.port = peer.port
    assert.equal((await c.get('/peek')).text, 'visits: 0', 'a logout through rs-store is a logout for connect-pg-simple')
  } finally {
    await peer.close()
    await ours.close()
  }
})

test('connect-pg-simple: the table connect-pg-simple made is used as it is; rows written by either are read by the other, hostile ids included', async () => {
  const url = await server.createDatabase('rows')
  const { store: peer, close } = await require('./support/web-apps').expressSessionStore({ kind: 'connect-pg-simple', url })
  const cb = (fn) => new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))))
  const ours = rs.postgres({ url })
  try {
    const ids = ["'", '\\', '%', '_', "x'; DROP TABLE session; --", '€'.repeat(341)]
    const cookie = { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000).toISOString(), httpOnly: true, path: '/' }
    for (const id of ids) await cb((done) => peer.set(id, { cookie, by: 'peer', id }, done))
    assert.equal(await server.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'session' ORDER BY indexname", 'rows'), 'IDX_session_expire\nsession_pkey', 'connect-pg-simple made the table')
    for (const id of ids) assert.equal((await ours.get(id)).by, 'peer', JSON.stringify(id))
    assert.equal(await ours.length(), ids.length)
    for (const id of ids) await ours.set(id, { cookie, by: 'ours', id }, 60_000)
    for (const id of ids) assert.equal((await cb((done) => peer.get(id, done))).by, 'ours', JSON.stringify(id))
    await ours.remove(ids[0])
    assert.equal((await cb((done) => peer.get(ids[0], done))) ?? null, null, 'removed for connect-pg-simple too')
    assert.equal((await cb((done) => peer.get(ids[1], done))).id, ids[1], 'the other rows are intact')
  } finally {
    await ours.close()
    await close()
  }
})

test('connect-pg-simple: two app processes on one table share sessions; an app restarted keeps them', { timeout: 120_000 }, async () => {
  const url = await server.createDatabase('shared')
  const spec = { kind: 'postgres', url }
  const a = await spawnApp('express', { spec })
  let b = await spawnApp('express', { spec })
  try {
    const browsers = Array.from({ length: 5 }, () => client(a.port))
    for (const [i, c] of browsers.entries()) {
      assert.equal((await c.get(`/login?user=u${i}`)).text, `hello u${i}`)
      assert.equal((await c.get('/')).text, 'visits: 1')
      c.port = b.port
      assert.equal((await c.get('/')).text, 'visits: 2', 'the other process reads it')
    }
    const port = b.port
    await b.stop()
    b = await spawnApp('express', { spec, port })
    for (const c of browsers) assert.equal((await c.get('/')).text, 'visits: 3', 'after a restart')
    assert.equal(await server.sql('SELECT count(*) FROM session', 'shared'), '5')
  } finally {
    await a.stop()
    await b.stop()
  }
})
