'use strict'
// simpleS 0.8.8, resolved from this folder's own node_modules. Without them
// (a worktree or copy that skipped `npm install`), `simples` would resolve to
// the root's simpleS 0.9, whose different API makes the 0.8 tests hang:
// refuse that loudly instead.
const fs = require('node:fs')
const path = require('node:path')

const main = require.resolve('simples')
const marker = `${path.sep}node_modules${path.sep}simples${path.sep}`
const root = main.slice(0, main.lastIndexOf(marker) + marker.length)
const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
if (version !== '0.8.8') {
  throw new Error(`rs-store-test-simples-0.8 found simples ${version} at ${root}, not 0.8.8: its own node_modules are missing; run \`npm install\` at the repository root`)
}
module.exports = require('simples')
