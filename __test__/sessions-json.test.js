'use strict'
// sessions.json (rs.file({ sessionStateFile })) at process exit and with
// more than one store or process on a file: every acknowledged session is
// on disk after process.exit() (the usual SIGTERM handler), and a second
// store on a file, in another process or this one, is refused with
// ERR_STORE_IN_USE until the first closes.
const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const rs = require('..')

const SCRIPT = path.join(__dirname, 'support', 'json-store.js')
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-json-'))
const onDisk = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))

/** A child running support/json-store.js; `lines` collects what it prints. */
function child(mode, files, coalesceMs) {
  const args = [SCRIPT, mode, [].concat(files).join(',')]
  if (coalesceMs !== undefined) args.push(String(coalesceMs))
  const proc = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  const c = { proc, lines: [], stderr: '' }
  let out = ''
  const waiters = []
  proc.stdout.setEncoding('utf8')
  proc.stdout.on('data', (d) => {
    out += d
    let i
    while ((i = out.indexOf('\n')) >= 0) {
      c.lines.push(out.slice(0, i))
      out = out.slice(i + 1)
      for (const w of waiters.splice(0)) w()
    }
  })
  proc.stderr.on('data', (d) => (c.stderr += d))
  c.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  /** Resolves once the child printed `line` (fails if it exits first). */
  c.said = (line) =>
    new Promise((resolve, reject) => {
      const check = () => (c.lines.includes(line) ? resolve() : waiters.push(check))
      c.exited.then(() => (c.lines.includes(line) ? resolve() : reject(new Error(`child exited without '${line}': ${c.lines} ${c.stderr}`))))
      check()
    })
  return c
}

