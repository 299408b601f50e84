'use strict'
// `rs-store <command> <store> [args] [options]`: look into, manage and
// migrate the sessions of any store (bin/rs-store.js). Arguments are parsed
// by Node's util.parseArgs; progress is drawn by cli-progress; --match globs
// are picomatch's. Every walk over a store is page by page (store.walk()),
// so memory does not grow with the number of sessions.
//
// Exit codes: 0 ok, 1 an error (its rs-store code in the message), 2 usage.
const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')
const util = require('node:util')
const { codedError } = require('./errors')
const options = require('./options')

const DAY_S = 86_400
const IN_FLIGHT = 64

const COMMANDS = {
  ls: { args: '<store>', about: 'ids with their ttl and size', example: 'rs-store ls redis://127.0.0.1:6379 --match "user-*" --limit 20' },
  get: { args: '<store> <id>', about: 'one session, as pretty JSON', example: 'rs-store get file:./sessions 9f1c…' },
  set: { args: '<store> <id> <json | ->', about: 'store a session (JSON text, or - for stdin) for --ttl seconds (default one day)', example: `rs-store set redis://127.0.0.1:6379 abc '{"user":"ada"}' --ttl 3600` },
  rm: { args: '<store> <id…>', about: 'remove sessions', example: 'rs-store rm json:./sessions.json abc def' },
  ttl: { args: '<store> <id>', about: 'seconds left (-2: missing, -1: no expiry)', example: 'rs-store ttl daemon:7070 abc' },
  expire: { args: '<store> <id> <seconds>', about: 'set the ttl of a live session (never creates one)', example: 'rs-store expire redis://127.0.0.1:6379 abc 600' },
  count: { args: '<store>', about: 'how many sessions', example: 'rs-store count s3://my-bucket/sessions' },
  stats: { args: '<store>', about: 'count, total and largest size, ttl distribution', example: 'rs-store stats file:./sessions --json' },
  clear: { args: '<store>', about: 'remove every session (asks first; --yes to skip, --dry-run to list what would go)', example: 'rs-store clear redis://127.0.0.1:6379 --prefix tenant-a: --yes' },
  export: { args: '<store> [file]', about: 'every session as NDJSON {id, ttlMs, session} (stdout or file)', example: 'rs-store export redis://127.0.0.1:6379 sessions.ndjson' },
  import: { args: '<store> [file]', about: 'sessions from NDJSON (stdin or file), ttl kept', example: 'rs-store import file:./sessions sessions.ndjson' },
  migrate: { args: '<from> <to>', about: 'copy every session with its ttl (--delete-source moves them)', example: 'rs-store migrate session-file-store:./sessions redis://127.0.0.1:6379' },
  user: {
    args: 'ls <store> <user> | revoke <store> <user> [--except ID]…',
    about: "a user's sessions (ls), or remove them all but --except (revoke; asks first, --yes to skip), from the store's per-user index (file:DIR, json:FILE, redis://, postgres://, daemon:)",
    example: 'rs-store user revoke json:./sessions.json ada --except 9f1c… --yes',
    subcommands: ['ls', 'revoke'],
    needs: ['a user'],
  },
  watch: { args: '<store> <id>', about: 'print the session each time it changes (polls every --interval ms)', example: 'rs-store watch redis://127.0.0.1:6379 abc' },
  daemon: { args: '<port | socket> [dir] | --lock <port | socket>', about: "run rs-store's session daemon (rs-store-daemon)", example: 'rs-store daemon 7070 ./daemon-sessions' },
}

