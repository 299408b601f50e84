'use strict'
// The SAP approuter (23) external session store: `EXT_SESSION_MGT.externalStoreFilePath`
// names this package ('rs-store' or its absolute path) and approuter calls
// `getStore(extSessionMgt)` once, synchronously, before it listens.
//
// What approuter 23's code needs (read from its lib/, checked by
// __test__/approuter.test.js against the real approuter) and what this does:
// * Every method resolves and never rejects: approuter crashes when exists,
//   resetTimer or destroy reject. Errors are logged with their code and the
//   method resolves what the built-in Redis store resolves on error
//   (null / false / 0 / [] / undefined).
// * Timeouts arrive in minutes; `set` receives JSON text; `ttl` answers in
//   seconds (-2 missing).
// * Keys are laid out as the built-in store's: `{approuter-sessions}:<id>`,
//   external sessions `{external-sessions}:<id>`, other prefixes as given to
//   `all(prefix)` / `updateExternalSession(session, prefix)`. One rs-store per
//   prefix (its key prefix `<prefix>:`), created on first use.
// * Sessions are compressed and encrypted with a key derived from
//   `sessionSecret` (approuter's docs promise this; approuter 23 itself
//   encrypts nothing). A secret under 64 characters is refused.
// * Backend from `storageType`: 'redis' (connection from the bound service's
//   credentials in VCAP_SERVICES or ./default-env.json, found by
//   `instanceName`; or RS_STORE_REDIS_URL), 'file' (RS_STORE_DIR, default
//   ./sessions), 'memory'.
// * Undocumented methods approuter calls are implemented as the built-in
//   store does: getExternalSession, updateExternalSession,
//   destroyExternalSession, checkClient, all(prefix).
const fs = require('node:fs')
const path = require('node:path')
const { codedError, invalidType } = require('./errors')

const SESSIONS = '{approuter-sessions}'
const EXTERNAL = '{external-sessions}'
const MINUTE_MS = 60_000

function parseMaybeJson(v) {
  if (typeof v !== 'string') return v
  try {
    return JSON.parse(v)
  } catch {
    return v
  }
}

/** The bound service's credentials named `instanceName`, or null. */
function serviceCredentials(instanceName, env = process.env, cwd = process.cwd()) {
  let vcap = env.VCAP_SERVICES
  if (!vcap) {
    const file = path.join(cwd, 'default-env.json')
    if (fs.existsSync(file)) vcap = JSON.parse(fs.readFileSync(file, 'utf8')).VCAP_SERVICES
  }
  if (!vcap) return null
  const services = typeof vcap === 'string' ? JSON.parse(vcap) : vcap
  for (const list of Object.values(services)) {
    for (const svc of Array.isArray(list) ? list : []) {
      if (svc && svc.name === instanceName && svc.credentials && typeof svc.credentials === 'object') return svc.credentials
    }
  }
  return null
}

/**
 * TLS as approuter's own Redis driver reads it: a CA from `ca_base64`, or
 * from `tls.sslrootcert` / `tls.ca` / `tls.server_ca` (that precedence);
 * otherwise `tls` alone means TLS with the public roots. A CA that is not
 * PEM text is ignored (the public roots are used).
 */
function tlsFromCredentials(c, tls) {
  const fromTls = tls && typeof tls === 'object' ? tls.sslrootcert || tls.ca || tls.server_ca : undefined
  const ca = c.ca_base64 ? Buffer.from(c.ca_base64, 'base64').toString('utf8') : fromTls
  if (typeof ca === 'string' && ca.includes('-----BEGIN ')) return { ca }
  return Boolean(tls || c.ca_base64)
}

/**
 * rs.redis() settings from a bound service's credentials, in the shapes
 * approuter's built-in Redis client accepts.
 */
function redisFromCredentials(c) {
  const tls = parseMaybeJson(c.tls)
  const sentinels = parseMaybeJson(c.sentinel_nodes)
  const cluster = parseMaybeJson(c.cluster_mode) === true
  const host = c.hostname || (tls && (tls.host || tls.hostname))
  const port = Number(c.port || (tls && tls.port) || 6379)
  const auth = { username: c.username || undefined, password: c.password || undefined }
  if (cluster) return { nodes: [{ host, port }], tls: tlsFromCredentials(c, tls), ...auth }
  if (Array.isArray(sentinels) && sentinels.length) {
    return {
      sentinels: sentinels.map((n) => ({ host: n.hostname || n.host, port: Number(n.port) })),
      name: (c.uri && c.uri.split('#')[1]) || 'mymaster',
      password: c.password || undefined,
    }
  }
  if (host) return { host, port, tls: tlsFromCredentials(c, tls), ...auth }
  if (c.uri) return { url: c.uri.split('#')[0] }
  throw codedError('ERR_INVALID_OPTION', 'rs-store approuter: the bound Redis service has no hostname or uri in its credentials')
}

