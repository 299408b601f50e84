'use strict'
// Every ```js example of the README and of the docs that have runnable
// ones (SOURCES) runs as written: each is written to a
// folder of its own where `require('rs-store')` is this checkout, run with
// PORT (a free port) and REDIS_URL (a redis-server started here). A server
// example must print "listening on <url>" and count visits in the session
// over two requests with one cookie; any other example must exit 0.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { startRedis, freePort } = require('./support/redis-servers')
const { startPostgres } = require('./support/postgres-server')

const ROOT = path.join(__dirname, '..')
const SIMPLES_08 = path.join(__dirname, 'hosts/simples-0.8/node_modules/simples')
// The README's examples and those of the docs that have runnable ones.
const SOURCES = ['README.md', 'docs/frameworks.md', 'docs/observability.md']
const examples = SOURCES.flatMap((file) => [...fs.readFileSync(path.join(ROOT, file), 'utf8').matchAll(/```js\n([\s\S]*?)```/g)].map((m, i) => ({ file, n: i + 1, code: m[1] })))

let redis
let postgres
test.before(async () => {
  redis = await startRedis()
  postgres = await startPostgres()
})
test.after(async () => {
  await redis.stop()
  await postgres.destroy()
})

test('the README and the docs have examples', () => {
  for (const file of SOURCES) assert.ok(examples.filter((e) => e.file === file).length >= (file === 'docs/observability.md' ? 1 : 5), file)
})

/** A server example run on a port that is taken says so and exits non-zero (it never claims to listen). */
async function portTaken(dir) {
  const net = require('node:net')
  const holder = net.createServer().listen(0, '127.0.0.1')
  await new Promise((r) => holder.once('listening', r))
  const port = holder.address().port
  try {
    const child = spawn(process.execPath, ['example.js'], { cwd: dir, env: { ...process.env, PORT: String(port), REDIS_URL: redis.url, DATABASE_URL: postgres.url, NODE_PATH: path.join(ROOT, 'node_modules') }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    const code = await new Promise((r) => child.once('exit', (c) => r(c)))
    clearTimeout(timer)
    assert.notEqual(code, 0, `exits non-zero on a taken port:\n${out}`)
    assert.doesNotMatch(out, /listening on/)
    assert.match(out, new RegExp(`${port}.*(EADDRINUSE|in use)|(EADDRINUSE|in use).*${port}`), out)
  } finally {
    holder.close()
  }
}

examples.forEach(({ file, n, code }) => {
  const title = code.split('\n').find((l) => /require\('rs-store\/|require\('(express|fastify|simples)'\)/.test(l)) || code.split('\n')[0]
  test(`${file} example ${n} runs as written (${title.trim()})`, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-readme-'))
    fs.mkdirSync(path.join(dir, 'node_modules'))
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules/rs-store'))
    // simpleS 0.8.8 (what `npm install simples` gives) for its example.
    if (/simples-0\.8/.test(code)) fs.symlinkSync(SIMPLES_08, path.join(dir, 'node_modules/simples'))
    // import() does not look in NODE_PATH: the ES modules an example imports are linked beside it.
    for (const [, name] of code.matchAll(/import\('((?:@[^'/]+\/)?[^'/]+)/g)) {
      fs.mkdirSync(path.dirname(path.join(dir, 'node_modules', name)), { recursive: true })
      if (!fs.existsSync(path.join(dir, 'node_modules', name))) fs.symlinkSync(path.join(ROOT, 'node_modules', name), path.join(dir, 'node_modules', name))
    }
    fs.writeFileSync(path.join(dir, 'example.js'), code)
    const port = await freePort()
    const child = spawn(process.execPath, ['example.js'], {
      cwd: dir,
      env: { ...process.env, PORT: String(port), REDIS_URL: redis.url, DATABASE_URL: postgres.url, NODE_PATH: path.join(ROOT, 'node_modules') },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const exited = new Promise((r) => child.once('exit', (c) => r(c)))
    let settled = false
    let poll
    let timer
    try {
      const url = await Promise.race([
        exited.then((c) => {
          if (c !== 0) throw new Error(`example exited with ${c}:\n${out}`)
          return null
        }),
        new Promise((resolve) => {
          const look = () => {
            const m = /listening on (http:\/\/\S+)/.exec(out)
            if (m) resolve(m[1])
            else if (!settled) poll = setTimeout(look, 20)
          }
          look()
        }),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`example neither exited nor listened:\n${out}`)), 20_000)
        }),
      ]).finally(() => {
        settled = true
      })
      if (url === null) return
      let cookie = ''
      for (let n = 1; n <= 2; n++) {
        const res = await fetch(url, { headers: cookie ? { cookie } : {}, signal: AbortSignal.timeout(10_000) })
        cookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ') || cookie
        assert.equal(res.status, 200)
        assert.equal(await res.text(), `visits: ${n}`, out)
      }
      await portTaken(dir)
    } finally {
      settled = true
      clearTimeout(poll)
      clearTimeout(timer)
      child.kill()
      await exited
    }
  })
})
