'use strict'
// A real simpleS 0.9 server on 127.0.0.1 whose pages count visits in the
// session: the demo (demo/server.js) and the end-to-end tests both run it.
const simples = require('simples')

/**
 * Starts the app. `store` is passed to simpleS as the session store, either
 * through `simples.store(store)` (wrap: true) or as the plain object.
 * Resolves { server, port, close() }.
 */
function startCounterApp({ store, wrap = true, port = 0, timeout } = {}) {
  return new Promise((resolve, reject) => {
    const server = simples(port, { hostname: '127.0.0.1' })
    server.session({ enabled: true, store: wrap ? simples.store(store) : store, ...(timeout ? { timeout } : {}) })
    server.get('/', (connection) => {
      const visits = (connection.session.get('visits') || 0) + 1
      connection.session.set('visits', visits)
      connection.end(`visits: ${visits}`)
    })
    // Read-only: changes nothing, so simpleS calls the store's update().
    server.get('/peek', (connection) => {
      connection.end(`visits: ${connection.session.get('visits') || 0}`)
    })
    server.get('/logout', (connection) => {
      connection.session.destroy().then(
        () => connection.end('bye'),
        (e) => connection.end(`error: ${e.message}`),
      )
    })
    server.on('error', reject)
    server.on('start', () => {
      const addr = server._meta.instance.address()
      resolve({ server, port: addr.port, close: () => new Promise((r) => server.stop(r)) })
    })
  })
}

/** A tiny cookie-keeping HTTP client (tests). */
function client(port) {
  let cookie = ''
  return {
    get cookie() {
      return cookie
    },
    set cookie(c) {
      cookie = c
    },
    async get(path) {
      // A hung response fails the test instead of hanging the run.
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        headers: cookie ? { cookie } : {},
        signal: AbortSignal.timeout(5000),
      })
      const set = res.headers.getSetCookie().map((c) => c.split(';')[0]).filter((c) => c.startsWith('_session='))
      if (set.length) cookie = set[0]
      return { status: res.status, text: await res.text() }
    },
    sessionId() {
      return cookie.replace(/^_session=/, '')
    },
  }
}

module.exports = { startCounterApp, client }
