'use strict'
// The published types (index.d.ts and the framework entry points) compile
// under `tsc --strict` against @types/node, @types/express-session and
// fastify's own types, used as the README shows. usage.ts imports
// `rs-store/<entry>` by the package's own name, so tsc resolves each entry
// through package.json's `exports`, as an app's compiler does.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { execFile } = require('node:child_process')
const { promisify } = require('node:util')

test('types: tsc --strict accepts the .d.ts files as the README uses them', async () => {
  const tsc = require.resolve('typescript/bin/tsc')
  const project = path.join(__dirname, 'types/tsconfig.json')
  const { stdout } = await promisify(execFile)(process.execPath, [tsc, '-p', project, '--listFiles'], { timeout: 120_000 }).catch((e) => {
    throw new Error(`tsc failed:\n${e.stdout}${e.stderr}`)
  })
  const files = stdout.split('\n').map((f) => path.relative(path.join(__dirname, '..'), f))
  const pkg = require('../package.json')
  const typed = Object.values(pkg.exports).flatMap((e) => (e.types ? [path.normalize(e.types)] : []))
  assert.ok(typed.length >= 4, `the entries with types: ${typed}`)
  for (const f of typed) assert.ok(files.includes(f), `${f} was checked`)
})

test('types: what rs-store/unstorage and rs-store/better-auth give is assignable to those frameworks\' own types (skipLibCheck: their .d.ts files need modules an app may lack)', async () => {
  const tsc = require.resolve('typescript/bin/tsc')
  const project = path.join(__dirname, 'types/tsconfig.frameworks.json')
  const { stdout } = await promisify(execFile)(process.execPath, [tsc, '-p', project, '--listFiles'], { timeout: 120_000 }).catch((e) => {
    throw new Error(`tsc failed:\n${e.stdout}${e.stderr}`)
  })
  for (const f of ['lib/hosts/unstorage.d.ts', 'lib/hosts/better-auth.d.ts']) assert.ok(stdout.includes(path.join(__dirname, '..', f)), `${f} was checked`)
})

test('types: StoreErrorCode in index.d.ts lists exactly the codes the addon has (src/error.rs)', () => {
  const fs = require('node:fs')
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')
  const union = /export type StoreErrorCode =([^;]*);?\n\n/.exec(dts)[1]
  const typed = [...union.matchAll(/'(ERR_[A-Z_]+)'/g)].map((m) => m[1]).sort()
  const native = Object.keys(require('../lib/native').errorCodes()).sort()
  assert.ok(native.length >= 16, `the addon lists its codes: ${native}`)
  assert.deepEqual(typed, native)
  const { CODES } = require('../lib/errors')
  assert.deepEqual(Object.keys(CODES).sort(), native)
  assert.equal(CODES.ERR_SESSION_TOO_LARGE, RangeError)
  assert.equal(CODES.ERR_NOT_SERIALIZABLE, TypeError)
  assert.equal(CODES.ERR_STORE_UNAVAILABLE, Error)
})