function createApprouterStore(ext, { rs = require('..'), env = process.env, log = defaultLog } = {}) {
  if (!ext || typeof ext !== 'object') throw invalidType('ERR_INVALID_OPTION', 'getStore(extSessionMgt) needs the EXT_SESSION_MGT object')
  const storageType = String(env.RS_STORE_BACKEND || ext.storageType || 'redis').toLowerCase()
  const common = { secret: ext.sessionSecret, compress: true, timeoutUnit: 'ms', onError: (e) => log(e) }
  let make
  if (storageType === 'redis') {
    let cfg
    if (env.RS_STORE_REDIS_URL) cfg = { url: env.RS_STORE_REDIS_URL }
    else {
      const creds = serviceCredentials(ext.instanceName, env)
      if (!creds) {
        throw codedError('ERR_INVALID_OPTION', `rs-store approuter: no bound service named ${JSON.stringify(ext.instanceName)} in VCAP_SERVICES or default-env.json, and RS_STORE_REDIS_URL is not set`)
      }
      cfg = redisFromCredentials(creds)
    }
    make = (prefix) => rs.redis({ ...cfg, ...common, prefix: `${prefix}:` })
  } else if (storageType === 'file') {
    const dir = path.resolve(env.RS_STORE_DIR || 'sessions')
    make = (prefix) => rs.file({ ...common, dir: path.join(dir, encodeURIComponent(prefix)) })
  } else if (storageType === 'memory') {
    make = () => rs.memory(common)
  } else {
    throw codedError('ERR_INVALID_OPTION', `rs-store approuter: storageType ${JSON.stringify(storageType)} is not supported (redis, file, memory)`)
  }

  const stores = new Map()
  const ns = (prefix = SESSIONS) => {
    let s = stores.get(prefix)
    if (!s) {
      s = make(prefix)
      stores.set(prefix, s)
    }
    return s
  }
  ns(SESSIONS) // fail now (bad secret, bad config), not at the first request

  /** Runs `fn`; on any error logs it and resolves `fallback`. Never rejects. */
  const safe = (what, fallback, fn) => {
    try {
      return Promise.resolve(fn()).catch((e) => {
        log(e, what)
        return fallback
      })
    } catch (e) {
      log(e, what)
      return Promise.resolve(fallback)
    }
  }
  const minutes = (t) => (typeof t === 'number' && t >= 0 ? t * MINUTE_MS : 15 * MINUTE_MS)

  return {
    checkClient: () => true,
    get: (id) => safe('get', null, () => ns().get(id)),
    set: (id, session, timeout) => safe('set', undefined, () => ns().set(id, session, minutes(timeout)).then(() => undefined)),
    destroy: (id) => safe('destroy', undefined, () => ns().destroy(id).then(() => undefined)),
    exists: (id) => safe('exists', false, () => ns().exists(id)),
    resetTimer: (id, timeout) => safe('resetTimer', undefined, () => ns().resetTimer(id, minutes(timeout)).then(() => undefined)),
    ttl: (id) => safe('ttl', 0, () => ns().ttl(id)),
    length: () => safe('length', 0, () => ns().length()),
    clear: () => safe('clear', undefined, () => ns().clear().then(() => undefined)),
    all: (prefix) => safe('all', [], () => ns(prefix || SESSIONS).all()),
    getExternalSession: (id, req, prefix) =>
      safe('getExternalSession', null, async () => {
        const session = await ns(prefix || EXTERNAL).get(id)
        if (session && req) {
          session.req = req
          session.reload = (cb) => cb()
          session.save = (cb) => cb && cb()
          session.touch = () => {}
          req.session = session
        }
        return session
      }),
    updateExternalSession: (session, prefix, uniqueKey = false) =>
      safe('updateExternalSession', false, async () => {
        const toSave = { ...session }
        delete toSave.req
        const ms = toSave.externalSessionExpiration * 1000 - Date.now()
        if (!(ms > 0)) return false // the built-in store's SET PX fails too
        const store = ns(prefix || EXTERNAL)
        const id = String(toSave.externalSessionId)
        // uniqueKey: SET NX, atomic (approuter takes its apps-cache lock this way)
        if (uniqueKey) return store.add(id, toSave, ms)
        await store.set(id, toSave, ms)
        return true
      }),
    destroyExternalSession: (id, prefix) => safe('destroyExternalSession', undefined, () => ns(prefix || EXTERNAL).destroy(id).then(() => undefined)),
    /** Closes every underlying store (not called by approuter). */
    close: () => Promise.all([...stores.values()].map((s) => s.close())).then(() => undefined),
  }
}

function defaultLog(e, what) {
  console.error(`rs-store approuter${what ? ` ${what}` : ''}: ${e && e.code ? `${e.code}: ` : ''}${e && e.message}`)
}

let singleton = null
/** approuter's entry: synchronous, returns one store per process. */
function getStore(extSessionMgt) {
  if (!singleton) singleton = createApprouterStore(extSessionMgt)
  return singleton
}

module.exports = { getStore, createApprouterStore, serviceCredentials, redisFromCredentials, SESSIONS, EXTERNAL }