const OPTIONS = {
  prefix: { type: 'string' },
  table: { type: 'string' },
  schema: { type: 'string' },
  'secret-env': { type: 'string' },
  json: { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  except: { type: 'string', multiple: true },
  'user-field': { type: 'string' },
  'dry-run': { type: 'boolean' },
  'delete-source': { type: 'boolean' },
  match: { type: 'string' },
  limit: { type: 'string' },
  ttl: { type: 'string' },
  interval: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
}

const STORES = `Stores:
  redis://host:port/db, rediss://…   Redis (--prefix, default sess:)
  connect-redis:redis://…            what connect-redis wrote (sess:, plain JSON): rs-store reads it as is
  postgres://user:pass@host:port/db  PostgreSQL, connect-pg-simple's table (--table, default session; --schema, default public)
  connect-pg-simple:postgres://…     what connect-pg-simple wrote (plain JSON): rs-store reads it as is
  file:DIR                           rs.file({ dir })
  json:FILE                          rs.file({ sessionStateFile }) (Synchro's sessions.json)
  daemon:PORT, daemon:SOCKET         rs.daemon(…)
  s3://bucket/prefix, az://container/prefix, gs://bucket/prefix
                                     rs.objectStore (credentials from AWS_*, AZURE_*, GOOGLE_* variables)
  dir:DIR                            rs.objectStore({ directory }) on a local directory
  session-file-store:DIR             session-file-store's <sid>.json files (read only: a source to migrate from)`

const COMMON = `Options:
  --secret-env NAME   the secret of an encrypted store, from this environment variable
  --prefix P          Redis key prefix (default sess:)
  --table T, --schema S  PostgreSQL table and schema (default session, public)
  --timeout MS        connect and command timeout (default 5000)
  --user-field F      the session field that names its user, for the store's userOf (default user;
                      a dotted path such as passport.user): user commands always open the store with it,
                      other commands when it is given (a migrate or import then files each session)
  --json              output for scripts
  -h, --help          this help; rs-store <command> --help for a command's
  -v, --version       versions of the package, the addon and the binary`

function usage() {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length))
  return `usage: rs-store <command> <store> [args] [options]

Commands:
${Object.entries(COMMANDS)
  .map(([c, d]) => `  ${c.padEnd(w)}  ${d.about}`)
  .join('\n')}

${STORES}

${COMMON}

Examples:
  rs-store ls redis://127.0.0.1:6379 --match "*ada*"
  rs-store get redis://127.0.0.1:6379 <session id>
  rs-store migrate session-file-store:./sessions redis://127.0.0.1:6379`
}

function commandHelp(name) {
  const c = COMMANDS[name]
  return `usage: rs-store ${name} ${c.args} [options]\n\n${c.about}.\n\nExample:\n  ${c.example}\n\n${STORES}\n\n${COMMON}`
}

class UsageError extends Error {}

/**
 * The store option userOf from --user-field (default `user`): the field's
 * value when it is a non-empty string (or a number, as text), else
 * anonymous. The index sessionsOf reads is the one the app's own userOf
 * built; this one files what the CLI writes.
 */
function userOf(o) {
  const field = o['user-field'] ?? 'user'
  const keys = field.split('.')
  if (keys.some((k) => k === '')) throw new UsageError(`--user-field must be a field name or a dotted path, got ${JSON.stringify(field)}`)
  return (session) => {
    let v = session
    for (const k of keys) v = v !== null && typeof v === 'object' ? v[k] : undefined
    if (typeof v === 'number' && Number.isFinite(v)) return String(v)
    return typeof v === 'string' && v !== '' ? v : undefined
  }
}

/**
 * A store named by one string (see STORES); `create`: a file store may make
 * its directory; `users`: opened with userOf (user commands), which a store
 * without per-user sessions refuses with an error naming it.
 */
function openStore(spec, o, { create = false, users = false } = {}) {
  if (!users && o['user-field'] === undefined) return openKind(spec, o, { create })
  try {
    return openKind(spec, o, { create, userOf: userOf(o) })
  } catch (e) {
    if (e.code !== 'ERR_INVALID_OPTION' || !/per-user sessions/.test(e.message)) throw e
    const kind = /^([a-z0-9+-]+):/i.exec(spec)[1]
    throw codedError(
      'ERR_INVALID_OPTION',
      `${spec}: the ${kind}: store has no per-user sessions yet, so rs-store ${users ? 'user' : '--user-field'} cannot work on it; file:DIR, json:FILE (sessions.json), redis:// (one server, Sentinel), postgres:// and daemon: have them`,
      e,
    )
  }
}

