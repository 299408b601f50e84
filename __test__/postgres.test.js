'use strict'
// The PostgreSQL store against a private PostgreSQL server the tests start
// (support/postgres-server.js): connect-pg-simple's table, atomic ops,
// hostile ids, the codec's layout, outages and recovery, the sweeper, locks.
const test = require('node:test')
const assert = require('node:assert/strict')
const rs = require('..')
const { startPostgres } = require('./support/postgres-server')
const { checkAdd, counterRace } = require('./support/counter-race')
const { freePort, waitFor, sleep } = require('./support/redis-servers')

const session = (i = 0) => ({ user: `u${i}`, roles: ['a', 'b'], n: i })

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.code, code, `${e.code}: ${e.message}`)
    return true
  })
}

let server
let tables = 0
/** A store on a table of its own (tests do not see each other's rows). */
const fresh = (opts = {}) => {
  const table = opts.table ?? `t${++tables}`
  return { table, store: rs.postgres({ url: server.url, table, ...opts }) }
}

test.before(async () => {
  server = await startPostgres()
})
test.after(async () => {
  await server.destroy()
})

test('postgres: the store shape on connect-pg-simple\'s table, made when missing', async () => {
  const { table, store } = fresh()
  try {
    await store.set('a', session(1), 60_000)
    assert.deepEqual(await store.get('a'), session(1))
    // (seconds, rounded: a busy machine may take over half a second to get here)
    const ttl = await store.ttl('a')
    assert.ok(ttl === 60 || ttl === 59, `ttl ${ttl}`)
    const cols = await server.sql(`SELECT column_name || ':' || data_type FROM information_schema.columns WHERE table_name = '${table}' ORDER BY ordinal_position`)
    assert.deepEqual(cols.split('\n'), ['sid:character varying', 'sess:json', 'expire:timestamp without time zone'])
    assert.equal(await server.sql(`SELECT indexname FROM pg_indexes WHERE tablename = '${table}' ORDER BY indexname`), `IDX_${table}_expire\n${table}_pkey`)
    assert.equal(await server.sql(`SELECT sess FROM "${table}" WHERE sid = 'a'`), JSON.stringify(session(1)), 'stored as the JSON text')
    const left = Number(await server.sql(`SELECT extract(epoch FROM expire::timestamptz - now()) FROM "${table}" WHERE sid = 'a'`))
    assert.ok(left > 55 && left <= 60, `expire ~60 s ahead: ${left}`)
    assert.equal(await store.exists('a'), true)
    assert.equal(await store.update('a', 120_000), true)
    assert.ok((await store.ttl('a')) >= 119, 'update moved the expiry')
    assert.equal(await store.update('missing', 1000), false)
    assert.equal(await server.sql(`SELECT count(*) FROM "${table}" WHERE sid = 'missing'`), '0', 'update never creates')
    await store.set('text', '{"json":"text"}', 60_000)
    assert.deepEqual(await store.get('text'), { json: 'text' })
    await store.set('forever', session(), Infinity)
    assert.equal(await store.ttl('forever'), -1)
    assert.equal(await server.sql(`SELECT expire FROM "${table}" WHERE sid = 'forever'`), 'infinity')
    assert.equal(await store.length(), 3)
    assert.deepEqual((await store.ids()).sort(), ['a', 'forever', 'text'])
    assert.deepEqual((await store.entries()).map((e) => e.id).sort(), ['a', 'forever', 'text'])
    assert.equal((await store.all()).length, 3)
    assert.equal(await store.replace('a', session(2), 60_000), true)
    assert.deepEqual(await store.get('a'), session(2))
    assert.equal(await store.remove('a'), true)
    assert.equal(await store.remove('a'), false)
    assert.equal(await store.replace('a', session(3), 60_000), false, 'replace never recreates a removed session')
    assert.equal(await store.get('a'), null)
    assert.equal(await store.ttl('a'), -2)
    assert.equal(await store.clear(), 2)
    assert.equal(await store.length(), 0)
    const other = rs.postgres({ url: server.url, table })
    await checkAdd([store, other])
    await other.close()
  } finally {
    await store.close()
  }
})

