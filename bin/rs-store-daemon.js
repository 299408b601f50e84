#!/usr/bin/env node
'use strict'
// rs-store's session daemon (HTTP Sessions' http-sessions-daemon, done again):
//
//   npx rs-store-daemon <port | socket-path> [storage-dir]   sessions + locks
//   npx rs-store-daemon --lock <port | socket-path>          locks only
//   --max-value-bytes N: largest session accepted (default 2 MiB; it also
//   bounds what one request may cost while it is parsed: ~15× N at most)
//
// A port binds 127.0.0.1 only (0 picks a free one); anything that is not
// digits is a UNIX socket path, resolved from the current directory like the
// storage dir. Clients: require('rs-store').daemon({ port | socket }).
// Protocol: a RESP2 subset (redis-cli works), see docs/daemon.md.
const path = require('node:path')
const native = require('../lib/native')
const { fromNative, settled } = require('../lib/errors')

const USAGE = `usage: rs-store-daemon [--max-value-bytes N] <port | socket-path> [storage-dir]
       rs-store-daemon --lock <port | socket-path>`

/** The native config (src/binding/daemon.rs): where it listens, what it keeps, its bound. */
function parseArgs(argv) {
  const positional = []
  let lockOnly = false
  let maxValueBytes
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '-h' || a === '--help') return { help: true }
    if (a === '--lock') lockOnly = true
    else if (a === '--max-value-bytes') {
      maxValueBytes = Number(argv[++i])
      if (!Number.isInteger(maxValueBytes) || maxValueBytes < 1) return null
    } else if (a.startsWith('-')) return null
    else positional.push(a)
  }
  if (positional.length < 1 || positional.length > (lockOnly ? 1 : 2)) return null
  const [where, dir] = positional
  if (/^\d+$/.test(where) && Number(where) > 65535) return null
  const listen = /^\d+$/.test(where) ? { kind: 'port', port: Number(where) } : { kind: 'socket', path: path.resolve(where) }
  const storage = lockOnly ? { kind: 'locks' } : dir !== undefined ? { kind: 'dir', dir: path.resolve(dir) } : { kind: 'memory' }
  return { config: { listen, storage, maxValueBytes } }
}

/** Runs the daemon with `argv` (also `rs-store daemon …`, in the CLI's own process); it exits the process when stopped. */
async function main(argv) {
  const parsed = parseArgs(argv)
  if (!parsed || parsed.help) {
    ;(parsed ? console.log : console.error)(USAGE)
    process.exit(parsed ? 0 : 2)
  }
  const { config } = parsed
  let server
  try {
    server = await settled(native.startDaemon(config))
  } catch (e) {
    const err = fromNative(e)
    console.error(`rs-store-daemon: ${err.code}: ${err.message}`)
    process.exit(1)
  }
  const mode = { locks: 'locks only', dir: `storage in ${config.storage.dir}`, memory: 'storage in memory' }[config.storage.kind]
  console.log(`rs-store-daemon listening on ${server.address} (${mode})`)
  // The server runs on native threads; this timer keeps Node alive for it.
  const keepAlive = setInterval(() => {}, 2 ** 30)
  let stopping = false
  const stop = async (signal) => {
    if (stopping) return
    stopping = true
    clearInterval(keepAlive)
    await settled(server.close()).catch((e) => console.error(`rs-store-daemon: ${e.message}`))
    console.log(`rs-store-daemon stopped (${signal})`)
    process.exit(0)
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
}

if (require.main === module) main(process.argv.slice(2))

module.exports = { main }
