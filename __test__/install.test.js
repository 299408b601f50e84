'use strict'
// The path users take: the platform package and the main package, packed
// (`npm pack`), installed from those tarballs into a fresh project with no
// network (`--offline`) and no Rust toolchain on PATH; there `require('rs-store')`
// must load the platform package's binary (nothing to build), and serve a
// memory store and a real simpleS 0.9 request.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const native = require('../lib/native')

const ROOT = path.join(__dirname, '..')
const pkg = require('../package.json')

/**
 * The main package's runtime dependencies, transitively (from the lockfile),
 * packed from node_modules: an offline install can take them from there
 * (npm's cache holds the tarballs of `npm install` but not the registry
 * metadata an install of new ranges asks for).
 */
function packedDeps(dest) {
  const lock = require('../package-lock.json').packages
  const names = new Set()
  const todo = Object.keys(pkg.dependencies || {})
  while (todo.length) {
    const name = todo.pop()
    if (names.has(name)) continue
    names.add(name)
    todo.push(...Object.keys(lock[`node_modules/${name}`].dependencies || {}))
  }
  if (!names.size) return []
  const dirs = [...names].map((n) => path.join(ROOT, 'node_modules', n))
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dest, ...dirs], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  return out.trim().split('\n').map((f) => path.join(dest, f.trim()))
}

/** PATH without any folder that holds cargo or rustc. */
const noRust = () =>
  process.env.PATH.split(path.delimiter)
    .filter((d) => !['cargo', 'rustc'].some((b) => fs.existsSync(path.join(d, b))))
    .join(path.delimiter)

