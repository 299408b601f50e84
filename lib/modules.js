'use strict'
// Synchro's module store API over object storage (src/backend/object/modules.rs):
// a local directory (FileModuleStore), S3 and S3-compatible endpoints, Azure
// Blob and Google Cloud Storage (PkgCloudModuleStore). Every method returns a
// Promise; errors carry codes (ERR_INVALID_PATH, ERR_ALREADY_EXISTS, …).
const fs = require('node:fs')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
const { NativeModuleStore } = require('./native')
const { codedError, invalidType, fromNative, settled } = require('./errors')
const options = require('./options')

const DEFAULT_CONTAINER = 'synchro-apps'

const unsupported = (p) =>
  codedError(
    'ERR_INVALID_OPTION',
    `module store provider ${JSON.stringify(p)} is not supported: use 'amazon' (S3, or any S3-compatible service via its endpoint, e.g. OpenStack Swift's S3 API), 'azure', 'google', a URL (s3://, az://, gs://, file://) or { directory }`,
  )

/** { url, options: [[key, value], …] } for the native store. */
function nativeConfig(cfg) {
  if (typeof cfg === 'string') cfg = /^[a-z0-9+]+:\/\//i.test(cfg) ? { url: cfg } : { directory: cfg }
  const o = options.object(cfg, 'moduleStore')
  const opts = []
  const set = (k, v) => v !== undefined && v !== null && opts.push([k, String(v)])
  if (o.url !== undefined) {
    const url = options.string(o, 'url')
    if (url.startsWith('file://')) fs.mkdirSync(new URL(url), { recursive: true, mode: 0o700 })
    for (const [k, v] of Object.entries(o.options || {})) set(k, v)
    return { url, options: opts }
  }
  if (o.provider === undefined) {
    const dir = path.resolve(options.string(o, 'directory', { def: DEFAULT_CONTAINER }))
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    return { url: pathToFileURL(dir).href, options: opts }
  }
  const container = options.string(o, 'container', { def: options.string(o, 'bucket', { def: DEFAULT_CONTAINER }) })
  const endpoint = options.string(o, 'endpoint')
  switch (o.provider) {
    case 'amazon':
    case 'aws':
    case 's3':
      set('aws_access_key_id', o.keyId)
      set('aws_secret_access_key', o.key)
      set('aws_region', o.region || 'us-east-1')
      if (endpoint) {
        set('aws_endpoint', endpoint)
        set('aws_virtual_hosted_style_request', 'false')
        if (endpoint.startsWith('http://')) set('aws_allow_http', 'true')
      }
      return { url: `s3://${container}`, options: opts }
    case 'azure':
      set('azure_storage_account_name', o.storageAccount)
      set('azure_storage_account_key', o.storageAccessKey)
      if (endpoint) {
        set('azure_storage_endpoint', endpoint)
        if (endpoint.startsWith('http://')) set('azure_allow_http', 'true')
      }
      return { url: `az://${container}`, options: opts }
    case 'google':
    case 'gcs':
      set('google_application_credentials', o.keyFilename)
      set('google_service_account_key', typeof o.credentials === 'object' ? JSON.stringify(o.credentials) : o.credentials)
      if (endpoint) {
        set('google_base_url', endpoint)
        if (endpoint.startsWith('http://')) set('google_allow_http', 'true')
      }
      return { url: `gs://${container}`, options: opts }
    default:
      throw unsupported(o.provider)
  }
}

/**
 * Where an object store connects, for stats() and tracing (lib/observe.js):
 * the endpoint's host:port, else the provider's public host; none for a
 * local directory.
 */
function serverOf(url, pairs) {
  const opt = (k) => (pairs.find(([key]) => key === k) || [])[1]
  const hostOf = (endpoint) => {
    try {
      return new URL(endpoint).host
    } catch {
      return endpoint
    }
  }
  const scheme = url.slice(0, url.indexOf(':'))
  const endpoint = opt(scheme === 's3' ? 'aws_endpoint' : scheme === 'az' ? 'azure_storage_endpoint' : 'google_base_url')
  if (scheme === 'file') return undefined
  if (endpoint) return hostOf(endpoint)
  if (scheme === 's3') return `s3.${opt('aws_region') || 'us-east-1'}.amazonaws.com`
  if (scheme === 'az') return opt('azure_storage_account_name') ? `${opt('azure_storage_account_name')}.blob.core.windows.net` : 'blob.core.windows.net'
  if (scheme === 'gs') return 'storage.googleapis.com'
  return scheme || undefined
}

/**
 * `cfg`: a URL, a directory, Synchro's FileModuleStore settings
 * `{ directory }`, or PkgCloud settings `{ provider: 'amazon', keyId, key,
 * region }` / `{ provider: 'azure', storageAccount, storageAccessKey }` /
 * `{ provider: 'google', keyFilename | credentials }`, each with optional
 * `container` (default 'synchro-apps') and `endpoint` (S3-compatible
 * services, emulators), and `commandTimeoutMs` (default 30000): every call
 * settles within it, `ERR_STORE_UNAVAILABLE` otherwise.
 */
function moduleStore(cfg) {
  const { url, options: opts } = nativeConfig(cfg)
  if (typeof cfg === 'object' && cfg !== null) options.known(cfg, 'moduleStore')
  const timeout = typeof cfg === 'object' && cfg !== null ? options.number(cfg, 'commandTimeoutMs', { min: 1, max: 2 ** 31 - 1, integer: true }) : undefined
  let native
  try {
    native = new NativeModuleStore(url, opts, timeout)
  } catch (e) {
    throw fromNative(e)
  }
  const localDir = url.startsWith('file://') ? new URL(url).pathname : null
  let watcher = null
  const store = {
    getStoreFile: (name) => settled(native.getStoreFile(name)),
    putStoreFile: (name, content) => settled(native.putStoreFile(name, String(content))),
    getAppContainers: () => settled(native.getAppContainers()),
    createAppContainer: (name) => settled(native.createAppContainer(name)),
    deleteAppContainer: (name) => settled(native.deleteAppContainer(name)),
    getAppModuleStore: (app) => ({
      /** The app's package.json, parsed; null when missing. */
      getAppDefinition: () => settled(native.getAppDefinition(app)).then((t) => (t === null ? null : JSON.parse(t))),
      listModules: () => settled(native.listModules(app)),
      getModuleSource: (p) => settled(native.getModuleSource(app, p)),
      putModuleSource: (p, content) => settled(native.putModuleSource(app, p, String(content))),
      removeModuleSource: (p) => settled(native.removeModuleSource(app, p)),
    }),
    /** Local directories only: cb(eventType, relativePath) on every change. */
    watch(cb) {
      if (typeof cb !== 'function') throw invalidType('ERR_INVALID_OPTION', 'watch(cb) needs a function')
      if (!localDir) throw codedError('ERR_INVALID_OPTION', 'watch() works on a local directory module store only')
      store.unwatch()
      watcher = fs.watch(localDir, { recursive: true }, (event, file) => file && cb(event, String(file).split(path.sep).join('/')))
      watcher.unref()
    },
    unwatch() {
      if (watcher) watcher.close()
      watcher = null
    },
  }
  return store
}

module.exports = { serverOf, moduleStore, nativeConfig, DEFAULT_CONTAINER }
