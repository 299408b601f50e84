'use strict'
// The Redis connection on the JS thread (one server, or rs-store's session
// daemon): a `net` or `tls` socket of Node's, while Rust packs the commands
// and parses the replies with the redis crate (src/backend/redis/wire.rs). It is the
// I/O side of a batch engine (lib/batch.js): `flush(n)` sends the tick's n
// queued calls, replies go to `deliver` in call order.
//
// * Connects lazily and again after a failure. While a connect attempt is
//   under way, calls wait for it (at most connectTimeoutMs, never past
//   commandTimeoutMs); within REDIS_RETRY_AFTER_MS of a failed attempt (no
//   connection, or one that refused us), calls fail at once instead of
//   queueing behind another. That policy is the Rust client's, read from
//   the addon (src/backend/redis/connect.rs), so both drivers keep one. A connection lost after it
//   worked is made again by the next call at once.
// * Every call settles within commandTimeoutMs of being queued, whatever the
//   server does (silence, or a reply that trickles in byte by byte): once
//   the oldest unanswered call is that old, every call in flight fails with
//   ERR_STORE_UNAVAILABLE and the connection is remade. One timer per
//   connection watches the oldest call. A whole-store op (length, clear,
//   ids, entries) is many SCAN round trips: each step answered gives it
//   (and the calls held behind it) a new commandTimeoutMs.
// * The socket never holds the process open; the batch engine keeps Node
//   alive while calls are pending.
const net = require('node:net')
const tls = require('node:tls')
const { codedError } = require('./errors')
const { REDIS_RETRY_AFTER_MS, redisConnectWithinMs } = require('./native')

/**
 * @param native the WireStore (lib/native.js wireStore: q/opened/pack/feed/abort)
 * @param deliver (replies) => void, in call order
 * @param o { url, tlsCa, tlsCert, tlsKey, tls, connectTimeoutMs, commandTimeoutMs, mode }
 */