test('install from packed tarballs: no build, no network, no cargo; the platform package is loaded', { timeout: 180_000 }, async () => {
  const platform = native.loaded.platform
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-install-'))
  const npm = (args, cwd, env = {}) => execFileSync('npm', args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  // the platform package, as the release workflow makes it (napi artifacts)
  const stage = path.join(tmp, 'platform')
  fs.mkdirSync(stage)
  fs.copyFileSync(path.join(ROOT, 'npm', platform, 'package.json'), path.join(stage, 'package.json'))
  const node = `${pkg.napi.binaryName}.${platform}.node`
  fs.copyFileSync(path.join(ROOT, 'native', node), path.join(stage, node))
  const platformTgz = path.join(tmp, npm(['pack', '--pack-destination', tmp], stage).trim().split('\n').pop())
  const mainTgz = path.join(tmp, npm(['pack', '--ignore-scripts', '--pack-destination', tmp], ROOT).trim().split('\n').pop())
  const listed = execFileSync('tar', ['tzf', mainTgz], { encoding: 'utf8' }).split('\n')
  assert.ok(!listed.some((f) => f.endsWith('.node')), 'the main package carries no binary')
  assert.ok(!listed.some((f) => /__test__|bench\/|target\//.test(f)), `only what users need: ${listed.join(' ')}`)
  assert.ok(listed.includes('package/src/lib.rs') && listed.includes('package/Cargo.lock'), 'the Rust sources, to build where no binary fits')
  // The root shows the package, not its entries: every entry is served through `exports` from lib/.
  const root = listed.filter((f) => /^package\/[^/]+$/.test(f)).map((f) => f.slice('package/'.length))
  assert.deepEqual(root.sort(), ['Cargo.lock', 'Cargo.toml', 'README.md', 'build.rs', 'index.d.ts', 'index.js', 'package.json'])
  const entries = Object.entries(pkg.exports).filter(([k]) => k.startsWith('./') && k !== './package.json')
  for (const [, e] of entries) for (const f of [e.default, e.types]) assert.ok(listed.includes(`package/${path.normalize(f)}`), `${f} is packed`)
  // a fresh app, no network, no Rust
  const app = path.join(tmp, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  npm(['install', '--offline', '--no-audit', '--no-fund', ...packedDeps(tmp), platformTgz, mainTgz], app, { PATH: noRust() })
  assert.ok(!fs.existsSync(path.join(app, 'node_modules/rs-store/native', node)), 'nothing was built')
  fs.symlinkSync(path.join(ROOT, 'node_modules/simples'), path.join(app, 'node_modules/simples'))
  const script = `
    const rs = require('rs-store')
    const simples = require('simples')
    ;(async () => {
      const store = rs.memory()
      await store.set('a', { n: 1 }, 60000)
      const got = await store.get('a')
      const server = simples(0, { hostname: '127.0.0.1' })
      server.session({ enabled: true, store: simples.store(store) })
      server.get('/', (c) => { const v = (c.session.get('v') || 0) + 1; c.session.set('v', v); c.end('visits: ' + v) })
      await new Promise((r) => server.on('start', r))
      const res = await fetch('http://127.0.0.1:' + server._meta.instance.address().port + '/')
      const text = await res.text()
      await new Promise((r) => server.stop(r))
      await store.close()
      // every entry resolves through the installed package's exports, to where its code lives
      const entries = ${JSON.stringify(Object.keys(pkg.exports).filter((k) => k.startsWith('./') && k !== './package.json'))}
      const resolved = entries.map((k) => require('node:path').relative(require('node:path').dirname(require.resolve('rs-store/package.json')), require.resolve('rs-store' + k.slice(1))))
      console.log(JSON.stringify({ version: rs.version, got, text, resolved }))
    })()`
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8', env: { ...process.env, PATH: noRust() } }))
  assert.equal(out.version.binary, `${pkg.name}-${platform}@${pkg.version}`)
  assert.equal(out.version.package, pkg.version)
  assert.deepEqual(out.got, { n: 1 })
  assert.equal(out.text, 'visits: 1')
  assert.deepEqual(out.resolved, entries.map(([, e]) => path.normalize(e.default)))
  // the framework adapters in lib/hosts/, the prometheus exporter beside the store code in lib/
  assert.ok(entries.length >= 3 && out.resolved.every((f) => f.startsWith(`lib${path.sep}hosts${path.sep}`) || f === `lib${path.sep}prometheus.js`), `the entries live in lib/: ${out.resolved}`)
  fs.rmSync(tmp, { recursive: true, force: true })
})

/** The main package packed, and a fresh app folder beside it. */
function packedMain(tmp) {
  const tgz = execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').pop()
  const app = path.join(tmp, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  return { tgz: path.join(tmp, tgz), app }
}

test('install from the main tarball alone, no prebuilt binary, no cargo: the install fails saying what to run', { timeout: 180_000 }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-install-norust-'))
  const { tgz, app } = packedMain(tmp)
  let failed
  try {
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', ...packedDeps(tmp), tgz], { cwd: app, env: { ...process.env, PATH: noRust() }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (e) {
    failed = e
  }
  assert.ok(failed, 'the install fails')
  assert.match(failed.stderr, new RegExp(`no prebuilt binary for ${native.loaded.platform} is installed.*Rust >= 1\\.89 with cargo, https://rustup\\.rs.*npm rebuild rs-store`))
  fs.rmSync(tmp, { recursive: true, force: true })
})

test('install from the main tarball alone, no prebuilt binary, with cargo: built from source on install, and it serves', { timeout: 600_000 }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-install-source-'))
  const { tgz, app } = packedMain(tmp)
  // A debug build sharing this clone's target dir (its dependencies are built): the release build users get takes minutes.
  const env = { ...process.env, RS_STORE_BUILD_DEBUG: '1', CARGO_TARGET_DIR: path.join(ROOT, 'target') }
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', ...packedDeps(tmp), tgz], { cwd: app, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  const node = `${pkg.napi.binaryName}.${native.loaded.platform}.node`
  assert.ok(fs.existsSync(path.join(app, 'node_modules/rs-store/native', node)), 'built into the installed package')
  const script = `
    const rs = require('rs-store')
    const s = rs.memory()
    s.set('a', { n: 1 }, 60000).then(() => s.get('a')).then((got) => (console.log(JSON.stringify({ got, version: rs.version })), s.close()))`
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8' }))
  assert.deepEqual(out.got, { n: 1 })
  assert.equal(out.version.binary, `local build (native/${node})`)
  fs.rmSync(tmp, { recursive: true, force: true })
})
