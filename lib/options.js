'use strict'
// Option checking shared by every factory: wrong type → TypeError, wrong
// value → RangeError, both with code ERR_INVALID_OPTION and the option's name.
const { codedError, invalidType } = require('./errors')

function object(opts, what) {
  if (opts === undefined || opts === null) return {}
  if (typeof opts !== 'object' || Array.isArray(opts)) {
    throw invalidType('ERR_INVALID_OPTION', `${what} options must be an object`)
  }
  return opts
}

/** A number option in [min, max]; `integer` demands a whole number. */
function number(opts, name, { min = 0, max = Number.MAX_SAFE_INTEGER, integer = false, def } = {}) {
  const v = opts[name]
  if (v === undefined || v === null) return def
  if (typeof v !== 'number') throw invalidType('ERR_INVALID_OPTION', `option ${name} must be a number, got ${typeof v}`)
  if (!(v >= min && v <= max) || (integer && !Number.isInteger(v))) {
    throw codedError('ERR_INVALID_OPTION', `option ${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${v}`)
  }
  return v
}

/** A string option among `choices` (or any string when choices is omitted). */
function string(opts, name, { choices, def } = {}) {
  const v = opts[name]
  if (v === undefined || v === null) return def
  if (typeof v !== 'string') throw invalidType('ERR_INVALID_OPTION', `option ${name} must be a string, got ${typeof v}`)
  if (choices && !choices.includes(v)) {
    throw codedError('ERR_INVALID_OPTION', `option ${name} must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got '${v}'`)
  }
  return v
}

/** A boolean option. */
function boolean(opts, name, { def } = {}) {
  const v = opts[name]
  if (v === undefined || v === null) return def
  if (typeof v !== 'boolean') throw invalidType('ERR_INVALID_OPTION', `option ${name} must be a boolean, got ${typeof v}`)
  return v
}

/** Edit distance of two short strings (for "did you mean"). */
function distance(a, b) {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length]
}

/** Names other session stores use for our options (connect-*, memorystore, session-file-store). */
const PEERS = {
  ttl: 'defaultTtl',
  maxAge: 'defaultTtl',
  path: 'dir',
  checkPeriod: 'sweepIntervalMs',
  reapInterval: 'sweepIntervalMs',
  max: 'maxEntries',
}

/** The known name `name` was most likely meant to be, if any is close (a typo, or a prefix of it). */
function suggest(name, known) {
  let best
  let bestD = Infinity
  for (const k of known) {
    const d = distance(name, k)
    if (d < bestD) [best, bestD] = [k, d]
  }
  const lower = name.toLowerCase()
  const stem = known.find((k) => k.toLowerCase().startsWith(lower) || lower.startsWith(k.toLowerCase()))
  if (bestD <= Math.max(3, Math.floor(name.length / 3))) return best
  return stem
}

/**
 * Refuses options that `what` does not know (a typo would otherwise be
 * ignored silently: `{ prot: 6379 }` would talk to the default port), naming
 * the closest known one when there is one.
 */
function only(opts, what, known) {
  for (const name of Object.keys(opts)) {
    if (known.includes(name) || opts[name] === undefined) continue
    const ours = PEERS[name]
    if (ours && known.includes(ours)) {
      const unit = ours === 'defaultTtl' ? ' (in the store\'s timeoutUnit, ms by default)' : ''
      throw codedError('ERR_INVALID_OPTION', `unknown ${what} option '${name}': rs-store calls it '${ours}'${unit}`)
    }
    const best = suggest(name, known)
    const hint = best ? ` (did you mean '${best}'?)` : ''
    throw codedError('ERR_INVALID_OPTION', `unknown ${what} option '${name}'${hint}`)
  }
  return opts
}

/**
 * The session limit and codec options, the same for every store
 * (src/options.rs, SessionOptions): `maxSessionBytes`, `secret` (string)
 * or `secrets` ([newest, ...older], each at least 64 characters; the newest
 * encrypts, all decrypt) and `compress` (boolean).
 */
function session(o) {
  let secrets
  if (o.secrets !== undefined) {
    if (!Array.isArray(o.secrets) || o.secrets.length === 0 || !o.secrets.every((x) => typeof x === 'string')) {
      throw invalidType('ERR_INVALID_OPTION', 'option secrets must be a non-empty array of strings (newest first)')
    }
    secrets = o.secrets
  } else if (o.secret !== undefined) {
    secrets = [string(o, 'secret')]
  }
  if (o.compress !== undefined && typeof o.compress !== 'boolean') throw invalidType('ERR_INVALID_OPTION', 'option compress must be a boolean')
  if (o.userOf !== undefined && typeof o.userOf !== 'function') throw invalidType('ERR_INVALID_OPTION', 'option userOf must be a function (session) => string | undefined')
  // maxLifetime is in the store's timeoutUnit (checked by lib/store.js's units).
  const unitMs = { ms: 1, s: 1000, min: 60_000 }[o.timeoutUnit ?? 'ms'] ?? 1
  const maxLifetime = number(o, 'maxLifetime', { min: 0, max: Infinity })
  if (maxLifetime !== undefined && !(maxLifetime * unitMs >= 1)) throw codedError('ERR_INVALID_OPTION', `option maxLifetime must be at least 1 ms, got ${maxLifetime}`)
  return {
    maxSessionBytes: number(o, 'maxSessionBytes', { min: 1, max: 2 ** 32 - 1, integer: true }),
    secrets,
    compress: o.compress,
    perUser: o.userOf !== undefined || undefined,
    maxSessionsPerUser: number(o, 'maxSessionsPerUser', { min: 1, max: 2 ** 32 - 1, integer: true }),
    maxLifetimeMs: maxLifetime === undefined ? undefined : maxLifetime * unitMs,
  }
}