test('postgres: expired rows are invisible at once, to every op', async () => {
  const { table, store } = fresh()
  try {
    await store.set('live', session(), 60_000)
    await server.sql(`INSERT INTO "${table}" VALUES ('old', '{"old":true}', now() - interval '1 second')`)
    assert.equal(await store.get('old'), null)
    assert.equal(await store.exists('old'), false)
    assert.equal(await store.ttl('old'), -2)
    assert.equal(await store.update('old', 60_000), false)
    assert.equal(await store.replace('old', session(), 60_000), false)
    assert.equal(await store.remove('old'), false, 'removing an expired row removes no live session')
    await server.sql(`INSERT INTO "${table}" VALUES ('old', '{"old":true}', now() - interval '1 second')`)
    assert.equal(await store.length(), 1)
    assert.deepEqual(await store.ids(), ['live'])
    assert.deepEqual((await store.scan('', 10)).sessions.map((s) => s.id), ['live'])
    assert.equal(await store.add('old', { fresh: 1 }, 60_000), true, 'an expired row does not block add')
    assert.deepEqual(await store.get('old'), { fresh: 1 })
  } finally {
    await store.close()
  }
})

test('postgres: scan and walk page through every live session in id order', async () => {
  const { store } = fresh()
  try {
    const ids = Array.from({ length: 250 }, (_, i) => `w${String(i).padStart(3, '0')}`)
    const setAt = Date.now()
    await Promise.all(ids.map((id, i) => store.set(id, session(i), i % 2 ? 60_000 : Infinity)))
    const first = await store.scan('', 100)
    assert.equal(first.sessions.length, 100)
    assert.equal(first.cursor, 'w099')
    assert.deepEqual(JSON.parse(first.sessions[1].text), session(1))
    assert.equal(first.sessions[0].ttl, -1)
    // it counts down from the write (seconds on a busy machine)
    const ttl = first.sessions[1].ttl
    assert.ok(ttl <= 60 && ttl >= 60 - Math.ceil((Date.now() - setAt) / 1000) - 1, `ttl ${ttl}`)
    const seen = []
    for await (const s of store.walk({ count: 64 })) seen.push(s.id)
    assert.deepEqual(seen, ids)
  } finally {
    await store.close()
  }
})

test('postgres: calls on one id apply in call order when not awaited, in one round trip per tick', async () => {
  const { table, store } = fresh()
  try {
    const seen = []
    const ops = []
    for (let i = 0; i < 200; i++) {
      ops.push(store.set('k', { i }, 60_000))
      ops.push(store.get('k').then((s) => seen.push(s.i)))
    }
    ops.push(store.remove('k'))
    ops.push(store.update('k', 60_000).then((found) => assert.equal(found, false, 'update after remove finds nothing')))
    ops.push(store.get('k').then((s) => assert.equal(s, null)))
    await Promise.all(ops)
    assert.deepEqual(seen, Array.from({ length: 200 }, (_, i) => i))
    assert.equal(await server.sql(`SELECT count(*) FROM "${table}"`), '0')
  } finally {
    await store.close()
  }
})

test('postgres: hostile ids are stored apart, bound as parameters; NUL is refused with a code', async () => {
  const { table, store } = fresh({ table: 'odd "name"; DROP TABLE x; --' })
  try {
    const ids = ["'", "''", '\\', '%', '_', '%_%', "a'; DROP TABLE session; --", '"', '€'.repeat(341), 'ü'.repeat(512), '\u{1F600}'.repeat(256), ' sp ', '\r\n']
    assert.equal(Buffer.byteLength(ids[8]), 1023)
    await Promise.all(ids.map((id, i) => store.set(id, { id, i }, 60_000)))
    for (const [i, id] of ids.entries()) assert.deepEqual(await store.get(id), { id, i }, JSON.stringify(id))
    assert.equal(await store.length(), ids.length)
    assert.deepEqual((await store.ids()).sort(), [...ids].sort())
    // LIKE wildcards are not wildcards here: removing '%' removes only '%'
    assert.equal(await store.remove('%'), true)
    assert.equal(await store.length(), ids.length - 1)
    await rejectsWith(store.set('nul\0id', session(), 1000), 'ERR_INVALID_ID')
    await rejectsWith(store.remove('nul\0id'), 'ERR_INVALID_ID')
    assert.equal(await store.length(), ids.length - 1, 'nothing else was touched')
    await rejectsWith(store.set('x'.repeat(1025), session(), 1000), 'ERR_INVALID_ID')
    // a session string with a NUL escape is JSON and stays intact
    await store.set('esc', { s: 'a\u0000b' }, 60_000)
    assert.deepEqual(await store.get('esc'), { s: 'a\u0000b' })
    assert.equal(await server.sql(`SELECT count(*) FROM "${table.replaceAll('"', '""')}"`), String(ids.length))
  } finally {
    await store.close()
  }
})