function openKind(spec, o, { create, userOf: by }) {
  const rs = require('..')
  const secret = o['secret-env'] === undefined ? undefined : process.env[o['secret-env']]
  if (o['secret-env'] !== undefined && !secret) throw codedError('ERR_INVALID_OPTION', `the environment variable ${o['secret-env']} (--secret-env) is not set`)
  const timeout = o.timeout === undefined ? 5000 : number(o.timeout, '--timeout')
  const codec = secret ? { secret } : {}
  // Sessions that do not decode are listed as such; the reports would only repeat it.
  const quiet = { onError: () => {}, ...(by && { userOf: by }) }
  const m = /^([a-z0-9+-]+):(.*)$/i.exec(spec)
  if (!m) throw new UsageError(`not a store: ${JSON.stringify(spec)} (see rs-store --help)`)
  const [, scheme, rest] = m
  // `also`: another path whose presence means the store is there (a
  // sessions.json store that an app holds but has not yet written out).
  const exists = (p, also) => {
    if (!create && !fs.existsSync(p) && !(also && fs.existsSync(also))) throw codedError('ERR_INVALID_OPTION', `${p} does not exist`)
    return p
  }
  switch (scheme) {
    case 'redis':
    case 'rediss':
      return rs.redis({ url: spec, prefix: o.prefix ?? 'sess:', connectTimeoutMs: timeout, commandTimeoutMs: timeout, ...codec, ...quiet })
    case 'connect-redis':
      return rs.redis({ url: rest, prefix: o.prefix ?? 'sess:', connectTimeoutMs: timeout, commandTimeoutMs: timeout, ...quiet })
    case 'postgres':
    case 'postgresql':
    case 'connect-pg-simple': {
      const url = scheme === 'connect-pg-simple' ? rest : spec
      // No sweeper in a CLI process: the apps' stores sweep.
      const pg = { url, table: o.table, schema: o.schema, sweepIntervalMs: 0, poolSize: 2, connectTimeoutMs: timeout, commandTimeoutMs: timeout, ...quiet }
      return rs.postgres(scheme === 'connect-pg-simple' ? pg : { ...pg, ...codec })
    }
    case 'file':
      return rs.file({ dir: exists(path.resolve(rest)), readCacheBytes: 0, ...codec, ...quiet })
    case 'json':
      return rs.file({ sessionStateFile: exists(path.resolve(rest), `${path.resolve(rest)}.lock`), ...codec, ...quiet })
    case 'daemon':
      return rs.daemon({ ...(/^\d+$/.test(rest) ? { port: Number(rest) } : { socket: rest }), connectTimeoutMs: timeout, commandTimeoutMs: timeout, prefix: o.prefix ?? '', ...codec, ...quiet })
    case 's3':
    case 'az':
    case 'gs': {
      const u = new URL(spec)
      const prefix = u.pathname.replace(/^\/+|\/+$/g, '') || 'sessions'
      const options = {}
      for (const [k, v] of Object.entries(process.env)) if (/^(AWS|AZURE|GOOGLE)_/.test(k)) options[k.toLowerCase()] = v
      return rs.objectStore({ url: `${scheme}://${u.host}`, options, prefix, commandTimeoutMs: timeout, ...codec, ...quiet })
    }
    case 'dir':
      return rs.objectStore({ directory: exists(path.resolve(rest)), commandTimeoutMs: timeout, ...codec, ...quiet })
    case 'session-file-store':
      if (by) throw codedError('ERR_INVALID_OPTION', 'this store has no per-user sessions (a source to migrate from)')
      return sessionFileStore(exists(path.resolve(rest)), o.ttl === undefined ? 3600 : number(o.ttl, '--ttl'))
    default:
      throw new UsageError(`unknown store kind ${JSON.stringify(scheme)} in ${JSON.stringify(spec)} (see rs-store --help)`)
  }
}

/**
 * session-file-store's directory as a read-only source: `<sid>.json` files
 * holding the session; it expires at `cookie.expires`, else at
 * `__lastAccess` + `ttl` seconds (session-file-store's own rule, default 3600).
 */