function wireIo(native, deliver, o) {
  const target = endpoint(o)
  const kind = o.mode === 'daemon' ? 'rs-store daemon' : 'Redis'
  let socket = null
  let ready = false
  let connectTimer = null
  let lastFailure = null // { at, err }
  let total = 0 // calls handed over
  let answered = 0 // calls answered
  let sends = [] // { at, upTo }: when the calls up to `upTo` were queued
  let timer = null
  let closing = null // resolves the close once every call is answered
  const connections = { opened: 0, failed: 0, lost: 0 } // for stats()
  const connectWithinMs = redisConnectWithinMs(o.connectTimeoutMs, o.commandTimeoutMs)

  const unavailable = (why) => codedError('ERR_STORE_UNAVAILABLE', `${kind} at ${target.name}: ${why}`)

  function answer(replies) {
    answered += replies.length
    while (sends.length && sends[0].upTo <= answered) sends.shift()
    deliver(replies)
    if (closing && answered >= total) finishClose()
  }

  /** `refused`: no usable connection could be made (calls fail fast for a while). */
  function fail(err, refused = !ready) {
    const s = socket
    socket = null
    ready = false
    clearTimeout(connectTimer)
    clearTimeout(timer)
    timer = null
    sends = []
    lastFailure = refused ? { at: Date.now(), err } : null
    if (refused) connections.failed++
    else connections.lost++
    if (s) s.destroy()
    answer(native.abort(err.code, err.message))
  }

  // Packed commands come as a Latin-1 string (one char per byte: cheaper to
  // make than a Buffer), the rarer next steps of a whole-store op as a Buffer.
  function write(bytes) {
    if (bytes) socket.write(bytes, 'latin1')
  }

  function arm() {
    const head = sends[0]
    if (!head) {
      timer = null
      return
    }
    const left = head.at + o.commandTimeoutMs - Date.now()
    if (left <= 0) return fail(unavailable(`no answer within ${o.commandTimeoutMs} ms (commandTimeoutMs)`))
    timer = setTimeout(() => {
      timer = null
      arm()
    }, left)
    timer.unref()
  }

  function connect() {
    if (lastFailure && Date.now() - lastFailure.at < REDIS_RETRY_AFTER_MS) {
      const e = lastFailure.err
      return answer(native.abort(e.code, e.message))
    }
    const opts = { ...target.opts, noDelay: true }
    const s = target.tls ? tls.connect({ ...opts, ...target.tls }) : net.connect(opts)
    socket = s
    s.unref()
    let tcpUp = false
    if (target.tls) s.once('connect', () => (tcpUp = true))
    connectTimer = setTimeout(() => {
      if (socket !== s) return
      const ms = connectWithinMs
      // Connected, but no TLS handshake: most often a plain Redis given rediss://.
      if (tcpUp) fail(unavailable(`connected, but no TLS handshake within ${ms} ms: does the server speak TLS on this port? rediss:// and tls: true need a TLS port (tls-port); a plain Redis is redis://`))
      else fail(unavailable(`no connection within ${ms} ms (connectTimeoutMs)`))
    }, connectWithinMs)
    connectTimer.unref()
    s.once(target.tls ? 'secureConnect' : 'connect', () => {
      if (socket !== s) return
      clearTimeout(connectTimer)
      ready = true
      connections.opened++
      write(native.opened())
    })
    s.on('data', (chunk) => {
      if (socket !== s) return
      let replies
      try {
        replies = native.feed(chunk)
      } catch (e) {
        // Not RESP, or the opening (AUTH/SELECT) refused: so would the next connection be.
        return fail(e, true)
      }
      // Last, the next steps of a length/clear/all and calls held behind it.
      const more = replies.length && replies[replies.length - 1] instanceof Uint8Array ? replies.pop() : null
      if (replies.length) answer(replies)
      if (more && socket === s) {
        // A step of a whole-store op was answered: its next one, and the
        // calls held behind it, have their own commandTimeoutMs.
        const now = Date.now()
        for (const e of sends) e.at = now
        write(more)
      }
    })
    // A connection closed while nothing waits on it (the server's idle
    // timeout, a restart between calls) is simply made again on the next
    // call; only calls it leaves unanswered fail.
    const lost = (why) => {
      if (socket !== s) return
      if (ready && answered >= total) {
        socket = null
        ready = false
        s.destroy()
        return
      }
      fail(unavailable(why))
    }
    s.on('error', (e) => lost(e.message))
    s.on('close', () => lost('the connection closed'))
  }

  function finishClose() {
    const done = closing
    closing = null
    const s = socket
    socket = null
    clearTimeout(timer)
    clearTimeout(connectTimer)
    if (s) s.end()
    queueMicrotask(() => done())
  }

  return {
    /** Sends the `n` calls queued this tick (connecting first if needed). */
    flush(n) {
      total += n
      sends.push({ at: Date.now(), upTo: total })
      if (!timer) arm()
      if (!socket) return connect()
      if (!ready) return // sent once connected
      write(native.pack())
    },
    /**
     * For stats(): connections made (the first, then one after each loss:
     * reconnects are opened - 1), connect attempts that failed (none made,
     * or refused: AUTH, not RESP), and connections lost under calls (closed
     * by the server, reset, commandTimeoutMs).
     */
    counters: () => ({ connections: { ...connections } }),
    /** Answers every call so far, closes the connection, then delivers one more reply (null). */
    close() {
      closing = () => deliver([null])
      if (answered >= total) finishClose()
    },
  }
}

/** Where to connect: TCP host/port (TLS for rediss:// or `tls`), or a UNIX socket. */
function endpoint(o) {
  const url = new URL(o.urls[0])
  if (url.protocol === 'redis+unix:' || url.protocol === 'unix:') {
    const path = decodeURIComponent(url.pathname)
    return { name: path, opts: { path } }
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1'
  const port = Number(url.port || 6379)
  const name = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
  const secure = url.protocol === 'rediss:' || o.tls === true
  const tlsOpts = secure ? { ca: o.tlsCa, cert: o.tlsCert, key: o.tlsKey, servername: net.isIP(host) ? undefined : host } : null
  return { name, opts: { host, port }, tls: tlsOpts }
}

module.exports = { wireIo, endpoint }