test('postgres: options are checked; unknown ones refused', () => {
  const bad = (cfg, re) => assert.throws(() => rs.postgres(cfg), (e) => e.code === 'ERR_INVALID_OPTION' && (!re || re.test(e.message)), String(re))
  bad({ url: server.url, prot: 1 }, /'prot' \(did you mean 'port'\?\)/)
  bad({ url: server.url, table: '' }, /table/)
  bad({ url: server.url, table: 'x'.repeat(60) }, /table/)
  bad({ url: server.url, schema: 'a\0b' }, /schema/)
  bad('http://nope', /postgres:\/\//)
  bad({ url: server.url, tls: { rejectUnauthorized: false } }, /rejectUnauthorized/)
  bad({ url: server.url, tls: { cert: '-----BEGIN CERTIFICATE-----' } }, /key/)
  bad({ url: server.url, poolSize: 0 }, /poolSize/)
  bad({ url: server.url, tableName: 'a', table: 'b' }, /either/)
})

test('postgres: several processes\' stores starting at once on a missing table all work (created once, under an advisory lock)', async () => {
  const table = 'raced'
  const stores = Array.from({ length: 6 }, () => rs.postgres({ url: server.url, table, poolSize: 1 }))
  try {
    await Promise.all(stores.map((s, i) => s.set(`s${i}`, session(i), 60_000)))
    for (const s of stores) assert.equal(await s.length(), 6)
  } finally {
    await Promise.all(stores.map((s) => s.close()))
  }
})

test('postgres: createTable: false and no table → ERR_INVALID_OPTION naming it', async () => {
  const store = rs.postgres({ url: server.url, table: 'never_made', createTable: false })
  try {
    await rejectsWith(store.get('a'), 'ERR_INVALID_OPTION')
    assert.equal(await server.sql("SELECT to_regclass('never_made') IS NULL"), 't')
  } finally {
    await store.close()
  }
})

test('postgres: with a secret, sess holds {"rs-store.v1": base64} and no plaintext; without one the same rows are refused', async () => {
  const secret = 's'.repeat(64)
  const { table, store } = fresh({ secret, compress: true })
  const reports = []
  const plain = rs.postgres({ url: server.url, table, onError: (e) => reports.push(e) })
  try {
    await store.set('enc', { card: '4111 1111' }, 60_000)
    assert.deepEqual(await store.get('enc'), { card: '4111 1111' })
    const raw = await server.sql(`SELECT sess FROM "${table}" WHERE sid = 'enc'`)
    assert.match(raw, /^\{"rs-store\.v1":"[A-Za-z0-9+/=]+"\}$/)
    assert.ok(!raw.includes('4111'))
    assert.equal(await plain.get('enc'), null)
    assert.equal(reports[0]?.code, 'ERR_CORRUPT_DATA')
  } finally {
    await store.close()
    await plain.close()
  }
})

test('postgres: down at start → ERR_STORE_UNAVAILABLE within commandTimeoutMs, then recovers by itself', async () => {
  const port = await freePort()
  const store = rs.postgres({ host: '127.0.0.1', port, user: server.user, password: server.password, database: 'postgres', commandTimeoutMs: 800 })
  try {
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now()
      await rejectsWith(store.get('a'), 'ERR_STORE_UNAVAILABLE')
      await rejectsWith(store.set('a', session(), 1000), 'ERR_STORE_UNAVAILABLE')
      assert.ok(Date.now() - t0 < 1600, `rejected in ${Date.now() - t0} ms`)
    }
    const late = await startPostgres({ port })
    try {
      const t0 = Date.now()
      await waitFor('recovery', async () => {
        await store.set('a', session(9), 60_000)
        return true
      })
      assert.ok(Date.now() - t0 < 1500, `working ${Date.now() - t0} ms after the server was ready`)
      assert.deepEqual(await store.get('a'), session(9))
    } finally {
      await late.destroy()
    }
  } finally {
    await store.close()
  }
})

