'use strict'
// Normalizes the Redis store's configuration into what the native layer takes:
// a mode (single | cluster | sentinel | daemon), node URLs, credentials and
// timeouts.
//
// Accepted: a URL string (`redis://`, `rediss://`, `redis+unix://`), or an
// object { url | host, port | path, username, password, db, tls (true or
// { ca, cert, key }), prefix,
// connectTimeoutMs, commandTimeoutMs, nodes: [...] (Redis Cluster),
// sentinels: [...] + name (Sentinel) }. Synchro's RedisSessionStore settings
// { host, port, password } work as they are. Nodes and sentinels may be URLs,
// 'host:port' strings or { host, port } objects.
const path = require('node:path')
const options = require('./options')
const native = require('./native')
const { codedError, invalidType } = require('./errors')

// Timeouts default in Rust (src/options.rs); the socket's timers here need them too.
const DEFAULTS = { prefix: 'sess:', connectTimeoutMs: native.REDIS_TIMEOUT_MS, commandTimeoutMs: native.REDIS_TIMEOUT_MS }

function hostPort(host, port) {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`
}

function nodeUrl(node, tls, what) {
  const scheme = tls ? 'rediss' : 'redis'
  if (typeof node === 'string') {
    if (/^(redis|rediss|redis\+unix|unix):\/\//.test(node)) return node
    if (/^[^/]+:\d+$/.test(node)) return `${scheme}://${node}`
    throw codedError('ERR_INVALID_OPTION', `${what} ${JSON.stringify(node)} is not a Redis URL or host:port`)
  }
  if (node && typeof node === 'object' && typeof node.host === 'string') {
    return `${scheme}://${hostPort(node.host, options.number(node, 'port', { min: 1, max: 65535, integer: true, def: 6379 }))}`
  }
  throw invalidType('ERR_INVALID_OPTION', `${what} must be a URL, 'host:port' or { host, port }`)
}

function list(o, name, tls) {
  const v = o[name]
  if (!Array.isArray(v) || v.length === 0) throw invalidType('ERR_INVALID_OPTION', `option ${name} must be a non-empty array`)
  return v.map((n) => nodeUrl(n, tls, `an entry of ${name}`))
}

/** `tls`: `true` (the public roots), or `{ ca, cert, key }` (options.tlsFiles). */
function tlsOptions(o) {
  if (o.tls === undefined || o.tls === null || o.tls === false || o.tls === true) return {}
  return options.tlsFiles(o.tls)
}

/** The native config for `cfg` (see the module comment). */
function redisConfig(cfg) {
  const o = typeof cfg === 'string' ? { url: cfg } : options.object(cfg, 'redis')
  const tls = o.tls === true || (o.tls && typeof o.tls === 'object')
  let mode = 'single'
  let urls
  let masterName
  if (o.nodes !== undefined) {
    mode = 'cluster'
    urls = list(o, 'nodes', tls)
  } else if (o.sentinels !== undefined) {
    mode = 'sentinel'
    urls = list(o, 'sentinels', false) // sentinels themselves speak plain TCP here
    masterName = options.string(o, 'name') ?? options.string(o, 'masterName')
    if (!masterName) throw codedError('ERR_INVALID_OPTION', 'option name (the master name monitored by the sentinels) is required with sentinels')
  } else if (o.url !== undefined) {
    urls = [nodeUrl(options.string(o, 'url'), tls, 'url')]
  } else if (o.path !== undefined) {
    urls = [`redis+unix://${options.string(o, 'path')}`]
  } else {
    urls = [nodeUrl({ host: options.string(o, 'host', { def: '127.0.0.1' }), port: o.port }, tls, 'host')]
  }
  const password = o.password === '' ? undefined : options.string(o, 'password')
  return {
    mode,
    urls,
    masterName,
    username: options.string(o, 'username'),
    password,
    db: options.number(o, 'db', { min: 0, max: 15_000, integer: true }),
    prefix: options.string(o, 'prefix', { def: DEFAULTS.prefix }),
    tls,
    ...tlsOptions(o),
    connectTimeoutMs: options.number(o, 'connectTimeoutMs', { min: 1, max: 2 ** 31 - 1, integer: true, def: DEFAULTS.connectTimeoutMs }),
    commandTimeoutMs: options.number(o, 'commandTimeoutMs', { min: 1, max: 2 ** 31 - 1, integer: true, def: DEFAULTS.commandTimeoutMs }),
    spinMicros: options.number(o, 'spinMicros', { min: 0, max: 1_000_000, integer: true }),
    ioThread: options.boolean(o, 'ioThread', { def: false }),
  }
}

/**
 * The native config for rs-store's session daemon (bin/rs-store-daemon.js):
 * a port (number or digits), a socket path, or { port | socket, prefix
 * (default ''), connectTimeoutMs, commandTimeoutMs }.
 * The client is the Redis store's: one multiplexed connection, remade after
 * a failure (so a restarted daemon is reached again by itself).
 */
function daemonConfig(cfg) {
  const o = typeof cfg === 'number' || typeof cfg === 'string' ? { [/^\d+$/.test(String(cfg)) ? 'port' : 'socket']: cfg } : options.object(cfg, 'daemon')
  let url
  if (o.socket !== undefined) {
    if (o.port !== undefined) throw codedError('ERR_INVALID_OPTION', 'give the daemon either a port or a socket, not both')
    url = `redis+unix://${path.resolve(options.string(o, 'socket'))}`
  } else {
    const port = Number(o.port)
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw codedError('ERR_INVALID_OPTION', 'the daemon needs a port (1-65535) or a socket path')
    url = `redis://127.0.0.1:${port}`
  }
  return {
    ...redisConfig({ url, prefix: options.string(o, 'prefix', { def: '' }), connectTimeoutMs: o.connectTimeoutMs, commandTimeoutMs: o.commandTimeoutMs, spinMicros: o.spinMicros }),
    mode: 'daemon',
  }
}

module.exports = { redisConfig, daemonConfig, DEFAULTS }
