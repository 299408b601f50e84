'use strict'
// The platform name of the native binaries and the binary's file name, for
// the loader (lib/native.js) and the build (scripts/build.js).
const pkg = require('../package.json')

/** linux-x64-gnu, linux-arm64-musl, darwin-arm64, win32-x64-msvc, … */
function platform() {
  const base = `${process.platform}-${process.arch}`
  if (process.platform === 'win32') return `${base}-msvc`
  if (process.platform !== 'linux') return base
  const report = process.report && typeof process.report.getReport === 'function' ? process.report.getReport() : null
  const glibc = report && report.header && report.header.glibcVersionRuntime
  return `${base}-${glibc ? 'gnu' : 'musl'}`
}

const name = platform()

module.exports = {
  name,
  /** The binary's file name in native/ and in the platform package. */
  file: `${pkg.napi.binaryName}.${name}.node`,
  /** The platform package npm installs as an optional dependency. */
  packageName: `${pkg.name}-${name}`,
  /** Cargo.toml's rust-version. */
  RUST_VERSION: '1.89',
}
