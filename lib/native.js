'use strict'
// Loads the native addon, the one place that does: a local build in
// native/ (a clone, after `npm install` or `npm run build`), else the
// platform package npm installed as an optional dependency
// (`rs-store-<platform>`), else an error that says what is missing and how
// to build from source.
const fs = require('node:fs')
const path = require('node:path')
const pkg = require('../package.json')
const { name, file, packageName, RUST_VERSION } = require('./platform')

const local = path.join(__dirname, '..', 'native', file)

let binding
try {
  binding = require('../native')
} catch (e) {
  const prebuilt = pkg.napi.targets.length ? Object.keys(pkg.optionalDependencies || {}).map((p) => p.replace(`${pkg.name}-`, '')) : []
  const err = new Error(
    `rs-store: no native addon for ${name} (Node ${process.version}). ` +
      `Neither a local build (native/${file}) nor the platform package ${packageName} is installed` +
      `${prebuilt.includes(name) ? ` (npm installs it as an optional dependency unless optional dependencies are omitted: reinstall without --omit=optional / --no-optional)` : `; ${name} has no prebuilt binary (there are: ${prebuilt.join(', ')})`}. ` +
      `To build from source (Rust >= ${RUST_VERSION} and cargo needed, https://rustup.rs): run \`npm rebuild rs-store\` in your app, or \`node scripts/build.js\` in ${path.join(__dirname, '..')}.`,
    { cause: e },
  )
  err.code = 'ERR_INTERNAL'
  throw err
}

/** Which binary runs: a local build, or the platform package (for bug reports). */
function binary() {
  if (fs.existsSync(local)) return `local build (native/${file})`
  try {
    return `${packageName}@${require(`${packageName}/package.json`).version}`
  } catch {
    return 'unknown'
  }
}

// Stores are napi Externals driven by free functions (src/binding/), which
// napi-rs 3 calls for less than class methods (no object unwrap or type-tag
// check; figures in docs/benchmarks.md); a Redis get crosses three times.
// These give the handles methods.

/** A sync store (memory, dummy, sessions.json): `call` answers at once. */
const syncStore = (h) => ({
  call: (op, id, text, ms) => binding.syncCall(h, op, id, text, ms),
  flush: () => binding.syncFlush(h),
  flushNow: () => binding.syncFlushNow(h),
  held: () => binding.syncHeld(h),
  close: () => binding.syncClose(h),
  panicForTest: () => binding.syncPanicForTest(h),
})

/** A batched store over a dispatcher (lib/batch.js): file, PostgreSQL, object storage, Redis Cluster/Sentinel/ioThread. */
const batchStore = (h) => ({
  q: (op, id, text, ms) => binding.batchQ(h, op, id, text, ms),
  getNow: (id) => binding.batchGetNow(h, id),
  flush: () => binding.batchFlush(h),
  close: () => binding.batchClose(h),
})

/** A Redis store whose socket is on the JS thread (lib/redis-wire.js drives it): one server, the daemon. */
const wireStore = (h) => ({
  q: (op, id, text, ms) => binding.wireQ(h, op, id, text, ms),
  opened: () => binding.wireOpened(h),
  pack: () => binding.wirePack(h),
  feed: (chunk) => binding.wireFeed(h, chunk),
  abort: (code, message) => binding.wireAbort(h, code, message),
})

module.exports = binding
module.exports.syncStore = syncStore
module.exports.batchStore = batchStore
module.exports.wireStore = wireStore
/** For `require('rs-store').version`. */
module.exports.loaded = { binary, platform: name }
