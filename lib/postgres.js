'use strict'
// Normalizes the PostgreSQL store's configuration into what the native layer
// takes (src/binding/postgres.rs).
//
// Accepted: a URL string (`postgres://user:pass@host:port/db?sslmode=…`, or
// libpq `key=value` settings), or an object { url | connectionString |
// conString | host, port, user, password, database, ssl | tls (true or
// { ca, cert, key }), schema ('public'), table ('session'), createTable
// (true), poolSize (4), connectTimeoutMs, commandTimeoutMs, sweepIntervalMs
// (60000; 0: this process never sweeps) }. connect-pg-simple's names
// (`tableName`, `schemaName`, `createTableIfMissing`, `pruneSessionInterval`
// in seconds, `conString`) are accepted too, so its options move over as
// they are. Settings missing from both the URL and the object come from
// PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, as node-postgres reads
// them.
const options = require('./options')
const native = require('./native')
const { codedError, invalidType } = require('./errors')

const DEFAULTS = { schema: 'public', table: 'session', timeoutMs: native.POSTGRES_TIMEOUT_MS }

/** `tls` / `ssl`: true, or { ca, cert, key }; certificates are always verified. */
function tlsOptions(o) {
  if (o.tls !== undefined && o.ssl !== undefined) throw codedError('ERR_INVALID_OPTION', 'give either tls or ssl (the same option), not both')
  const t = o.tls ?? o.ssl
  if (t === undefined || t === null || t === false) return {}
  if (t === true) return { tls: true }
  return { tls: true, ...options.tlsFiles(t) }
}

const env = (name) => (process.env[name] === undefined || process.env[name] === '' ? undefined : process.env[name])

/**
 * Where the store connects, for stats() and tracing (lib/observe.js):
 * host:port (5432 when not given) or a socket directory, from the URL or
 * key=value settings, else `host`/`port` (PGHOST/PGPORT), else libpq's default.
 */
function postgresServer(config) {
  let host = config.host
  let port = config.port
  const url = config.url
  if (url !== undefined && /^postgres(ql)?:\/\//.test(url)) {
    try {
      const u = new URL(url)
      host = decodeURIComponent(u.hostname) || u.searchParams.get('host') || host
      port = u.port ? Number(u.port) : Number(u.searchParams.get('port')) || port
    } catch {}
  } else if (url !== undefined) {
    for (const [, k, v] of url.matchAll(/(\w+)\s*=\s*'?([^\s']*)'?/g)) {
      if (k === 'host') host = v
      if (k === 'port') port = Number(v)
    }
  }
  host = host || 'localhost'
  if (host.startsWith('/')) return host
  return `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port || 5432}`
}

/** The native config for `cfg` (see the module comment); `o` is the checked object form. */
function postgresConfig(cfg) {
  const o = typeof cfg === 'string' ? { url: cfg } : options.object(cfg, 'postgres')
  const names = ['url', 'connectionString', 'conString'].filter((n) => o[n] !== undefined)
  if (names.length > 1) throw codedError('ERR_INVALID_OPTION', `give one of ${names.join(', ')} (the same option), not several`)
  const url = names.length ? options.string(o, names[0]) : undefined
  if (url !== undefined && !/^postgres(ql)?:\/\//.test(url) && !url.includes('=')) {
    throw codedError('ERR_INVALID_OPTION', 'the PostgreSQL URL must start with postgres:// or postgresql:// (or be key=value settings)')
  }
  const fromEnv = url === undefined
  const port = options.number(o, 'port', { min: 1, max: 65535, integer: true }) ?? (fromEnv && env('PGPORT') ? Number(env('PGPORT')) : undefined)
  const same = (a, b) => {
    if (o[a] !== undefined && o[b] !== undefined) throw codedError('ERR_INVALID_OPTION', `give either ${a} or ${b} (the same option), not both`)
    return o[a] !== undefined ? a : b
  }
  const pruneS = o.pruneSessionInterval === false ? 0 : options.number(o, 'pruneSessionInterval', { min: 0, max: 2 ** 31 / 1000 })
  let sweepIntervalMs = options.number(o, 'sweepIntervalMs', { min: 0, max: 2 ** 31 - 1, integer: true })
  if (pruneS !== undefined) {
    if (sweepIntervalMs !== undefined) throw codedError('ERR_INVALID_OPTION', 'give either sweepIntervalMs or pruneSessionInterval (seconds), not both')
    sweepIntervalMs = Math.round(pruneS * 1000)
  }
  return {
    url,
    host: options.string(o, 'host') ?? (fromEnv ? env('PGHOST') : undefined),
    port,
    user: options.string(o, same('user', 'username')) ?? (fromEnv ? env('PGUSER') : undefined),
    password: options.string(o, 'password') ?? (fromEnv ? env('PGPASSWORD') : undefined),
    database: options.string(o, 'database') ?? (fromEnv ? env('PGDATABASE') : undefined),
    ...tlsOptions(o),
    schema: options.string(o, same('schema', 'schemaName'), { def: DEFAULTS.schema }),
    table: options.string(o, same('table', 'tableName'), { def: DEFAULTS.table }),
    createTable: options.boolean(o, same('createTable', 'createTableIfMissing'), { def: true }),
    poolSize: options.number(o, 'poolSize', { min: 1, max: 1000, integer: true }),
    connectTimeoutMs: options.number(o, 'connectTimeoutMs', { min: 1, max: 2 ** 31 - 1, integer: true, def: DEFAULTS.timeoutMs }),
    commandTimeoutMs: options.number(o, 'commandTimeoutMs', { min: 1, max: 2 ** 31 - 1, integer: true, def: DEFAULTS.timeoutMs }),
    sweepIntervalMs,
  }
}

module.exports = { postgresServer, postgresConfig, DEFAULTS }