function sessionFileStore(dir, ttlS) {
  const read = async (file) => {
    const session = JSON.parse(await fs.promises.readFile(path.join(dir, file), 'utf8'))
    const expires = session.cookie && session.cookie.expires ? Date.parse(session.cookie.expires) : (session.__lastAccess || 0) + ttlS * 1000
    delete session.__lastAccess
    return { session, ttl: Math.round((expires - Date.now()) / 1000) }
  }
  const readOnly = () => Promise.reject(codedError('ERR_INVALID_ARGUMENT', 'session-file-store: is a source to read (migrate from it)'))
  return {
    async *walk() {
      for await (const ent of await fs.promises.opendir(dir)) {
        if (!ent.isFile() || !ent.name.endsWith('.json')) continue
        const { session, ttl } = await read(ent.name).catch(() => ({ session: null, ttl: 0 }))
        if (session === null) yield { id: ent.name.slice(0, -5), text: null, ttl: -1, bytes: 0 }
        else if (ttl > 0) {
          const text = JSON.stringify(session)
          yield { id: ent.name.slice(0, -5), text, ttl, bytes: Buffer.byteLength(text) }
        }
      }
    },
    async get(id) {
      const r = await read(`${path.basename(id)}.json`).catch((e) => (e.code === 'ENOENT' ? null : Promise.reject(e)))
      return r && r.ttl > 0 ? r.session : null
    },
    async ttl(id) {
      const r = await read(`${path.basename(id)}.json`).catch(() => null)
      return r && r.ttl > 0 ? r.ttl : -2
    },
    async length() {
      let n = 0
      for await (const s of this.walk()) if (s.text !== null) n++
      return n
    },
    set: readOnly,
    remove: readOnly,
    update: readOnly,
    close: async () => {},
  }
}

function number(v, what) {
  const n = Number(v)
  if (v === '' || !Number.isFinite(n)) throw new UsageError(`${what} must be a number, got ${JSON.stringify(v)}`)
  return n
}

/** Output: aligned tables and colours on a terminal, plain text otherwise, JSON with --json. */
function output(o) {
  const tty = process.stdout.isTTY && !process.env.NO_COLOR
  const paint = (style, s) => (tty && util.styleText ? util.styleText(style, s) : s)
  return {
    json: Boolean(o.json),
    paint,
    line: (s) => process.stdout.write(`${s}\n`),
    value: (v) => process.stdout.write(`${JSON.stringify(v, null, o.json ? 0 : 2)}\n`),
  }
}