/** Options every store factory takes (lib/store.js, the codec, reports). */
const COMMON = ['timeoutUnit', 'defaultTtl', 'maxSessionBytes', 'secret', 'secrets', 'compress', 'onError', 'lockManager', 'userOf', 'maxSessionsPerUser', 'maxLifetime']
/** Where object storage is (lib/modules.js): a URL, a directory, or PkgCloud-style settings. */
const OBJECT_STORAGE = ['url', 'options', 'directory', 'provider', 'keyId', 'key', 'region', 'storageAccount', 'storageAccessKey', 'keyFilename', 'projectId', 'credentials', 'container', 'bucket', 'endpoint']
/** The options each factory knows; anything else is refused (see `only`). */
const KNOWN = {
  memory: [...COMMON, 'maxEntries', 'maxBytes', 'sweepIntervalMs'],
  dummy: COMMON,
  redis: [...COMMON, 'url', 'host', 'port', 'path', 'username', 'password', 'db', 'tls', 'prefix', 'connectTimeoutMs', 'commandTimeoutMs', 'nodes', 'sentinels', 'name', 'masterName', 'spinMicros', 'ioThread'],
  postgres: [...COMMON, 'url', 'connectionString', 'conString', 'host', 'port', 'user', 'username', 'password', 'database', 'ssl', 'tls', 'schema', 'schemaName', 'table', 'tableName', 'createTable', 'createTableIfMissing', 'poolSize', 'connectTimeoutMs', 'commandTimeoutMs', 'sweepIntervalMs', 'pruneSessionInterval'],
  daemon: [...COMMON, 'port', 'socket', 'prefix', 'connectTimeoutMs', 'commandTimeoutMs', 'spinMicros'],
  file: [...COMMON, 'dir', 'durable', 'fastReads', 'readCacheBytes', 'sweepIntervalMs'],
  sessionStateFile: [...COMMON, 'sessionStateFile', 'coalesceMs', 'maxEntries', 'maxBytes', 'sweepIntervalMs'],
  objectStore: [...COMMON, ...OBJECT_STORAGE, 'prefix', 'sweepIntervalMs', 'commandTimeoutMs'],
  moduleStore: [...OBJECT_STORAGE, 'commandTimeoutMs'],
  fromConfig: ['configFile', 'env'],
}

/** `opts` of factory `what`, checked against its known options. */
function known(opts, what) {
  return only(object(opts, what), what, KNOWN[what])
}

/** A PEM option of `tls`: a string, a Buffer, or an array of them (CAs). */
function pem(tls, name) {
  const v = tls[name]
  if (v === undefined || v === null) return undefined
  const one = (x) => {
    if (typeof x === 'string') return x
    if (Buffer.isBuffer(x)) return x.toString('utf8')
    throw invalidType('ERR_INVALID_OPTION', `option tls.${name} must be PEM text (a string or Buffer)`)
  }
  const text = Array.isArray(v) && name === 'ca' ? v.map(one).join('\n') : one(v)
  if (!text.includes('-----BEGIN ')) throw codedError('ERR_INVALID_OPTION', `option tls.${name} is not PEM text`)
  return text
}

/**
 * A network store's `tls` object, node-style `{ ca, cert, key }` (PEM
 * strings or Buffers): `ca` replaces the public roots (a private CA), `cert`
 * + `key` enable mutual TLS. Certificates are always verified (Redis and
 * PostgreSQL alike).
 */
function tlsFiles(t) {
  if (typeof t !== 'object') throw invalidType('ERR_INVALID_OPTION', 'option tls must be a boolean or { ca, cert, key }')
  if (t.rejectUnauthorized === false) {
    throw codedError('ERR_INVALID_OPTION', "tls.rejectUnauthorized: false is not supported: give the server's CA as tls.ca instead")
  }
  const out = { tlsCa: pem(t, 'ca'), tlsCert: pem(t, 'cert'), tlsKey: pem(t, 'key') }
  if ((out.tlsCert === undefined) !== (out.tlsKey === undefined)) {
    throw codedError('ERR_INVALID_OPTION', 'a TLS client certificate (tls.cert) needs its key (tls.key), and the key its certificate')
  }
  return out
}

module.exports = { object, number, string, boolean, only, suggest, known, KNOWN, session, tlsFiles }
