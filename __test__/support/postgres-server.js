'use strict'
// A private PostgreSQL server for the tests: Debian's binaries
// (/usr/lib/postgresql/<version>/bin), a fresh cluster in a temporary
// directory, listening on a free loopback port and a unix socket in that
// directory, password auth with scram-sha-256 only. initdb and postgres
// refuse to run as root: as root they run as the `postgres` user (the
// directory is made theirs). Stopped by its pid, never by name; the system
// server on :5432 is never touched. Missing binaries are a loud failure
// (`apt-get install postgresql`), never a skip.
const { spawn, execFile } = require('node:child_process')
const { promisify } = require('node:util')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const run = promisify(execFile)
const { freePort, sleep } = require('./ports')

const USER = 'rs'
const PASSWORD = 'rs-store-test-password'

/** The newest installed PostgreSQL's bin directory. */
function binDir() {
  const root = '/usr/lib/postgresql'
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb'))) : []
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries in ${root}/*/bin: apt-get install postgresql (.ci/run does)`)
  versions.sort((a, b) => Number(b) - Number(a))
  return path.join(root, versions[0], 'bin')
}

/** Who the server runs as: the `postgres` user when we are root, else ourselves. */
async function account() {
  if (process.getuid() !== 0) return {}
  const { stdout } = await run('id', ['-u', 'postgres']).catch(() => {
    throw new Error('running as root, but there is no postgres user to run PostgreSQL as (apt-get install postgresql makes it)')
  })
  const { stdout: gid } = await run('id', ['-g', 'postgres'])
  return { uid: Number(stdout.trim()), gid: Number(gid.trim()) }
}

function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Starts a server. `dir` (to start again on the same data) and `port` are
 * given by `restart`. Resolves { port, url, dir, pid, sql, stop, restart, ... }.
 */
async function startPostgres({ dir, port, owned = false } = {}) {
  const bin = binDir()
  const who = await account()
  let fresh = owned
  if (!dir) {
    fresh = true
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-pg-'))
    if (who.uid !== undefined) fs.chownSync(dir, who.uid, who.gid)
    const pwfile = path.join(dir, 'pw')
    fs.writeFileSync(pwfile, PASSWORD, { mode: 0o600 })
    if (who.uid !== undefined) fs.chownSync(pwfile, who.uid, who.gid)
    await run(
      path.join(bin, 'initdb'),
      ['-D', path.join(dir, 'data'), '-U', USER, `--pwfile=${pwfile}`, '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'],
      { ...who, cwd: dir, timeout: 120_000 },
    ).catch((e) => {
      throw new Error(`initdb failed: ${e.message}\n${e.stdout || ''}${e.stderr || ''}`)
    })
  }
  port = port || (await freePort())
  const args = [
    '-D', path.join(dir, 'data'),
    '-c', 'listen_addresses=127.0.0.1',
    '-c', `port=${port}`,
    '-c', `unix_socket_directories=${dir}`,
    '-c', 'fsync=off',
    '-c', 'synchronous_commit=off',
    '-c', 'full_page_writes=off',
    '-c', 'shared_buffers=32MB',
    '-c', 'max_connections=200',
    '-c', 'password_encryption=scram-sha-256',
  ]
  const proc = spawn(path.join(bin, 'postgres'), args, { ...who, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  proc.stdout.on('data', (d) => (log += d))
  proc.stderr.on('data', (d) => (log += d))
  const exited = new Promise((r) => proc.once('exit', r))
  const failed = new Promise((_, reject) => {
    proc.once('error', (e) => reject(new Error(`cannot start postgres: ${e.message}`)))
    proc.once('exit', (code, sig) => reject(new Error(`postgres exited at start (${code ?? sig})`)))
  })
  const ready = (async () => {
    const end = Date.now() + 60_000
    for (;;) {
      const ok = await run(path.join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-t', '1']).then(() => true, () => false)
      if (ok) return
      if (Date.now() > end) throw new Error(`postgres on port ${port} not ready within 60 s`)
      await sleep(50)
    }
  })()
  await Promise.race([ready, failed]).catch((e) => {
    if (alive(proc.pid)) process.kill(proc.pid, 'SIGKILL')
    throw new Error(`${e.message}\n${log}`)
  })
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`
  const server = {
    port,
    dir,
    pid: proc.pid,
    user: USER,
    password: PASSWORD,
    url,
    /** The URL of another database (made with `createDatabase`). */
    urlOf: (db) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${db}`,
    /** Runs SQL through psql; resolves its unaligned output (rows by line, columns by '|'). */
    async sql(text, db = 'postgres') {
      const { stdout } = await run(path.join(bin, 'psql'), ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', USER, '-d', db, '-c', text], {
        env: { ...process.env, PGPASSWORD: PASSWORD },
        timeout: 30_000,
      })
      return stdout.trim()
    },
    async createDatabase(name) {
      await server.sql(`CREATE DATABASE "${name}"`)
      return server.urlOf(name)
    },
    /**
     * Stops the server and waits for the postmaster to exit: SIGINT = fast
     * shutdown (clients are cut off), SIGQUIT = immediate (as a crash: no
     * checkpoint, children killed).
     */
    async stop(signal = 'SIGINT') {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      process.kill(proc.pid, signal)
      await exited
    },
    /** Starts again on the same port and data (after `stop`). */
    restart: () => startPostgres({ dir, port, owned: fresh }),
    /** Stops the server and removes its directory. */
    async destroy() {
      await server.stop()
      if (fresh) fs.rmSync(dir, { recursive: true, force: true })
    },
    log: () => log,
  }
  return server
}

module.exports = { startPostgres, binDir }
