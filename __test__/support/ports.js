'use strict'
// What every server starter of the tests needs: a free loopback port, and
// waiting until a server answers.
const net = require('node:net')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** A port nothing listens on now, on 127.0.0.1 (never 6379 or 5432's system services). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Resolves once `fn()` is truthy, polling every 50 ms; rejects after `ms` with the last error. */
async function waitFor(what, fn, ms = 10_000) {
  const end = Date.now() + ms
  let last
  while (Date.now() < end) {
    try {
      if (await fn()) return
    } catch (e) {
      last = e
    }
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`)
}

module.exports = { freePort, waitFor, sleep }
