'use strict'
// `npm start`: a real simpleS 0.9 server on 127.0.0.1 whose page counts your
// visits in the session. PORT (default 3000) picks the port, RS_STORE picks
// the store: `memory` (default), `dummy`, `file` (SESSION_DIR, default
// ./sessions), `redis` (REDIS_URL, default redis://127.0.0.1:6379) or
// `daemon` (DAEMON, a port or socket of `npx rs-store-daemon`, default 7070).
const rs = require('..')
const { startCounterApp } = require('./counter-app')

const kind = process.env.RS_STORE || 'memory'
const factories = {
  memory: () => rs.memory({ maxEntries: 100_000 }),
  dummy: () => rs.dummy(),
  file: () => rs.file({ dir: process.env.SESSION_DIR || 'sessions' }),
  redis: () => rs.redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379'),
  daemon: () => rs.daemon(process.env.DAEMON || 7070),
}
if (!factories[kind]) {
  console.error(`RS_STORE must be one of: ${Object.keys(factories).join(', ')}`)
  process.exit(1)
}
const store = factories[kind]()
const port = Number(process.env.PORT || 3000)

startCounterApp({ store, port }).then((app) => {
  console.log(`rs-store demo (${kind} store): http://127.0.0.1:${app.port}/  (/peek reads, /logout destroys)`)
  const stop = () => app.close().then(() => store.close()).then(() => process.exit(0))
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
})