test('sessions.json: process.exit() right after 50 awaited sets leaves all 50 on disk (one and three stores)', async () => {
  const dir = tmp()
  try {
    for (const files of [[path.join(dir, 'one.json')], ['a', 'b', 'c'].map((n) => path.join(dir, `${n}.json`))]) {
      // Two processes at once, each with its own files.
      const sets = [files, files.map((f) => f.replace('.json', '-2.json'))]
      const children = sets.map((f) => child('exit', f))
      const exits = await Promise.all(children.map((c) => c.exited))
      children.forEach((c, i) => assert.deepEqual(exits[i], { code: 0, signal: null }, c.stderr))
      for (const [i, list] of sets.entries()) {
        for (const f of list) {
          const sessions = onDisk(f)
          assert.equal(Object.keys(sessions).length, 50, `${f}: ${Object.keys(sessions).length} of 50`)
          for (const [id, s] of Object.entries(sessions)) assert.deepEqual(s, { pid: children[i].proc.pid, id })
        }
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('sessions.json: SIGTERM with a handler calling process.exit() leaves every acknowledged session on disk', async () => {
  const dir = tmp()
  try {
    const files = [path.join(dir, 'x.json'), path.join(dir, 'y.json')]
    // A long coalescing window: nothing would be written before the signal.
    const c = child('sigterm', files, 10_000)
    await c.said('ready')
    c.proc.kill('SIGTERM')
    assert.deepEqual(await c.exited, { code: 0, signal: null }, c.stderr)
    for (const f of files) assert.equal(Object.keys(onDisk(f)).length, 50, f)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('sessions.json: a second process on the file is refused with ERR_STORE_IN_USE, and can open it once the first closed', async () => {
  const dir = tmp()
  const file = path.join(dir, 'sessions.json')
  try {
    const holder = child('hold', file)
    await holder.said('open')
    // Another process, and this one.
    const other = child('race', file)
    await other.exited
    assert.deepEqual(other.lines, ['ERR_STORE_IN_USE'], other.stderr)
    assert.throws(
      () => rs.file({ sessionStateFile: file }),
      (e) => e.code === 'ERR_STORE_IN_USE' && e.message.includes(`process ${holder.proc.pid}`),
    )
    holder.proc.stdin.write('close\n')
    await holder.said('closed')
    await holder.exited
    const store = rs.file({ sessionStateFile: file })
    try {
      assert.equal(await store.length(), 20, 'the first process’s sessions are all there')
    } finally {
      await store.close()
    }
    // A process that dies holding it releases it too.
    const killed = child('hold', file)
    await killed.said('open')
    killed.proc.kill('SIGKILL')
    await killed.exited
    const after = rs.file({ sessionStateFile: file })
    await after.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('sessions.json: four processes opening one file at once: one writes, the others are refused, nothing acknowledged is lost', async () => {
  const dir = tmp()
  const file = path.join(dir, 'sessions.json')
  try {
    for (let round = 0; round < 3; round++) {
      fs.rmSync(file, { force: true })
      const children = [1, 2, 3, 4].map(() => child('race', file))
      await Promise.all(children.map((c) => c.exited))
      const said = children.map((c) => c.lines.join(' ') || c.stderr)
      const writers = children.filter((c) => c.lines[0] === 'wrote')
      assert.ok(writers.length >= 1, said.join(' | '))
      for (const s of said) assert.ok(s === 'wrote' || s === 'ERR_STORE_IN_USE', s)
      // Whoever wrote (one after another, each once the previous closed) kept everything.
      const sessions = onDisk(file)
      for (const w of writers) assert.equal(Object.values(sessions).filter((s) => s.pid === w.proc.pid).length, 20)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('sessions.json: several stores in one process: one exit listener while any is open, none after they close; a second store on a file is refused', async () => {
  const dir = tmp()
  try {
    const before = process.listenerCount('exit')
    const stores = Array.from({ length: 20 }, (_, i) => rs.file({ sessionStateFile: path.join(dir, `s${i}.json`) }))
    assert.equal(process.listenerCount('exit'), before + 1)
    assert.throws(
      () => rs.file({ sessionStateFile: path.join(dir, 's3.json') }),
      (e) => e.code === 'ERR_STORE_IN_USE' && /another store in this process/.test(e.message),
    )
    await Promise.all(stores.map((s, i) => s.set(`id${i}`, { i }, 60_000)))
    await Promise.all(stores.slice(1).map((s) => s.close()))
    assert.equal(process.listenerCount('exit'), before + 1, 'one store is still open')
    await stores[0].close()
    assert.equal(process.listenerCount('exit'), before)
    for (let i = 0; i < 20; i++) assert.deepEqual(onDisk(path.join(dir, `s${i}.json`)), { [`id${i}`]: { i } })
    // Closed: the file can be opened again.
    const again = rs.file({ sessionStateFile: path.join(dir, 's3.json') })
    assert.deepEqual(await again.get('id3'), { i: 3 })
    await again.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('sessions.json: a worker that calls process.exit() or is terminated right after 50 awaited sets leaves all 50 on disk', async () => {
  const { Worker } = require('node:worker_threads')
  const dir = tmp()
  try {
    const run = (file, how) =>
      new Promise((resolve, reject) => {
        const w = new Worker(
          `const rs = require(${JSON.stringify(path.join(__dirname, '..'))})
          const { parentPort } = require('node:worker_threads')
          const s = rs.file({ sessionStateFile: ${JSON.stringify(file)}, coalesceMs: 10000 })
          ;(async () => {
            for (let i = 0; i < 50; i++) await s.set('id' + i, { i }, 60000)
            if (${JSON.stringify(how)} === 'exit') process.exit(0)
            parentPort.postMessage('set')
          })()`,
          { eval: true },
        )
        w.on('message', () => w.terminate())
        w.on('error', reject)
        w.on('exit', resolve)
      })
    // Two workers at once, each with its own file.
    for (const how of ['exit', 'terminate']) {
      const files = [1, 2].map((i) => path.join(dir, `${how}${i}.json`))
      await Promise.all(files.map((f) => run(f, how)))
      for (const f of files) assert.equal(Object.keys(onDisk(f)).length, 50, f)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
