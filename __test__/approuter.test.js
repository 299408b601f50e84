'use strict'
// The SAP approuter 23 drop-in, with the real @sap/approuter on loopback and
// a real redis-server; plus the facade's never-reject contract.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const { spawn } = require('node:child_process')
const rs = require('..')
const { createApprouterStore, redisFromCredentials, serviceCredentials } = require('../lib/approuter')
const { startRedis, freePort, waitFor, sleep } = require('./support/redis-servers')

const ROOT = path.join(__dirname, '..')
const SECRET = 'approuter-session-secret-'.padEnd(64, 'x')

async function startApprouter({ port, backendPort, redisPort, cwd }) {
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/@sap/approuter/approuter.js')], {
    cwd,
    env: {
      ...process.env,
      PORT: String(port),
      XS_BIND_ADDRESS: '127.0.0.1',
      destinations: JSON.stringify([{ name: 'backend', url: `http://127.0.0.1:${backendPort}` }]),
      VCAP_SERVICES: JSON.stringify({ 'user-provided': [{ name: 'session-redis', credentials: { hostname: '127.0.0.1', port: redisPort } }] }),
      EXT_SESSION_MGT: JSON.stringify({ instanceName: 'session-redis', storageType: 'redis', sessionSecret: SECRET, externalStoreFilePath: ROOT }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let log = ''
  child.stdout.on('data', (d) => (log += d))
  child.stderr.on('data', (d) => (log += d))
  await waitFor('approuter listening', async () => log.includes('listening on port'), 30_000).catch((e) => {
    child.kill('SIGKILL')
    throw new Error(`${e.message}\n${log}`)
  })
  return { child, log: () => log, stop: () => new Promise((r) => (child.exitCode !== null ? r() : (child.once('exit', r), child.kill('SIGKILL')))) }
}

function request(port, pathname, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathname, headers, timeout: 10_000 }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
  })
}

const sessionCookie = (res) => (res.headers['set-cookie'] || []).map((c) => c.split(';')[0]).find((c) => c.startsWith('JSESSIONID='))
const sessionId = (cookie) => decodeURIComponent(cookie.split('=')[1]).slice(2).split('.')[0]

test('approuter 23: sessions land encrypted in Redis, survive a restart, logout destroys them, Redis outages never crash it', { timeout: 180_000 }, async () => {
  const redis = await startRedis()
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-approuter-'))
  fs.writeFileSync(
    path.join(cwd, 'xs-app.json'),
    JSON.stringify({ authenticationMethod: 'none', logout: { logoutEndpoint: '/do/logout' }, routes: [{ source: '^/(.*)$', target: '/$1', destination: 'backend' }] }),
  )
  const backend = http.createServer((q, r) => r.end(`backend ${q.url}`))
  await new Promise((r) => backend.listen(0, '127.0.0.1', r))
  const opts = { port: await freePort(), backendPort: backend.address().port, redisPort: redis.port, cwd }
  let ar = await startApprouter(opts)
  try {
    const first = await request(opts.port, '/hello', { 'x-csrf-token': 'fetch' })
    assert.equal(first.status, 200)
    assert.equal(first.body, 'backend /hello')
    const token = first.headers['x-csrf-token']
    const cookie = sessionCookie(first)
    assert.ok(token && cookie, 'a session with a CSRF token')
    const key = `{approuter-sessions}:${sessionId(cookie)}`
    await waitFor('session in Redis', async () => (await redis.cli('exists', key)) === '1')
    const raw = await redis.cli('--no-raw', 'get', key)
    assert.ok(raw.length > 20)
    // the CSRF token is <salt>-<hash>, and its hash may itself hold '-'
    const tokenHash = token.slice(token.indexOf('-') + 1)
    assert.ok(tokenHash.length > 10 && !raw.includes(tokenHash) && !raw.includes('csrf'), `stored bytes hold no plaintext session content: ${token} ${raw}`)
    const pttl = Number(await redis.cli('pttl', key))
    assert.ok(pttl > 14 * 60_000 && pttl <= 15 * 60_000, `15 minutes (approuter default), got ${pttl}`)

    // restart approuter: its memory is empty, the session comes back from Redis
    await ar.stop()
    ar = await startApprouter(opts)
    const again = await request(opts.port, '/hello', { 'x-csrf-token': 'fetch', cookie })
    assert.equal(again.status, 200)
    assert.equal(again.headers['x-csrf-token'], token, 'the same CSRF token after a restart')

    // Redis goes away while requests flow: approuter answers and stays up
    await redis.stop()
    for (let i = 0; i < 5; i++) {
      const r = await request(opts.port, '/during-outage', { 'x-csrf-token': 'fetch' }).catch((e) => ({ status: e.message }))
      assert.ok(typeof r.status === 'number', `answered during the outage: ${r.status}`)
    }
    await sleep(200)
    assert.equal(ar.child.exitCode, null, `approuter still running\n${ar.log().slice(-2000)}`)
    assert.match(ar.log(), /ERR_STORE_UNAVAILABLE/, 'the outage is logged with its code')
    const back = await redis.restart()
    try {
      let fresh
      await waitFor('sessions work again', async () => {
        fresh = await request(opts.port, '/after', { 'x-csrf-token': 'fetch' })
        const c = sessionCookie(fresh)
        return c && (await back.cli('exists', `{approuter-sessions}:${sessionId(c)}`)) === '1'
      }, 20_000)
      // logout destroys the session in Redis
      const c = sessionCookie(fresh)
      const out = await request(opts.port, '/do/logout?skip-redirect=true', { cookie: c })
      assert.ok(out.status < 500, `logout answered ${out.status}`)
      await waitFor('session destroyed', async () => (await back.cli('exists', `{approuter-sessions}:${sessionId(c)}`)) === '0')
    } finally {
      await back.stop()
    }
  } finally {
    await ar.stop()
    backend.close()
    await redis.stop()
  }
})

