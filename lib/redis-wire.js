'use strict'
// The Redis connection on the JS thread (one server, or rs-store's session
// daemon): a `net` or `tls` socket of Node's, while Rust packs the commands
// and parses the replies with the redis crate (src/engine/wire.rs). It is the
// I/O side of a batch engine (lib/batch.js): `flush(n)` sends the tick's n
// queued calls, replies go to `deliver` in call order.
//
// * Connects lazily and again after a failure. While a connect attempt is
//   under way, calls wait for it (at most connectTimeoutMs); within 250 ms of
//   a failed attempt, calls fail at once instead of queueing behind another.
// * A call fails with ERR_STORE_UNAVAILABLE once it has waited
//   commandTimeoutMs while the server sent nothing at all; then every call
//   in flight fails and the connection is remade. (A server that is slow but
//   answering is not cut off in the middle of a long pipeline or scan.)
// * The socket never holds the process open; the batch engine keeps Node
//   alive while calls are pending.
const net = require('node:net')
const tls = require('node:tls')
const { codedError } = require('./errors')

const RETRY_AFTER_MS = 250

/**
 * @param native the AsyncStore in JS-thread mode (opened/pack/feed/abort)
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
  let sends = [] // { at, upTo }: when the calls up to `upTo` were written
  let lastData = 0
  let timer = null
  let closing = null // resolves the close once every call is answered

  const unavailable = (why) => codedError('ERR_STORE_UNAVAILABLE', `${kind} at ${target.name}: ${why}`)

  function answer(replies) {
    answered += replies.length
    while (sends.length && sends[0].upTo <= answered) sends.shift()
    deliver(replies)
    if (closing && answered >= total) finishClose()
  }

  function fail(err) {
    const s = socket
    socket = null
    ready = false
    clearTimeout(connectTimer)
    clearTimeout(timer)
    timer = null
    sends = []
    lastFailure = { at: Date.now(), err }
    if (s) s.destroy()
    answer(native.abort(err.code, err.message))
  }

  // Packed commands come as a Latin-1 string (one char per byte: cheaper to
  // make than a Buffer), the rarer next steps of a whole-store op as a Buffer.
  function write(bytes) {
    if (bytes) socket.write(bytes, 'latin1')
  }

  function sent() {
    if (answered >= total) return
    sends.push({ at: Date.now(), upTo: total })
    if (!timer) arm()
  }

  function arm() {
    const head = sends[0]
    if (!head) {
      timer = null
      return
    }
    const deadline = Math.max(head.at, lastData) + o.commandTimeoutMs
    const left = deadline - Date.now()
    if (left <= 0) return fail(unavailable(`no answer within ${o.commandTimeoutMs} ms (commandTimeoutMs)`))
    timer = setTimeout(() => {
      timer = null
      arm()
    }, left)
    timer.unref()
  }

  function connect() {
    if (lastFailure && Date.now() - lastFailure.at < RETRY_AFTER_MS) {
      const e = lastFailure.err
      return answer(native.abort(e.code, e.message))
    }
    const opts = { ...target.opts, noDelay: true }
    const s = target.tls ? tls.connect({ ...opts, ...target.tls }) : net.connect(opts)
    socket = s
    s.unref()
    connectTimer = setTimeout(() => {
      if (socket === s) fail(unavailable(`no connection within ${o.connectTimeoutMs} ms (connectTimeoutMs)`))
    }, Math.min(o.connectTimeoutMs, o.commandTimeoutMs))
    connectTimer.unref()
    s.once(target.tls ? 'secureConnect' : 'connect', () => {
      if (socket !== s) return
      clearTimeout(connectTimer)
      ready = true
      lastData = Date.now()
      write(native.opened())
      sent()
    })
    s.on('data', (chunk) => {
      if (socket !== s) return
      lastData = Date.now()
      let replies
      try {
        replies = native.feed(chunk)
      } catch (e) {
        return fail(e)
      }
      // Last, the next steps of a length/clear/all and calls held behind it.
      const more = replies.length && replies[replies.length - 1] instanceof Uint8Array ? replies.pop() : null
      if (replies.length) answer(replies)
      if (more && socket === s) {
        write(more)
        if (sends.length && !timer) arm()
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
      if (!socket) return connect()
      if (!ready) return // sent once connected
      write(native.pack())
      sent()
    },
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

module.exports = { wireIo }