test('postgres: a server that accepts but never answers: every call rejects within commandTimeoutMs', async () => {
  const net = require('node:net')
  const sockets = []
  const mute = net.createServer((s) => sockets.push(s))
  await new Promise((r) => mute.listen(0, '127.0.0.1', r))
  const store = rs.postgres({ host: '127.0.0.1', port: mute.address().port, user: 'u', password: 'p', database: 'd', commandTimeoutMs: 500 })
  try {
    const calls = []
    for (let i = 0; i < 6; i++) {
      const t0 = Date.now()
      calls.push(store.get(`k${i}`).then(() => assert.fail('resolved'), (e) => ({ code: e.code, ms: Date.now() - t0 })))
      await sleep(60)
    }
    for (const { code, ms } of await Promise.all(calls)) {
      assert.equal(code, 'ERR_STORE_UNAVAILABLE')
      assert.ok(ms < 900, `rejected after ${ms} ms (commandTimeoutMs 500)`)
    }
  } finally {
    await store.close()
    sockets.forEach((s) => s.destroy())
    mute.close()
  }
})

test('postgres: wrong password is ERR_STORE_AUTH; the right one works', async () => {
  const wrong = rs.postgres({ host: '127.0.0.1', port: server.port, user: server.user, password: 'nope', database: 'postgres' })
  const right = rs.postgres({ host: '127.0.0.1', port: server.port, user: server.user, password: server.password, database: 'postgres', table: 'auth' })
  try {
    await rejectsWith(wrong.get('a'), 'ERR_STORE_AUTH')
    await rejectsWith(wrong.set('a', session(), 1000), 'ERR_STORE_AUTH')
    await right.set('a', session(), 60_000)
    assert.deepEqual(await right.get('a'), session())
  } finally {
    await wrong.close()
    await right.close()
  }
})

for (const signal of ['SIGINT', 'SIGQUIT']) {
  test(`postgres: stopped mid-load (${signal}) and started again → only ERR_STORE_UNAVAILABLE, no hang, recovery within about a second`, { timeout: 120_000 }, async () => {
    const own = await startPostgres()
    const store = rs.postgres({ url: own.url, commandTimeoutMs: 1000 })
    const unhandled = []
    const onUnhandled = (e) => unhandled.push(e)
    process.on('unhandledRejection', onUnhandled)
    let back
    try {
      let stop = false
      const codes = new Map()
      let ok = 0
      let slowest = 0
      const load = (async () => {
        let i = 0
        while (!stop) {
          const batch = []
          for (let k = 0; k < 20; k++, i++) {
            const t0 = Date.now()
            const took = () => (slowest = Math.max(slowest, Date.now() - t0))
            batch.push(
              (k % 2 ? store.set(`s${i % 100}`, session(i), 60_000) : store.get(`s${i % 100}`)).then(
                () => (took(), ok++),
                (e) => (took(), codes.set(e.code, (codes.get(e.code) || 0) + 1)),
              ),
            )
          }
          await Promise.all(batch)
          await sleep(5)
        }
      })()
      await waitFor('load running', () => ok > 100)
      await own.stop(signal)
      await sleep(500)
      back = await own.restart()
      const t0 = Date.now()
      await waitFor('writes succeed again', async () => {
        const before = ok
        await sleep(20)
        return ok > before
      })
      const recovery = Date.now() - t0
      stop = true
      await load
      assert.ok(codes.get('ERR_STORE_UNAVAILABLE') > 0, 'calls failed while PostgreSQL was down')
      assert.deepEqual([...codes.keys()], ['ERR_STORE_UNAVAILABLE'])
      assert.ok(slowest < 1600, `every call settled within commandTimeoutMs (slowest ${slowest} ms)`)
      assert.ok(recovery < 1500, `recovered ${recovery} ms after the server was ready`)
      assert.deepEqual(unhandled, [])
    } finally {
      process.off('unhandledRejection', onUnhandled)
      await store.close()
      await (back || own).destroy()
    }
  })
}

