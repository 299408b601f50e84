'use strict'
// A process using sessions.json stores, for __test__/sessions-json.test.js:
// `node json-store.js <mode> <file>[,<file>…] [coalesceMs]`.
//   exit:    sets 50 sessions (awaited) in each file's store, then process.exit()
//   sigterm: the same, with the usual SIGTERM handler (process.exit); prints
//            'ready' and waits for the signal
//   hold:    opens the store, sets 20 sessions, prints 'open', closes it
//            when a line 'close' arrives on stdin, prints 'closed'
//   race:    opens the store and sets 20 sessions; prints 'wrote' or the
//            error's code
const rs = require('../..')

const [mode, files, coalesce] = process.argv.slice(2)
const coalesceMs = coalesce === undefined ? undefined : Number(coalesce)
const say = (line) => process.stdout.write(`${line}\n`)
const ids = (file, n) => Array.from({ length: n }, (_, i) => `${process.pid}-${i}-${file.length}`)

async function setAll(store, file, n) {
  for (const id of ids(file, n)) await store.set(id, { pid: process.pid, id }, 3_600_000)
}

async function main() {
  const list = files.split(',')
  if (mode === 'exit' || mode === 'sigterm') {
    const stores = list.map((f) => rs.file({ sessionStateFile: f, coalesceMs }))
    for (let i = 0; i < stores.length; i++) await setAll(stores[i], list[i], 50)
    if (mode === 'exit') process.exit(0)
    process.on('SIGTERM', () => process.exit(0))
    say('ready')
    setTimeout(() => process.exit(3), 60_000) // never reached when the test signals
    return
  }
  if (mode === 'hold') {
    const store = rs.file({ sessionStateFile: list[0], coalesceMs })
    await setAll(store, list[0], 20)
    say('open')
    process.stdin.setEncoding('utf8')
    let buf = ''
    process.stdin.on('data', async (d) => {
      buf += d
      if (!buf.includes('close\n')) return
      await store.close()
      say('closed')
      process.stdin.destroy()
    })
    return
  }
  if (mode === 'race') {
    let store
    try {
      store = rs.file({ sessionStateFile: list[0], coalesceMs })
    } catch (e) {
      say(e.code)
      return
    }
    await setAll(store, list[0], 20)
    await store.close()
    say('wrote')
    return
  }
  throw new Error(`unknown mode ${mode}`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