test('approuter facade: every method resolves, never rejects, even with Redis down', async () => {
  const port = await freePort()
  const logged = []
  const store = createApprouterStore(
    { instanceName: 'x', storageType: 'redis', sessionSecret: SECRET },
    { env: { RS_STORE_REDIS_URL: `redis://127.0.0.1:${port}` }, log: (e) => logged.push(e.code) },
  )
  // shorten the wait: the store's own commandTimeoutMs defaults to 5 s
  const calls = [
    [store.get('a'), null],
    [store.set('a', '{"x":1}', 15), undefined],
    [store.exists('a'), false],
    [store.resetTimer('a', 15), undefined],
    [store.destroy('a'), undefined],
    [store.ttl('a'), 0],
    [store.length(), 0],
    [store.clear(), undefined],
    [store.all('{approuter-state}'), []],
    [store.getExternalSession('j', {}), null],
    [store.updateExternalSession({ externalSessionId: 'e', externalSessionExpiration: Date.now() / 1000 + 60 }), false],
    [store.get(42), null],
  ]
  for (const [p, expected] of calls) assert.deepEqual(await p, expected)
  assert.ok(logged.length >= 10 && logged.every((c) => typeof c === 'string' && c.startsWith('ERR_')), logged.join())
  assert.equal(store.checkClient(), true)
  await store.close()
})