test('postgres: the sweeper deletes expired rows in batches; live ones stay', async () => {
  const { table, store } = fresh({ sweepIntervalMs: 50 })
  try {
    await store.set('live', session(), 60_000)
    await server.sql(`INSERT INTO "${table}" SELECT 'old' || i, '{}', now() - interval '1 minute' FROM generate_series(1, 2500) i`)
    await waitFor('expired rows swept', async () => (await server.sql(`SELECT count(*) FROM "${table}"`)) === '1')
    assert.deepEqual(await store.get('live'), session())
  } finally {
    await store.close()
  }
})

test('postgres locks: two OS processes × 1,000 locked cycles lose nothing; without locks they do', { timeout: 180_000 }, async () => {
  const url = await server.createDatabase('locks')
  const expr = `rs.postgres({ url: ${JSON.stringify(url)}, table: 'cnt' })`
  const setup = rs.postgres({ url, table: 'cnt' })
  try {
    assert.equal(await counterRace(expr, setup, { locked: true, cycles: 1000 }), 2000, 'exact with the lock table')
    assert.ok((await counterRace(expr, setup, { locked: false, cycles: 1000 })) < 2000, 'without locks, updates are lost')
    const l = await setup.lock('counter')
    assert.equal(await setup.length(), 1, 'locks are not sessions')
    assert.equal(await server.sql('SELECT count(*) FROM cnt_lock', 'locks'), '1')
    await l.release()
    assert.equal(await server.sql('SELECT count(*) FROM cnt_lock', 'locks'), '0')
  } finally {
    await setup.close()
  }
})

test('postgres cli: postgres:// and connect-pg-simple:postgres:// as stores, migrate included', async () => {
  const { spawn } = require('node:child_process')
  const BIN = require('node:path').join(__dirname, '../bin/rs-store.js')
  const cli = (args) =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      let err = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (err += d))
      child.once('exit', (code) => resolve({ code, out, err }))
    })
  const ok = async (args) => {
    const r = await cli(args)
    assert.equal(r.code, 0, `rs-store ${args.join(' ')}: ${r.err}`)
    return r.out
  }
  const from = await server.createDatabase('cli_from')
  const to = await server.createDatabase('cli_to')
  const src = rs.postgres(from)
  const dst = rs.postgres(to)
  try {
    await src.set('ada', { user: 'ada' }, 600_000)
    await src.set("o'brien", { user: 'ob' }, Infinity)
    assert.deepEqual(JSON.parse(await ok(['get', from, 'ada', '--json'])), { user: 'ada' })
    await ok(['set', from, 'cli', '{"by":"cli"}', '--ttl', '600'])
    assert.deepEqual(await src.get('cli'), { by: 'cli' })
    const moved = JSON.parse(await ok(['migrate', `connect-pg-simple:${from}`, to, '--json']))
    assert.equal(moved.migrated, 3)
    assert.deepEqual((await dst.ids()).sort(), ['ada', 'cli', "o'brien"])
    assert.equal(await dst.ttl("o'brien"), -1, 'no expiry carried over')
    assert.ok((await dst.ttl('ada')) > 590, 'the ttl carried over')
    const t = await server.sql("SELECT count(*) FROM session", 'cli_to')
    assert.equal(t, '3')
    // --table and --schema name another table
    await ok(['set', to, 'other', '{}', '--table', 'elsewhere'])
    assert.equal(await server.sql('SELECT sid FROM elsewhere', 'cli_to'), 'other')
  } finally {
    await src.close()
    await dst.close()
  }
})
