'use strict'
// Locks on a store, and HTTP Sessions' storage shape on top of them.
//
// * lock(id, { ttlMs, waitMs }) → Lock { id, released, release() }. Waiters
//   of one process queue in FIFO order per id; the head of the queue then
//   takes the backend's lock (memory: in-process; Redis: SET NX PX with a
//   random token, released by compare-and-delete), retrying with a short
//   backoff until `waitMs` has passed (then ERR_LOCK_TIMEOUT). While held,
//   the lock is renewed every ttlMs/3, so a long critical section keeps it;
//   a holder that dies stops renewing and its lock expires after ttlMs.
//   A renewal the backend answers "not yours" (it restarted and forgot the
//   lock, or the holder stalled past ttlMs and another took it) marks the
//   lock lost: `lock.lost` turns true, `lock.signal` aborts with
//   ERR_LOCK_LOST, and the store's onError hears of it.
// * withLock(id, fn, opts): lock, run, release (also when fn throws).
// * HTTP Sessions' StorageInterface: read(idOrLock), write(idOrLock, data,
//   expiresAt?, release?) with expiresAt in epoch ms, purge(idOrLock)
//   (releases). A bare id means: lock, operate, release.
const crypto = require('node:crypto')
const { codedError, invalidType, fromNative } = require('./errors')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const DEFAULTS = { ttlMs: 30_000, waitMs: 10_000 }

function lockOptions(opts = {}) {
  const num = (name) => {
    const v = opts[name] ?? DEFAULTS[name]
    if (typeof v !== 'number') throw invalidType('ERR_INVALID_TIMEOUT', `${name} must be a number`)
    if (!(v >= 0)) throw codedError('ERR_INVALID_TIMEOUT', `${name} must be >= 0, got ${v}`)
    return v
  }
  const ttlMs = num('ttlMs')
  if (ttlMs < 1) throw codedError('ERR_INVALID_TIMEOUT', 'ttlMs must be at least 1')
  return { ttlMs, waitMs: num('waitMs') }
}

/**
 * @param engine an engine with locks: call('lock' | 'renew', id, token, ttlMs), call('unlock', id, token) (values or Promises)
 * @param ops { checkId, get(id), setMs(id, data, ms), remove(id), report(err), observed(name, impl) }:
 *   `observed` makes a counted, traced store method (lib/observe.js) of lock, and of the unlock and renew calls
 */
function locking(engine, { checkId, get, setMs, remove, report, observed }) {
  const queues = new Map() // id → tail of the local FIFO chain
  const held = new Set() // locks taken and not released yet
  /** For stats(): locks taken, of them taken after waiting, waits that timed out, locks lost. */
  const counts = { acquired: 0, waited: 0, timeouts: 0, lost: 0 }
  const unlockCall = observed('unlock', (id, token) => engine.call('unlock', id, token))
  const renewCall = observed('renew', (id, token, ttlMs) => engine.call('renew', id, token, ttlMs))
  const lock = observed('lock', lockImpl)

  async function lockImpl(id, opts) {
    checkId(id)
    const { ttlMs, waitMs } = lockOptions(opts)
    const deadline = Date.now() + waitMs
    const behind = queues.has(id)
    const prev = queues.get(id) || Promise.resolve()
    let passTurn
    const mine = new Promise((r) => (passTurn = r))
    const tail = prev.then(() => mine)
    queues.set(id, tail)
    const leave = () => {
      passTurn()
      if (queues.get(id) === tail) queues.delete(id)
    }
    // (Errors never name the session id: a bearer credential, and errors go to logs and traces.)
    const timeout = () => codedError('ERR_LOCK_TIMEOUT', `lock not acquired within ${waitMs} ms`)
    // our turn in this process
    let timer
    const turn = await Promise.race([prev.then(() => true), new Promise((r) => (timer = setTimeout(() => r(false), Math.max(0, deadline - Date.now()))))])
    clearTimeout(timer)
    if (!turn) {
      leave()
      counts.timeouts++
      throw timeout()
    }
    // the backend's lock
    const token = crypto.randomBytes(16).toString('hex')
    let delay = 1
    let waited = behind // another call of this process held or awaited it
    try {
      for (;;) {
        if (await engine.call('lock', id, token, ttlMs)) break
        waited = true
        const left = deadline - Date.now()
        if (left <= 0) {
          counts.timeouts++
          throw timeout()
        }
        await sleep(Math.min(delay + Math.random() * delay, left))
        delay = Math.min(delay * 2, 25)
      }
    } catch (e) {
      leave()
      throw fromNative(e)
    }
    counts.acquired++
    if (waited) counts.waited++
    // A renewal that fails (the store closed, the backend down) is retried
    // at the next period: nothing here may throw where no caller can catch it.
    const abort = new AbortController()
    const lost = () => {
      if (lock.released || lock.lost) return
      lock.lost = true
      counts.lost++
      clearInterval(renewal)
      const err = codedError('ERR_LOCK_LOST', `a lock was lost: the backend no longer holds it for this holder (it restarted, or the lock outlived its ttlMs without renewal)`)
      abort.abort(err)
      report(err)
    }
    const renew = () => {
      try {
        renewCall(id, token, ttlMs).then((mine) => mine === false && lost(), () => {})
      } catch {}
    }
    const renewal = setInterval(renew, Math.max(1, ttlMs / 3))
    renewal.unref()
    const lock = {
      id,
      released: false,
      lost: false,
      signal: abort.signal,
      async release() {
        if (lock.released) return
        lock.released = true
        held.delete(lock)
        clearInterval(renewal)
        try {
          await unlockCall(id, token)
        } finally {
          leave()
        }
      },
    }
    held.add(lock)
    return lock
  }

  /** Releases every lock still held (close()); failures are ignored. */
  function releaseAll() {
    return Promise.all([...held].map((l) => l.release().catch(() => {})))
  }

  async function withLock(id, fn, opts) {
    const l = await lock(id, opts)
    try {
      return await fn(l)
    } finally {
      await l.release()
    }
  }

  const isLock = (x) => x !== null && typeof x === 'object' && typeof x.release === 'function' && typeof x.id === 'string'
  /** Runs fn(id) holding the lock: the given one, or a fresh one released after. */
  const under = (idOrLock, fn) => (isLock(idOrLock) ? fn(idOrLock.id) : withLock(idOrLock, (l) => fn(l.id)))

  return {
    releaseAll,
    counts,
    lock,
    withLock,
    read: (idOrLock) => under(idOrLock, (id) => get(id)),
    write: async (idOrLock, data, expiresAt, release = false) => {
      const ms = expiresAt === undefined || expiresAt === null ? undefined : Math.max(0, expiresAt - Date.now())
      await under(idOrLock, (id) => setMs(id, data, ms))
      if (release && isLock(idOrLock)) await idOrLock.release()
    },
    purge: async (idOrLock) => {
      await under(idOrLock, (id) => remove(id))
      if (isLock(idOrLock)) await idOrLock.release()
    },
  }
}

module.exports = { locking, lockOptions }
