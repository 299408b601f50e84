'use strict'
// Synchro-style layered configuration: `config.json` deep-merged with the
// environment, the environment winning. Nested keys come from env names with
// a `__` separator after a prefix: `SYNCHRO__SESSIONSTORE__password=…` (Synchro's
// own) and `RS_STORE__SESSIONSTORE__password=…` (applied last, so it wins).
// The strings "true", "false" and "null" become booleans and null. Typical
// use: secrets in the environment, the rest in config.json.
const fs = require('node:fs')
const path = require('node:path')
const options = require('./options')
const { codedError } = require('./errors')

const PREFIXES = ['SYNCHRO__', 'RS_STORE__']
const CONVERT = { true: true, false: false, null: null }

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)

function deepMerge(base, over) {
  const out = { ...base }
  for (const [k, v] of Object.entries(over)) out[k] = isObject(v) && isObject(out[k]) ? deepMerge(out[k], v) : v
  return out
}

/** The env's contribution: { SESSIONSTORE: { password: '…' } } from SYNCHRO__SESSIONSTORE__password. */
function fromEnv(env, prefix) {
  const out = {}
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(prefix) || raw === undefined) continue
    const keys = name.slice(prefix.length).split('__').filter(Boolean)
    if (!keys.length) continue
    let node = out
    for (const k of keys.slice(0, -1)) node = isObject(node[k]) ? node[k] : (node[k] = {})
    node[keys[keys.length - 1]] = Object.hasOwn(CONVERT, raw) ? CONVERT[raw] : raw
  }
  return out
}

/**
 * The merged configuration. `opts.configFile` (default: RS_STORE_CONFIG or
 * SYNCHRO_CONFIG from the environment, else ./config.json; a missing file
 * is an empty one), `opts.env` (default process.env).
 */
function loadConfig(opts = {}) {
  const env = opts.env || process.env
  const file = path.resolve(opts.configFile || env.RS_STORE_CONFIG || env.SYNCHRO_CONFIG || 'config.json')
  let config = {}
  if (fs.existsSync(file)) {
    try {
      config = JSON.parse(fs.readFileSync(file, 'utf8'))
    } catch (e) {
      throw codedError('ERR_INVALID_OPTION', `${file} is not valid JSON: ${e.message}`)
    }
    if (!isObject(config)) throw codedError('ERR_INVALID_OPTION', `${file} must hold a JSON object`)
  } else if (opts.configFile) {
    throw codedError('ERR_INVALID_OPTION', `config file ${file} does not exist`)
  }
  for (const prefix of PREFIXES) config = deepMerge(config, fromEnv(env, prefix))
  return config
}

const num = (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v)

function need(section, key, service, sectionName) {
  if (section[key] === undefined || section[key] === null || section[key] === '') {
    throw codedError('ERR_INVALID_OPTION', `${sectionName}.${key} is required for ${service}`)
  }
  return section[key]
}

/** Builds the stores the configuration names (Synchro's service names). */
function fromConfig(opts = {}) {
  const rs = require('..')
  const config = loadConfig(options.known(opts, 'fromConfig'))
  const ss = isObject(config.SESSIONSTORE) ? config.SESSIONSTORE : {}
  const ms = isObject(config.MODULESTORE) ? config.MODULESTORE : {}
  const sessionService = config.SESSIONSTORE_SERVICE || 'MemorySessionStore'
  const moduleService = config.MODULESTORE_SERVICE || 'FileModuleStore'
  const sessionFactories = {
    MemorySessionStore: () => rs.memory(ss),
    memory: () => rs.memory(ss),
    FileSessionStore: () => rs.file({ ...ss, sessionStateFile: need(ss, 'sessionStateFile', sessionService, 'SESSIONSTORE') }),
    file: () => rs.file({ ...ss, dir: need(ss, 'dir', sessionService, 'SESSIONSTORE') }),
    RedisSessionStore: () => rs.redis({ ...ss, host: need(ss, 'host', sessionService, 'SESSIONSTORE'), port: num(ss.port), db: num(ss.db) }),
    redis: () => rs.redis(ss.url ? ss : { ...ss, host: need(ss, 'host', sessionService, 'SESSIONSTORE'), port: num(ss.port), db: num(ss.db) }),
    dummy: () => rs.dummy(ss),
    objectStore: () => rs.objectStore(ss),
  }
  const moduleFactories = {
    FileModuleStore: () => rs.moduleStore({ directory: ms.directory || 'synchro-apps' }),
    PkgCloudModuleStore: () => rs.moduleStore({ ...ms, provider: need(ms, 'provider', moduleService, 'MODULESTORE') }),
  }
  const pick = (table, name, key) => {
    if (!Object.hasOwn(table, name)) throw codedError('ERR_INVALID_OPTION', `${key} ${JSON.stringify(name)} is unknown; use one of ${Object.keys(table).join(', ')}`)
    return table[name]
  }
  const makeSession = pick(sessionFactories, sessionService, 'SESSIONSTORE_SERVICE')
  const makeModule = pick(moduleFactories, moduleService, 'MODULESTORE_SERVICE')
  const sessionStore = makeSession()
  try {
    return { config, sessionStore, moduleStore: makeModule() }
  } catch (e) {
    sessionStore.close().catch(() => {})
    throw e
  }
}

module.exports = { fromConfig, loadConfig, fromEnv, deepMerge }
