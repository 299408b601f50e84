#!/usr/bin/env node
'use strict'
// rs-store's session daemon (HTTP Sessions' http-sessions-daemon, done again):
//
//   npx rs-store-daemon <port | socket-path> [storage-dir]   sessions + locks
//   npx rs-store-daemon --lock <port | socket-path>          locks only
//
// A port binds 127.0.0.1 only (0 picks a free one); anything that is not
// digits is a UNIX socket path, resolved from the current directory like the
// storage dir. Clients: require('rs-store').daemon({ port | socket }).
// Protocol: a RESP2 subset (redis-cli works), see docs/daemon.md.
const path = require('node:path')
const native = require('../native')
const { fromNative } = require('../lib/errors')

const USAGE = `usage: rs-store-daemon <port | socket-path> [storage-dir]
       rs-store-daemon --lock <port | socket-path>`

function parseArgs(argv) {
  const args = argv.filter((a) => a !== '--lock')
  const lockOnly = args.length !== argv.length
  if (args.includes('-h') || args.includes('--help')) return { help: true }
  if (args.length < 1 || args.length > (lockOnly ? 1 : 2) || args.some((a) => a.startsWith('-'))) return null
  const [listen, dir] = args
  const config = /^\d+$/.test(listen) ? { port: Number(listen) } : { socket: path.resolve(listen) }
  if (config.port !== undefined && config.port > 65535) return null
  if (dir !== undefined) config.dir = path.resolve(dir)
  if (lockOnly) config.lockOnly = true
  return { config }
}

async function main() {
  const parsed = parseArgs(process.argv.slice(2))
  if (!parsed || parsed.help) {
    ;(parsed ? console.log : console.error)(USAGE)
    process.exit(parsed ? 0 : 2)
  }
  const { config } = parsed
  let server
  try {
    server = await native.startDaemon(config)
  } catch (e) {
    const err = fromNative(e)
    console.error(`rs-store-daemon: ${err.code}: ${err.message}`)
    process.exit(1)
  }
  const mode = config.lockOnly ? 'locks only' : config.dir ? `storage in ${config.dir}` : 'storage in memory'
  console.log(`rs-store-daemon listening on ${server.address} (${mode})`)
  // The server runs on native threads; this timer keeps Node alive for it.
  const keepAlive = setInterval(() => {}, 2 ** 30)
  let stopping = false
  const stop = async (signal) => {
    if (stopping) return
    stopping = true
    clearInterval(keepAlive)
    await server.close().catch((e) => console.error(`rs-store-daemon: ${fromNative(e).message}`))
    console.log(`rs-store-daemon stopped (${signal})`)
    process.exit(0)
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
}

main()