test('approuter facade: external sessions, state prefixes, units, and the secret rule', async () => {
  const redis = await startRedis()
  const store = createApprouterStore({ instanceName: 'svc', storageType: 'redis', sessionSecret: SECRET }, { env: { RS_STORE_REDIS_URL: redis.url } })
  try {
    await store.set('s1', JSON.stringify({ csrf: 'abc', user: 'ada' }), 2)
    assert.deepEqual(await store.get('s1'), { csrf: 'abc', user: 'ada' })
    assert.equal(await store.exists('s1'), true)
    assert.equal(await store.ttl('s1'), 120, 'minutes in, seconds out')
    await store.resetTimer('s1', 1)
    assert.equal(await store.ttl('s1'), 60)
    assert.equal(await store.length(), 1)
    const req = { url: '/x' }
    req.self = req // approuter passes a circular request
    const exp = Math.floor(Date.now() / 1000) + 300
    assert.equal(await store.updateExternalSession({ externalSessionId: 'jti1', externalSessionExpiration: exp, req, data: 7, save() {} }), true)
    const pttl = Number(await redis.cli('pttl', '{external-sessions}:jti1'))
    assert.ok(pttl > 290_000 && pttl <= 300_000, `expiry from epoch seconds: ${pttl}`)
    const req2 = {}
    const ext = await store.getExternalSession('jti1', req2)
    assert.equal(ext.data, 7)
    assert.equal(ext.req, req2)
    assert.equal(req2.session, ext)
    assert.equal(typeof ext.save, 'function')
    // OAuth state: unique keys under another prefix, fractional expiry
    const state = { externalSessionId: 'st1', externalSessionExpiration: Date.now() / 1000 + 30.5, pkce: 'v' }
    assert.equal(await store.updateExternalSession(state, '{approuter-state}', true), true)
    assert.equal(await store.updateExternalSession(state, '{approuter-state}', true), false, 'NX: not twice')
    // approuter's apps-cache lock: two approuter instances race for it with
    // updateExternalSession(lock, prefix, true); exactly one may get it
    const second = createApprouterStore({ instanceName: 'svc', storageType: 'redis', sessionSecret: SECRET }, { env: { RS_STORE_REDIS_URL: redis.url } })
    const lock = (token) => ({ externalSessionId: 'apps-cache', externalSessionExpiration: Math.floor(Date.now() / 1000) + 30, token })
    const tries = []
    for (let i = 0; i < 10; i++) tries.push(store.updateExternalSession(lock(`a${i}`), '{appsCacheLock}', true), second.updateExternalSession(lock(`b${i}`), '{appsCacheLock}', true))
    const got = await Promise.all(tries)
    assert.equal(got.filter(Boolean).length, 1, `one instance holds the lock: ${got}`)
    const holder = (await second.getExternalSession('apps-cache', null, '{appsCacheLock}')).token
    assert.equal(holder, got.indexOf(true) % 2 === 0 ? `a${got.indexOf(true) / 2}` : `b${(got.indexOf(true) - 1) / 2}`)
    await second.close()
    assert.deepEqual((await store.all('{approuter-state}')).map((s) => s.pkce), ['v'])
    assert.equal(await store.updateExternalSession({ externalSessionId: 'old', externalSessionExpiration: 1 }), false)
    await store.destroyExternalSession('jti1')
    assert.equal(await store.getExternalSession('jti1'), null)
    await store.destroy('s1')
    assert.equal(await store.get('s1'), null)
    assert.equal(await store.destroy('never-set'), undefined)
    // the secret rule
    assert.throws(
      () => createApprouterStore({ instanceName: 'svc', storageType: 'redis', sessionSecret: 'too-short' }, { env: { RS_STORE_REDIS_URL: redis.url } }),
      (e) => e.code === 'ERR_INVALID_OPTION' && /64 characters/.test(e.message),
    )
    // getStore is a synchronous singleton, reachable as 'rs-store' / the package path
    process.env.RS_STORE_REDIS_URL = redis.url
    try {
      const a = require(ROOT).getStore({ instanceName: 'svc', storageType: 'redis', sessionSecret: SECRET })
      assert.equal(a, require(ROOT).getStore({}))
      assert.equal(typeof a.get, 'function')
      assert.ok(!(a instanceof Promise))
      await a.close()
    } finally {
      delete process.env.RS_STORE_REDIS_URL
    }
  } finally {
    await store.close()
    await redis.stop()
  }
})