const ttlText = (s) => (s === -1 ? 'none' : s < 0 ? 'missing' : s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 2 * DAY_S ? `${Math.round(s / 3600)}h` : `${Math.round(s / DAY_S)}d`)
const sizeText = (b) => (b < 1024 ? `${b} B` : b < 1 << 20 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / (1 << 20)).toFixed(1)} MiB`)

/**
 * A progress bar on stderr (a terminal only) with rate and ETA; `total()`
 * is asked only then (counting a big store is a walk of its own).
 */
async function progress(total, what) {
  if (!process.stderr.isTTY) return { tick: () => {}, stop: () => {} }
  total = await total()
  const { SingleBar, Presets } = require('cli-progress')
  const start = Date.now()
  const bar = new SingleBar(
    { stream: process.stderr, format: `${what} {bar} {value}${total ? '/{total}' : ''} | {rate}/s | ETA {eta_formatted}`, etaBuffer: 200, hideCursor: true },
    Presets.shades_classic,
  )
  bar.start(total || 0, 0, { rate: 0 })
  let n = 0
  return {
    tick(k = 1) {
      n += k
      bar.update(n, { rate: Math.round(n / Math.max(0.001, (Date.now() - start) / 1000)) })
    },
    stop: () => bar.stop(),
  }
}

/**
 * Runs `fn` over `items` (an async iterable) with at most IN_FLIGHT at once;
 * the first failure stops taking items and is thrown once the running ones
 * have settled (each is caught at once: none may reject unobserved).
 */
async function pool(items, fn) {
  const running = new Set()
  let failure = null
  for await (const item of items) {
    if (failure) break
    const p = Promise.resolve()
      .then(() => fn(item))
      .catch((e) => {
        failure ??= { e }
      })
      .finally(() => running.delete(p))
    running.add(p)
    if (running.size >= IN_FLIGHT) await Promise.race(running)
  }
  await Promise.all(running)
  if (failure) throw failure.e
}

/** Lines of a file or of stdin. */
function lines(file) {
  const input = file === undefined || file === '-' ? process.stdin : fs.createReadStream(file)
  return readline.createInterface({ input, crlfDelay: Infinity })
}

async function confirm(question) {
  if (!process.stdin.isTTY) return false
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr })
  const answer = await new Promise((r) => rl.question(question, r))
  rl.close()
  return answer.trim() === 'yes'
}

const run = {
  async ls(store, [], o, out) {
    const limit = o.limit === undefined ? Infinity : number(o.limit, '--limit')
    const match = o.match === undefined ? () => true : require('picomatch')(o.match, { dot: true })
    let n = 0
    if (out.json) process.stdout.write('[')
    for await (const s of store.walk()) {
      if (n >= limit) break
      if (!match(s.id)) continue
      if (out.json) process.stdout.write(`${n ? ',' : ''}${JSON.stringify({ id: s.id, ttl: s.ttl, bytes: s.bytes, decodes: s.text !== null })}`)
      else out.line(`${s.id.padEnd(40)}  ${out.paint(s.ttl === -1 ? 'yellow' : 'green', ttlText(s.ttl).padStart(8))}  ${sizeText(s.bytes).padStart(10)}${s.text === null ? out.paint('red', '  (does not decode)') : ''}`)
      n++
    }
    if (out.json) process.stdout.write(']\n')
    else if (process.stdout.isTTY) out.line(out.paint('dim', `${n} session${n === 1 ? '' : 's'}`))
  },
  async get(store, [id], o, out) {
    need(id, 'an id')
    const s = await store.get(id)
    if (s === null) throw codedError('ERR_NOT_FOUND', `no session ${JSON.stringify(id)} (or it does not decode with this secret)`)
    out.value(s)
  },
  async set(store, [id, json], o, out) {
    need(id, 'an id')
    need(json, 'the session (JSON text, or - for stdin)')
    const text = json === '-' ? fs.readFileSync(0, 'utf8') : json
    const ttl = o.ttl === undefined ? DAY_S : number(o.ttl, '--ttl')
    await store.set(id, text, ttl * 1000)
    if (out.json) out.value({ id, ttl })
  },
  async rm(store, ids, o, out) {
    if (!ids.length) throw new UsageError('rm needs at least one id')
    let removed = 0
    for (const id of ids) if (await store.remove(id)) removed++
    out.json ? out.value({ removed }) : out.line(`removed ${removed} of ${ids.length}`)
  },
  async ttl(store, [id], o, out) {
    need(id, 'an id')
    const t = await store.ttl(id)
    out.json ? out.value({ id, ttl: t }) : out.line(String(t))
  },
  async expire(store, [id, seconds], o, out) {
    need(id, 'an id')
    need(seconds, 'the seconds')
    const s = number(seconds, 'seconds')
    if (!(await store.update(id, s * 1000))) throw codedError('ERR_NOT_FOUND', `no session ${JSON.stringify(id)}`)
    if (out.json) out.value({ id, ttl: s })
  },
  async count(store, [], o, out) {
    const n = await store.length()
    out.json ? out.value({ count: n }) : out.line(String(n))
  },
  async stats(store, [], o, out) {
    const buckets = [
      ['no expiry', (t) => t === -1],
      ['< 1 minute', (t) => t < 60],
      ['< 1 hour', (t) => t < 3600],
      ['< 1 day', (t) => t < DAY_S],
      ['< 7 days', (t) => t < 7 * DAY_S],
      ['7 days or more', () => true],
    ]
    const st = { count: 0, bytes: 0, largest: null, undecodable: 0, ttl: Object.fromEntries(buckets.map(([k]) => [k, 0])) }
    for await (const s of store.walk()) {
      st.count++
      st.bytes += s.bytes
      if (s.text === null) st.undecodable++
      if (!st.largest || s.bytes > st.largest.bytes) st.largest = { id: s.id, bytes: s.bytes }
      st.ttl[buckets.find(([, f]) => f(s.ttl))[0]]++
    }
    if (out.json) return out.value(st)
    out.line(`sessions      ${st.count}${st.undecodable ? ` (${st.undecodable} do not decode)` : ''}`)
    out.line(`total size    ${sizeText(st.bytes)}`)
    out.line(`largest       ${st.largest ? `${sizeText(st.largest.bytes)} (${st.largest.id})` : '-'}`)
    out.line('ttl')
    for (const [k, v] of Object.entries(st.ttl)) out.line(`  ${k.padEnd(16)}${String(v).padStart(10)}`)
  },
  async clear(store, [], o, out) {
    if (o['dry-run']) {
      let n = 0
      for await (const s of store.walk()) {
        if (!out.json) out.line(s.id)
        n++
      }
      return out.json ? out.value({ wouldRemove: n }) : out.line(`${n} session${n === 1 ? '' : 's'} would be removed (dry run)`)
    }
    if (!o.yes && !(await confirm('Remove every session of this store? Type yes: '))) {
      throw new UsageError('clear removes every session: confirm on a terminal, or pass --yes')
    }
    const bar = await progress(() => store.length(), 'clear')
    let removed = 0
    await pool(store.walk(), async (s) => {
      if (await store.remove(s.id)) removed++
      bar.tick()
    })
    bar.stop()
    out.json ? out.value({ removed }) : out.line(`removed ${removed}`)
  },
  async export(store, [file], o, out) {
    const sink = file === undefined || file === '-' ? process.stdout : fs.createWriteStream(file, { mode: 0o600 })
    const bar = await progress(() => (sink === process.stdout ? 0 : store.length()), 'export')
    let n = 0
    let skipped = 0
    for await (const s of store.walk()) {
      if (s.text === null) {
        skipped++
        continue
      }
      const line = `{"id":${JSON.stringify(s.id)},"ttlMs":${s.ttl === -1 ? -1 : s.ttl * 1000},"session":${s.text}}\n`
      if (!sink.write(line)) await new Promise((r) => sink.once('drain', r))
      n++
      bar.tick()
    }
    bar.stop()
    if (sink !== process.stdout) await new Promise((r, j) => sink.end((e) => (e ? j(e) : r())))
    const note = `exported ${n}${skipped ? `, ${skipped} that do not decode left out` : ''}`
    if (sink !== process.stdout) out.json ? out.value({ exported: n, skipped }) : out.line(note)
    else if (skipped) process.stderr.write(`rs-store: ${note}\n`)
  },
  async import(store, [file], o, out) {
    const bar = await progress(() => 0, 'import')
    let n = 0
    let expired = 0
    let lineNo = 0
    await pool(lines(file), async (line) => {
      lineNo++
      if (!line.trim()) return
      let rec
      try {
        rec = JSON.parse(line)
      } catch (e) {
        throw codedError('ERR_NOT_SERIALIZABLE', `line ${lineNo} is not JSON: ${e.message}`)
      }
      if (typeof rec.id !== 'string' || typeof rec.session !== 'object' || typeof rec.ttlMs !== 'number') {
        throw codedError('ERR_NOT_SERIALIZABLE', `line ${lineNo} is not {id, ttlMs, session}`)
      }
      if (rec.ttlMs !== -1 && rec.ttlMs <= 0) return void expired++
      await store.set(rec.id, rec.session, rec.ttlMs === -1 ? Infinity : rec.ttlMs)
      n++
      bar.tick()
    })
    bar.stop()
    out.json ? out.value({ imported: n, expired }) : out.line(`imported ${n}${expired ? `, ${expired} already expired left out` : ''}`)
  },
  async migrate(from, [toSpec], o, out, open) {
    need(toSpec, 'the store to migrate to')
    const to = open(toSpec, { create: true }) // closed by main(), as every store opened
    const bar = await progress(() => from.length(), 'migrate')
    let n = 0
    let skipped = 0
    await pool(from.walk(), async (s) => {
      if (s.text === null) return void skipped++
      await to.set(s.id, s.text, s.ttl === -1 ? Infinity : s.ttl * 1000)
      if (o['delete-source']) await from.remove(s.id)
      n++
      bar.tick()
    })
    bar.stop()
    out.json ? out.value({ migrated: n, skipped }) : out.line(`migrated ${n}${skipped ? `, ${skipped} that do not decode left in place` : ''}`)
  },
  async user(store, [sub, user], o, out) {
    need(user, 'a user')
    if (sub === 'ls') {
      const list = await store.sessionsOf(user)
      if (out.json) return out.value(list.map(({ id, ttl, session }) => ({ id, ttl, session })))
      for (const s of list) out.line(`${s.id.padEnd(40)}  ${out.paint(s.ttl === -1 ? 'yellow' : 'green', ttlText(s.ttl).padStart(8))}  ${sizeText(Buffer.byteLength(JSON.stringify(s.session))).padStart(10)}`)
      if (process.stdout.isTTY) out.line(out.paint('dim', `${list.length} session${list.length === 1 ? '' : 's'} of ${user}`))
      return
    }
    const except = o.except ?? []
    if (!o.yes && !(await confirm(`Remove every session of ${JSON.stringify(user)}${except.length ? ` but ${except.join(', ')}` : ''}? Type yes: `))) {
      throw new UsageError('user revoke removes sessions: confirm on a terminal, or pass --yes')
    }
    const removed = await store.revokeUser(user, { except })
    out.json ? out.value({ removed }) : out.line(`removed ${removed}`)
  },
  async watch(store, [id], o, out) {
    need(id, 'an id')
    const every = o.interval === undefined ? 1000 : number(o.interval, '--interval')
    let last
    for (;;) {
      const s = await store.get(id)
      const text = JSON.stringify(s)
      if (text !== last) {
        last = text
        const at = new Date().toISOString()
        if (out.json) out.value({ at, id, session: s })
        else {
          out.line(out.paint('dim', `— ${at}`))
          out.line(s === null ? out.paint('yellow', '(no session)') : JSON.stringify(s, null, 2))
        }
      }
      await new Promise((r) => setTimeout(r, every))
    }
  },
}

function need(v, what) {
  if (v === undefined) throw new UsageError(`missing ${what}`)
}

/** util.parseArgs's error in a line, with the option meant for an unknown one. */
function parseError(e) {
  const flag = (/'(--?[^' =]+)/.exec(e.message) || [])[1]
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag) {
    const meant = options.suggest(flag.replace(/^-+/, ''), Object.keys(OPTIONS))
    return `unknown option ${flag}${meant ? ` (did you mean --${meant}?)` : ''}`
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) return `option ${flag} ${OPTIONS[flag.replace(/^-+/, '')]?.type === 'boolean' ? 'takes no value' : 'needs a value'}`
  return e.message
}

/** Runs the CLI with `argv` (without node and the script); resolves the exit code. */
async function main(argv) {
  const [command, ...rest] = argv
  if (command === 'daemon') {
    // In this process (no child left behind by a signal); it exits the
    // process itself when stopped.
    await require('../bin/rs-store-daemon.js').main(rest)
    return new Promise(() => {})
  }
  let parsed
  try {
    parsed = util.parseArgs({ args: rest, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (e) {
    process.stderr.write(`rs-store: ${parseError(e)}\n\n${COMMANDS[command] ? commandHelp(command) : usage()}\n`)
    return 2
  }
  const o = parsed.values
  if (command === '--version' || command === '-v' || o.version) {
    const v = require('..').version
    process.stdout.write(o.json ? `${JSON.stringify(v)}\n` : `rs-store ${v.package} (addon ${v.addon}, ${v.binary}, ${v.platform})\n`)
    return 0
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${usage()}\n`)
    return command === undefined ? 2 : 0
  }
  if (!Object.hasOwn(run, command)) {
    const meant = options.suggest(command, Object.keys(run))
    process.stderr.write(`rs-store: unknown command ${JSON.stringify(command)}${meant ? ` (did you mean ${meant}?)` : ''}\n\n${usage()}\n`)
    return 2
  }
  if (o.help) {
    process.stdout.write(`${commandHelp(command)}\n`)
    return 0
  }
  const { subcommands } = COMMANDS[command] ?? {}
  // `rs-store user ls <store> <user>`: the subcommand comes before the store.
  const [sub, ...positionals] = subcommands ? parsed.positionals : [undefined, ...parsed.positionals]
  const [spec, ...args] = positionals
  const out = output(o)
  const opened = []
  const open = (s, opts) => {
    const store = openStore(s, o, opts)
    opened.push(store)
    return store
  }
  try {
    if (subcommands && !subcommands.includes(sub)) throw new UsageError(`${command} needs one of ${subcommands.join(', ')}${sub === undefined ? '' : `, not ${JSON.stringify(sub)}`}`)
    if (spec === undefined) throw new UsageError(`${command} needs a store`)
    for (const [i, what] of (COMMANDS[command].needs ?? []).entries()) need(args[i], what)
    const store = open(spec, { create: command === 'set' || command === 'import', users: subcommands !== undefined })
    process.once('SIGINT', () => {
      Promise.allSettled(opened.map((s) => s.close())).then(() => process.exit(130))
    })
    await run[command](store, subcommands ? [sub, ...args] : args, o, out, open)
    return 0
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`rs-store: ${e.message}\n\n${commandHelp(command)}\n`)
      return 2
    }
    process.stderr.write(`rs-store: ${e.code ? `${e.code}: ` : ''}${e.message}\n`)
    return 1
  } finally {
    await Promise.allSettled(opened.map((s) => s.close()))
  }
}

module.exports = { main, openStore }
