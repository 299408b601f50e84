'use strict'
// Per-user sessions on the file store (rs.file({ dir, userOf })) where it
// differs from the others: several processes on one directory (the cap
// and a revocation against another process's writes), the files it keeps
// (an index per user, none for a store without userOf), the sweep
// clearing index entries, an index lost or corrupt, and stores without
// userOf on the same directory. The common matrix is users.test.js.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const rs = require('..')

const userOf = (s) => s.user
const ids = async (store, user) => (await store.sessionsOf(user)).map((s) => s.id).sort()
const HOUR = 3_600_000

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-users-file-'))
test.after(() => fs.rmSync(root, { recursive: true, force: true }))
let dirs = 0
const newDir = () => path.join(root, `d${dirs++}`)
const filesOf = (dir, ext) => fs.readdirSync(dir).filter((n) => n.endsWith(ext))

/** A child process on the same directory running `body` (with `rs`, `dir`, `say`, `lines`); `say(x)` prints a JSON line. */
function child(dir, body) {
  const code = `const rs = require(${JSON.stringify(path.join(__dirname, '..'))}); const dir = ${JSON.stringify(dir)};
    const say = (x) => process.stdout.write(JSON.stringify(x) + '\\n');
    let stop = false; process.stdin.on('data', () => (stop = true)); process.stdin.on('end', () => (stop = true));
    (async () => { ${body} })().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })`
  const proc = spawn(process.execPath, ['-e', code], { stdio: ['pipe', 'pipe', 'inherit'] })
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
  return { next, exited, stop: () => proc.stdin.end('stop\n') }
}

test('file, two processes on one directory: 20 logins of one user in each at once leave exactly maxSessionsPerUser', { timeout: 120_000 }, async () => {
  const dir = newDir()
  const store = rs.file({ dir, userOf, maxSessionsPerUser: 5 })
  await store.length()
  for (let round = 0; round < 3; round++) {
    // Both start their logins on a line from the parent, once both are ready.
    const other = child(dir, `const s = rs.file({ dir, userOf: (x) => x.user, maxSessionsPerUser: 5 }); await s.length(); say('ready');
      await new Promise((r) => process.stdin.once('data', r));
      await Promise.all(Array.from({ length: 20 }, (_, i) => s.set('c${round}-' + i, { user: 'ada', i }, 3600000))); say('done'); await s.close()`)
    assert.equal(await other.next(), 'ready')
    other.stop()
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`p${round}-${i}`, { user: 'ada', i }, HOUR)))
    assert.equal(await other.next(), 'done')
    assert.equal(await other.exited, 0)
    const left = await store.sessionsOf('ada')
    assert.equal(left.length, 5, JSON.stringify(left.map((s) => s.id)))
    assert.equal(await store.length(), 5, 'the others were removed from the directory, not just unlisted')
    assert.equal(filesOf(dir, '.user').length, 1)
  }
  await store.close()
})

test("file, two processes: a revocation racing the other process's replaces and updates brings none back", { timeout: 120_000 }, async () => {
  const dir = newDir()
  const store = rs.file({ dir, userOf })
  const count = 40
  for (let i = 0; i < count; i++) await store.set(`s${i}`, { user: 'ada', i }, HOUR)
  // The child replaces and touches every session round after round, and
  // logs ada in from its side, until told to stop; then it replaces each once more.
  const writer = child(dir, `const s = rs.file({ dir, userOf: (x) => x.user });
    let round = 0;
    while (!stop) {
      await Promise.all(Array.from({ length: ${count} }, (_, i) => round % 2 ? s.replace('s' + i, { user: 'ada', i, round }, 3600000) : s.update('s' + i, 3600000)));
      await s.set('child' + round, { user: 'ada' }, 3600000);
      if (round++ === 1) say('started');
    }
    say(await Promise.all(Array.from({ length: ${count} }, (_, i) => s.replace('s' + i, { user: 'ada', i, last: true }, 3600000))));
    say(round); await s.close()`)
  assert.equal(await writer.next(), 'started')
  const revoked = await store.revokeUser('ada', { except: ['child0'] })
  assert.ok(revoked >= count, `revoked ${revoked}`)
  for (let i = 0; i < count; i++) assert.equal(await store.get(`s${i}`), null, `s${i} stays revoked`)
  writer.stop()
  assert.deepEqual(await writer.next(), Array(count).fill(false), "the child's replaces after the revocation answer false")
  const rounds = await writer.next()
  assert.equal(await writer.exited, 0)
  assert.ok(rounds > 2, `${rounds} rounds`)
  for (let i = 0; i < count; i++) assert.equal(await store.get(`s${i}`), null)
  const left = await ids(store, 'ada')
  assert.ok(left.includes('child0') && left.every((id) => id.startsWith('child')), left.join())
  // Every child session alive is listed: no index update was lost to the revocation's.
  const alive = []
  for (let r = 0; r < rounds; r++) if (await store.get(`child${r}`)) alive.push(`child${r}`)
  assert.deepEqual(left, alive.sort())
  assert.equal(await store.revokeUser('ada'), alive.length)
  assert.equal(await store.length(), 0)
  await store.close()
})

