'use strict'
// rs-store's session daemon (bin/rs-store-daemon.js) as users run it: a
// separate OS process, started on a free port or a socket.
const path = require('node:path')
const { spawn } = require('node:child_process')
const { waitFor } = require('./redis-servers')

const BIN = path.join(__dirname, '../../bin/rs-store-daemon.js')

/** Starts the daemon CLI with `args`; resolves once it listens. */
async function startDaemon(...args) {
  const child = spawn(process.execPath, [BIN, ...args.map(String)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  child.stdout.on('data', (d) => (log += d))
  child.stderr.on('data', (d) => (log += d))
  const exited = new Promise((r) => child.once('exit', r))
  await waitFor('daemon listening', async () => {
    if (child.exitCode !== null) throw new Error(`daemon exited ${child.exitCode}: ${log}`)
    return /listening on (\S+)/.test(log)
  })
  const address = /listening on (\S+)/.exec(log)[1]
  return {
    child,
    address,
    port: Number(address.split(':')[1]),
    log: () => log,
    stop: (signal = 'SIGTERM') => (child.exitCode !== null ? Promise.resolve(child.exitCode) : (child.kill(signal), exited)),
  }
}

/**
 * A redis-server and a daemon for the tests of one file: started before
 * them, stopped after; `servers.redis` and `servers.daemon` once started.
 */
function redisAndDaemon(test) {
  const { startRedis } = require('./redis-servers')
  const servers = {}
  test.before(async () => {
    servers.redis = await startRedis()
    servers.daemon = await startDaemon(0)
  })
  test.after(async () => {
    await servers.redis.stop()
    await servers.daemon.stop()
  })
  return servers
}

module.exports = { startDaemon, redisAndDaemon, BIN }
