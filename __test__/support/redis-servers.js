'use strict'
// Real redis-server processes for the tests, on free loopback ports, in a
// temporary directory, stopped when the test ends. A missing redis-server is
// a loud failure, never a skip.
const { spawn, execFile } = require('node:child_process')
const { promisify } = require('node:util')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const run = promisify(execFile)
const { freePort, waitFor, sleep } = require('./ports')

async function cli(port, ...args) {
  return cliAuth(port, undefined, ...args)
}

async function cliAuth(port, password, ...args) {
  const auth = password ? ['-a', password, '--no-auth-warning'] : []
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...auth, ...args], { timeout: 10_000 })
  return stdout.trim()
}

/** One redis-server; `extra` are more command-line settings. */
async function startRedis({ port, extra = [], dir, password } = {}) {
  port = port || (await freePort())
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-redis-'))
  const auth = password ? ['--requirepass', password] : []
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...auth, ...extra]
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  proc.stdout.on('data', (d) => (log += d))
  proc.stderr.on('data', (d) => (log += d))
  const spawnError = new Promise((_, reject) => proc.once('error', (e) => reject(new Error(`cannot start redis-server (is it installed? apt-get install redis-server): ${e.message}`))))
  await Promise.race([spawnError, waitFor(`redis-server on port ${port}`, async () => (await cliAuth(port, password, 'ping')) === 'PONG')]).catch((e) => {
    proc.kill('SIGKILL')
    throw new Error(`${e.message}\n${log}`)
  })
  const server = {
    port,
    dir,
    proc,
    url: `redis://127.0.0.1:${port}`,
    cli: (...a) => cliAuth(port, password, ...a),
    async stop(signal = 'SIGKILL') {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      const exited = new Promise((r) => proc.once('exit', r))
      proc.kill(signal)
      await exited
    },
    /** Starts again on the same port (same dir). */
    restart: () => startRedis({ port, extra, dir, password }),
  }
  return server
}

/** Three masters, slots spread by `redis-cli --cluster create`. */
async function startCluster(masters = 3) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-cluster-'))
  const nodes = []
  for (let i = 0; i < masters; i++) {
    const port = await freePort()
    nodes.push(
      await startRedis({
        port,
        dir,
        extra: ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000'],
      }),
    )
  }
  await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 })
  for (const n of nodes) await waitFor('cluster_state:ok', async () => (await n.cli('cluster', 'info')).includes('cluster_state:ok'))
  return { nodes, stop: () => Promise.all(nodes.map((n) => n.stop())) }
}

/** A master, a replica and one sentinel watching them (quorum 1). */
async function startSentinel(name = 'mymaster') {
  const master = await startRedis()
  const replica = await startRedis({ extra: ['--replicaof', '127.0.0.1', String(master.port)] })
  await waitFor('replication link', async () => (await replica.cli('info', 'replication')).includes('master_link_status:up'))
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-sentinel-'))
  const conf = path.join(dir, 'sentinel.conf')
  fs.writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `logfile ${path.join(dir, 'sentinel.log')}`,
      `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      `sentinel parallel-syncs ${name} 1`,
      '',
    ].join('\n'),
  )
  const proc = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })
  await waitFor('sentinel', async () => (await cli(port, 'sentinel', 'get-master-addr-by-name', name)).includes(String(master.port)))
  await waitFor('sentinel sees the replica', async () => (await cli(port, 'sentinel', 'replicas', name)).includes(String(replica.port)))
  const sentinel = {
    port,
    proc,
    /** The sentinel's log (for a failure's message). */
    log: () => fs.readFileSync(path.join(dir, 'sentinel.log'), 'utf8'),
    masterPort: async () => Number((await cli(port, 'sentinel', 'get-master-addr-by-name', name)).split('\n')[1]),
    /**
     * A planned SENTINEL FAILOVER: resolves once the replica is master and
     * the old master is its synced replica. A failover the sentinel gave up
     * (a slow promotion on a busy machine) is asked for again.
     */
    failover: async () => {
      const ask = async () => {
        const out = await cli(port, 'sentinel', 'failover', name)
        if (!/OK/.test(out)) throw new Error(`SENTINEL FAILOVER ${name}: ${out}`)
      }
      await ask()
      let again = Date.now() + 15_000
      await waitFor('the switch', async () => {
        if ((await sentinel.masterPort()) === replica.port) return true
        if (Date.now() > again) {
          again = Date.now() + 15_000
          await ask()
        }
        return false
      }, 60_000).catch((e) => {
        throw new Error(`${e.message}; the sentinel's log:\n${sentinel.log().split('\n').slice(-30).join('\n')}`)
      })
      await waitFor('the old master demoted and resynced', async () => /role:slave[\s\S]*master_link_status:up/.test(await master.cli('info', 'replication')), 60_000)
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r))
        proc.kill('SIGKILL')
        await exited
      }
    },
  }
  return { master, replica, sentinel, name, stop: () => Promise.all([master.stop(), replica.stop(), sentinel.stop()]) }
}

/**
 * A TCP proxy on loopback to the server on `port`. `trickleMs`: the
 * server's bytes are passed on one at a time, one every trickleMs. `hold()`
 * stops passing replies on (requests still go through), `reset()` cuts
 * every connection with a TCP RST, `sent()` counts the bytes clients sent.
 */
async function startProxy(port, { trickleMs = 0 } = {}) {
  const pairs = new Set()
  let holding = false
  let sent = 0
  const srv = net.createServer((c) => {
    const up = net.connect(port, '127.0.0.1')
    const pair = { c, up, queue: [], timer: null }
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      clearInterval(pair.timer)
      c.destroy()
      up.destroy()
    }
    c.on('data', (d) => {
      sent += d.length
      up.write(d)
    })
    up.on('data', (d) => {
      if (holding) return
      if (!trickleMs) return c.write(d)
      pair.queue.push(...d)
      pair.timer ??= setInterval(() => {
        if (pair.queue.length) c.write(Buffer.from([pair.queue.shift()]))
      }, trickleMs)
    })
    for (const s of [c, up]) {
      s.on('error', end)
      s.on('close', end)
    }
  })
  await new Promise((r) => srv.listen(0, '127.0.0.1', r))
  const proxyPort = srv.address().port
  return {
    port: proxyPort,
    url: `redis://127.0.0.1:${proxyPort}`,
    sent: () => sent,
    connections: () => pairs.size,
    hold(on = true) {
      holding = on
    },
    reset() {
      for (const p of pairs) {
        p.c.resetAndDestroy()
        p.up.destroy()
      }
    },
    close() {
      for (const p of pairs) {
        p.c.destroy()
        p.up.destroy()
      }
      return new Promise((r) => srv.close(r))
    },
  }
}

module.exports = { startRedis, startCluster, startSentinel, startProxy, freePort, waitFor, sleep }