test('file: one index file per user, none for anonymous sessions; a store without userOf makes no file of them', async () => {
  const plainDir = newDir()
  const plain = rs.file({ dir: plainDir, maxSessionBytes: 1 << 20 })
  for (let i = 0; i < 10; i++) await plain.set(`p${i}`, { user: 'ada', i }, HOUR)
  await plain.update('p0', HOUR)
  await plain.replace('p1', { user: 'ada' }, HOUR)
  assert.equal(await plain.rotate('p2', 'p2b'), true)
  await plain.clear()
  await plain.close()
  assert.deepEqual(fs.readdirSync(plainDir).filter((n) => !n.startsWith('.tmp-')).sort(), ['.rs-store-gens', '.rs-store-writers'])

  const dir = newDir()
  const store = rs.file({ dir, userOf })
  await store.set('a1', { user: 'ada' }, HOUR)
  await store.set('a2', { user: 'ada' }, HOUR)
  await store.set('b1', { user: 'bob' }, HOUR)
  await store.set('anon', { cart: [] }, HOUR)
  assert.equal(filesOf(dir, '.user').length, 2)
  assert.ok(fs.existsSync(path.join(dir, '.rs-store-users')))
  // The record says whose it is (the header line), the session stays as it was.
  const [head, body] = fs.readFileSync(path.join(dir, filesOf(dir, '.sess').find((n) => fs.readFileSync(path.join(dir, n), 'utf8').includes('"id":"a1"'))), 'utf8').split('\n')
  assert.equal(JSON.parse(head).user, 'ada')
  assert.deepEqual(JSON.parse(body), { user: 'ada' })
  // A move to another user, a logout, a revocation: indexes go once they name nobody.
  await store.set('b1', { user: 'ada' }, HOUR)
  assert.deepEqual(await ids(store, 'bob'), [])
  assert.equal(filesOf(dir, '.user').length, 1, "bob's index, pruned by his listing")
  assert.equal(await store.revokeUser('ada'), 3)
  assert.deepEqual(filesOf(dir, '.user'), [])
  await store.close()
})

test('file: the sweep drops the index entries of expired and removed sessions, and the indexes left empty', { timeout: 30_000 }, async () => {
  const dir = newDir()
  const store = rs.file({ dir, userOf, sweepIntervalMs: 3_600_000 })
  await store.set('short', { user: 'ada' }, 50)
  await store.set('gone', { user: 'ada' }, HOUR)
  await store.set('keep', { user: 'bob' }, HOUR)
  await store.set('brief', { user: 'cy' }, 50)
  assert.equal(await store.remove('gone'), true)
  assert.equal(filesOf(dir, '.user').length, 3, 'entries stay until a step on the user or the sweep')
  await new Promise((r) => setTimeout(r, 100))
  // Another store on the directory sweeps (as another process's would).
  const sweeper = rs.file({ dir, sweepIntervalMs: 50 })
  const until = Date.now() + 10_000
  while (filesOf(dir, '.user').length > 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
  await sweeper.close()
  assert.equal(filesOf(dir, '.user').length, 1, "only bob's index is left")
  assert.deepEqual(await ids(store, 'bob'), ['keep'])
  assert.deepEqual(await store.sessionsOf('ada'), [])
  await store.close()
})

test('file: an index that is corrupt is reported and rebuilt from the records, so a revocation still finds every session', async () => {
  const dir = newDir()
  const reported = []
  const store = rs.file({ dir, userOf, onError: (e) => reported.push(e) })
  for (let i = 0; i < 3; i++) await store.set(`a${i}`, { user: 'ada', i }, HOUR)
  await store.set('b', { user: 'bob' }, HOUR)
  const [index] = filesOf(dir, '.user').filter((n) => fs.readFileSync(path.join(dir, n), 'utf8').includes('"id":"ada"'))
  fs.writeFileSync(path.join(dir, index), 'not an index')
  assert.deepEqual(await ids(store, 'ada'), ['a0', 'a1', 'a2'])
  assert.ok(reported.some((e) => e.code === 'ERR_CORRUPT_DATA'), reported.map((e) => e.message).join())
  fs.writeFileSync(path.join(dir, index), 'not an index either')
  assert.equal(await store.rotate('a0', 'a0b'), true, 'a rotation rebuilds it too')
  assert.deepEqual(await ids(store, 'ada'), ['a0b', 'a1', 'a2'])
  fs.writeFileSync(path.join(dir, index), 'not an index again')
  assert.equal(await store.revokeUser('ada'), 3)
  assert.deepEqual(await ids(store, 'bob'), ['b'])
  await store.close()
})

test('file: a store without userOf on the same directory keeps the user and end on a touch; its set makes a session anonymous', async () => {
  const dir = newDir()
  const store = rs.file({ dir, userOf, maxLifetime: 2_000 })
  const plain = rs.file({ dir })
  await store.set('a', { user: 'ada' }, HOUR)
  await store.set('b', { user: 'ada' }, HOUR)
  assert.equal(await plain.update('a', HOUR), true)
  assert.ok((await plain.ttl('a')) <= 2, 'the absolute end holds against a touch of any store')
  await plain.set('b', { user: 'ada', plain: true }, HOUR)
  assert.deepEqual(await ids(store, 'ada'), ['a'], 'written without userOf: nobody files it')
  assert.equal(await plain.rotate('a', 'a2'), true, 'a rotation by a store without userOf keeps the index right')
  assert.deepEqual(await ids(store, 'ada'), ['a2'])
  assert.equal(await store.revokeUser('ada'), 1)
  assert.deepEqual(await plain.get('b'), { user: 'ada', plain: true })
  await plain.close()
  await store.close()
})
