#!/usr/bin/env node
// Builds the native addon with the napi-rs CLI into native/ (binary +
// generated native/index.js loader + native/index.d.ts types).
//
// `npm install` runs this as `prepare`: it builds in release mode when the
// binary is missing or older than any Rust source, and skips otherwise, so a
// repeated install is instant. `--force` always builds, `--debug` builds a
// debug binary (faster to compile, for development). RS_STORE_SKIP_BUILD=1
// skips the build entirely (e.g. when a prebuilt platform package is used).
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.join(__dirname, '..')
const args = new Set(process.argv.slice(2))
const force = args.has('--force')
const debug = args.has('--debug')

if (process.env.RS_STORE_SKIP_BUILD === '1' && !force) {
  console.log('rs-store: RS_STORE_SKIP_BUILD=1, not building the native addon')
  process.exit(0)
}

function newestMtime(dir) {
  let newest = 0
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name)
    newest = Math.max(newest, ent.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs)
  }
  return newest
}

function builtBinary() {
  const dir = path.join(root, 'native')
  if (!fs.existsSync(dir)) return null
  const f = fs.readdirSync(dir).find((n) => n.endsWith('.node'))
  return f ? path.join(dir, f) : null
}

if (!force) {
  const bin = builtBinary()
  const sources = Math.max(
    newestMtime(path.join(root, 'src')),
    fs.statSync(path.join(root, 'Cargo.toml')).mtimeMs,
  )
  if (bin && fs.statSync(bin).mtimeMs >= sources) {
    console.log(`rs-store: ${path.relative(root, bin)} is up to date`)
    process.exit(0)
  }
}

if (spawnSync('cargo', ['--version'], { stdio: 'ignore' }).status !== 0) {
  console.error('rs-store: building the native addon needs a Rust toolchain (cargo) on PATH: https://rustup.rs')
  process.exit(1)
}

const cli = path.join(path.dirname(require.resolve('@napi-rs/cli/package.json', { paths: [root] })), 'dist', 'cli.js')
const napiArgs = [cli, 'build', '--platform', '--output-dir', 'native', '--js', 'index.js', '--dts', 'index.d.ts']
if (!debug) napiArgs.push('--release')
console.log(`rs-store: building the native addon (${debug ? 'debug' : 'release'})…`)
const r = spawnSync(process.execPath, napiArgs, { cwd: root, stdio: 'inherit' })
process.exit(r.status ?? 1)