test('approuter facade: bound-service credentials in the shapes approuter accepts', () => {
  assert.deepEqual(redisFromCredentials({ hostname: 'h', port: '6380', password: 'p' }), { host: 'h', port: 6380, tls: false, username: undefined, password: 'p' })
  assert.deepEqual(redisFromCredentials({ uri: 'redis://u:p@h:1/0' }), { url: 'redis://u:p@h:1/0' })
  assert.deepEqual(redisFromCredentials({ hostname: 'h', port: 1, tls: '{"server_ca":"x"}' }).tls, true, 'not PEM: the public roots')
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
  assert.deepEqual(redisFromCredentials({ hostname: 'h', port: 1, tls: JSON.stringify({ server_ca: pem }) }).tls, { ca: pem })
  assert.deepEqual(redisFromCredentials({ hostname: 'h', port: 1, tls: { server_ca: 'x', sslrootcert: pem } }).tls, { ca: pem })
  assert.deepEqual(redisFromCredentials({ hostname: 'h', port: 1, ca_base64: Buffer.from(pem).toString('base64') }).tls, { ca: pem })
  const sentinel = redisFromCredentials({ uri: 'redis-sentinel://h:26379#main', sentinel_nodes: '[{"hostname":"s1","port":26379}]', password: 'p' })
  assert.deepEqual(sentinel, { sentinels: [{ host: 's1', port: 26379 }], name: 'main', password: 'p' })
  const cluster = redisFromCredentials({ hostname: 'c', port: 7000, cluster_mode: 'true', tls: true })
  assert.deepEqual(cluster, { nodes: [{ host: 'c', port: 7000 }], tls: true, username: undefined, password: undefined })
  const env = { VCAP_SERVICES: JSON.stringify({ redis: [{ name: 'a', credentials: { hostname: 'x' } }], other: [{ name: 'b', credentials: { hostname: 'y' } }] }) }
  assert.deepEqual(serviceCredentials('b', env), { hostname: 'y' })
  assert.equal(serviceCredentials('zzz', env), null)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-defenv-'))
  fs.writeFileSync(path.join(dir, 'default-env.json'), JSON.stringify({ VCAP_SERVICES: { u: [{ name: 'c', credentials: { uri: 'redis://z' } }] } }))
  assert.deepEqual(serviceCredentials('c', {}, dir), { uri: 'redis://z' })
})

test('codec on every backend: encrypted at rest, tamper → null + coded report, rotation', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-codec-'))
  const reports = []
  const onError = (e) => reports.push(e.code)
  const secretB = 'b'.repeat(64)
  const secretret = { secrets: [SECRET], compress: true, onError }
  // no read cache: the tampering below is done by hand, which rs-store's
  // caches learn of only after 1 s (see "File stores" in the README)
  const file = rs.file({ dir, ...secretret, readCacheBytes: 0 })
  const session = { user: 'ada@example.com', token: 'plaintext-marker', pad: 'y'.repeat(3000) }
  await file.set('a', session, 60_000)
  const [name] = fs.readdirSync(dir).filter((f) => f.endsWith('.sess'))
  const bytes = fs.readFileSync(path.join(dir, name))
  assert.ok(!bytes.includes('plaintext-marker') && !bytes.includes('ada@example.com'), 'no plaintext on disk')
  assert.ok(bytes.length < 1500, `compressed: ${bytes.length} bytes`)
  assert.deepEqual(await file.get('a'), session)
  // tamper with one byte of the ciphertext
  const t = Buffer.from(bytes)
  t[t.length - 5] ^= 1
  fs.writeFileSync(path.join(dir, name), t)
  assert.equal(await file.get('a'), null)
  await sleep(50)
  assert.ok(reports.includes('ERR_CORRUPT_DATA'), reports.join())
  await file.close()

  // rotation: the old secret still decrypts, the new one encrypts
  const redis = await startRedis()
  try {
    const oldStore = rs.redis({ url: redis.url, secret: SECRET })
    await oldStore.set('r', { v: 1 }, 60_000)
    assert.ok(!(await redis.cli('get', 'sess:r')).includes('"v"'))
    await oldStore.close()
    const rotated = rs.redis({ url: redis.url, secrets: [secretB, SECRET] })
    assert.deepEqual(await rotated.get('r'), { v: 1 })
    await rotated.set('r2', { v: 2 }, 60_000)
    await rotated.close()
    const wrong = rs.redis({ url: redis.url, secret: 'c'.repeat(64), onError })
    reports.length = 0
    assert.equal(await wrong.get('r'), null, 'wrong key → null')
    assert.equal((await wrong.all()).length, 0)
    await sleep(50)
    assert.ok(reports.includes('ERR_CORRUPT_DATA'))
    await wrong.close()
    const newOnly = rs.redis({ url: redis.url, secret: secretB })
    assert.deepEqual(await newOnly.get('r2'), { v: 2 })
    await newOnly.close()
  } finally {
    await redis.stop()
  }
  assert.throws(() => rs.memory({ secret: 'short' }), (e) => e.code === 'ERR_INVALID_OPTION')
  assert.throws(() => rs.memory({ secrets: 'x' }), (e) => e.code === 'ERR_INVALID_OPTION' && e instanceof TypeError)
})
