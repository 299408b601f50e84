'use strict'
// Synchro-style layered configuration: config.json + environment.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')
const { loadConfig, fromEnv } = require('../lib/config')
const { startRedis } = require('./support/redis-servers')

function configFile(obj) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-config-'))
  const file = path.join(dir, 'config.json')
  fs.writeFileSync(file, typeof obj === 'string' ? obj : JSON.stringify(obj))
  return { dir, file }
}

test('config: env deep-merges over config.json with __ nesting; env wins; conversions', () => {
  const { file } = configFile({ SESSIONSTORE_SERVICE: 'RedisSessionStore', SESSIONSTORE: { host: 'filehost', port: 6379, keep: 'me' }, DEBUG: true })
  const env = {
    SYNCHRO__SESSIONSTORE__password: 's3cret',
    SYNCHRO__SESSIONSTORE__host: 'synchrohost',
    RS_STORE__SESSIONSTORE__host: 'rshost',
    RS_STORE__DEBUG: 'false',
    RS_STORE__FEATURE__x__y: 'null',
    RS_STORE__TLS: 'true',
    UNRELATED: 'x',
  }
  const c = loadConfig({ configFile: file, env })
  assert.deepEqual(c, {
    SESSIONSTORE_SERVICE: 'RedisSessionStore',
    SESSIONSTORE: { host: 'rshost', port: 6379, keep: 'me', password: 's3cret' },
    DEBUG: false,
    FEATURE: { x: { y: null } },
    TLS: true,
  })
  assert.deepEqual(fromEnv({ SYNCHRO__A__B: '1' }, 'SYNCHRO__'), { A: { B: '1' } })
  // no file: env alone
  assert.deepEqual(loadConfig({ env: { RS_STORE_CONFIG: '/nonexistent/config.json', SYNCHRO__X: '1' } }), { X: '1' })
  assert.throws(() => loadConfig({ configFile: '/nonexistent/config.json', env: {} }), (e) => e.code === 'ERR_INVALID_OPTION')
  assert.throws(() => loadConfig({ configFile: configFile('{broken').file, env: {} }), (e) => e.code === 'ERR_INVALID_OPTION' && /not valid JSON/.test(e.message))
})

test('config: builds the named stores; a password in the env, the rest in config.json', async () => {
  const redis = await startRedis({ password: 'from-env' })
  try {
    const { file } = configFile({ SESSIONSTORE_SERVICE: 'RedisSessionStore', SESSIONSTORE: { host: '127.0.0.1', port: redis.port }, MODULESTORE_SERVICE: 'FileModuleStore', MODULESTORE: { directory: path.join(os.tmpdir(), `rs-store-cfg-mods-${process.pid}`) } })
    const { sessionStore, moduleStore } = rs.fromConfig({ configFile: file, env: { SYNCHRO__SESSIONSTORE__password: 'from-env', SYNCHRO__SESSIONSTORE__port: String(redis.port) } })
    await sessionStore.set('s', { ok: true }, 60_000)
    assert.deepEqual(await sessionStore.get('s'), { ok: true })
    assert.equal(await redis.cli('exists', 'sess:s'), '1')
    await sessionStore.close()
    await moduleStore.putStoreFile('apps.json', '{}')
    assert.equal(await moduleStore.getStoreFile('apps.json'), '{}')
  } finally {
    await redis.stop()
  }
  const { dir, file } = configFile({ SESSIONSTORE_SERVICE: 'FileSessionStore', MODULESTORE: { directory: path.join(os.tmpdir(), `rs-store-cfg-m2-${process.pid}`) } })
  const { sessionStore } = rs.fromConfig({ configFile: file, env: { RS_STORE__SESSIONSTORE__sessionStateFile: path.join(dir, 'sessions.json') } })
  await sessionStore.set('a', { n: 1 }, 60_000)
  await sessionStore.close()
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'sessions.json'), 'utf8')), { a: { n: 1 } })
})

test('config: unknown names and missing required keys name the key', () => {
  const env = {}
  const cfg = (o) => configFile(o).file
  assert.throws(() => rs.fromConfig({ configFile: cfg({ SESSIONSTORE_SERVICE: 'MongoSessionStore' }), env }), (e) => e.code === 'ERR_INVALID_OPTION' && /SESSIONSTORE_SERVICE "MongoSessionStore" is unknown/.test(e.message))
  assert.throws(() => rs.fromConfig({ configFile: cfg({ SESSIONSTORE_SERVICE: 'RedisSessionStore' }), env }), (e) => /SESSIONSTORE\.host is required/.test(e.message))
  assert.throws(() => rs.fromConfig({ configFile: cfg({ SESSIONSTORE_SERVICE: 'FileSessionStore' }), env }), (e) => /SESSIONSTORE\.sessionStateFile is required/.test(e.message))
  assert.throws(() => rs.fromConfig({ configFile: cfg({ MODULESTORE_SERVICE: 'PkgCloudModuleStore' }), env }), (e) => /MODULESTORE\.provider is required/.test(e.message))
  assert.throws(() => rs.fromConfig({ configFile: cfg({ MODULESTORE_SERVICE: 'GitModuleStore' }), env }), (e) => /MODULESTORE_SERVICE "GitModuleStore" is unknown/.test(e.message))
})
