'use strict'
// React Router 7 session storage over any rs-store store:
//   const { getSession, commitSession, destroySession } = createRsSessionStorage({ store, cookie })
// It is React Router's own createSessionStorage (its cookie handling, its
// Session objects, its expiry rule: commitSession's maxAge, else its
// expires, else the cookie's) with rs-store as the data functions, and one
// change: React Router's getSession keeps the cookie's id even when no data
// has it, and its next commitSession writes under that id, so an id an
// attacker planted, or one a logout destroyed, would be adopted (session
// fixation; remix-run/remix PR #4778). Here getSession answers a session
// without an id when the store has none for the cookie's, and the commit
// makes a new one. Ids are made here: 128 random bits, written with `add`
// (SET NX), so two commits can never share one. A commit of a session
// loaded from the store uses `replace`: a session that a logout destroyed
// meanwhile is not brought back (the cookie then names no session, and the
// next request starts a new one). Remix 2 (@remix-run/server-runtime) has
// the same API and is used when react-router is not installed; there pass
// a cookie made by its createCookie.
const { randomBytes } = require('node:crypto')
const { codedError } = require('../errors')
const { wrapped, adapterOptions } = require('./common')

/** Commits that found every fresh id taken before giving up (never seen: 128 random bits). */
const ID_ATTEMPTS = 5

function framework() {
  for (const name of ['react-router', '@remix-run/server-runtime']) {
    try {
      return require(name)
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e
    }
  }
  throw codedError('ERR_INVALID_ARGUMENT', 'rs-store/react-router: install react-router (7) or @remix-run/server-runtime (Remix 2)')
}

/**
 * @param {object} opts { store, cookie } — cookie: a Cookie (createCookie) or its options ({ name, secrets, maxAge, … })
 */
function createRsSessionStorage(opts) {
  const o = adapterOptions(opts, 'createRsSessionStorage', ['store', 'cookie'])
  const store = o.store
  const timeout = wrapped(store, 'createRsSessionStorage')
  const rr = framework()
  const cookie = rr.isCookie(o.cookie) ? o.cookie : rr.createCookie((o.cookie && o.cookie.name) || '__session', o.cookie)
  /** Seconds until `expires` (a Date), undefined for none (the store's defaultTtl). */
  const seconds = (expires) => (expires ? (new Date(expires).getTime() - Date.now()) / 1000 : undefined)
  const storage = rr.createSessionStorage({
    cookie,
    async createData(data, expires) {
      const s = seconds(expires)
      for (let i = 0; i < ID_ATTEMPTS; i++) {
        const id = randomBytes(16).toString('base64url')
        if (s !== undefined && s <= 0) return id // expired at once: nothing to store
        if (await store.add(id, data, s === undefined ? undefined : timeout(s))) return id
      }
      throw codedError('ERR_ALREADY_EXISTS', `createRsSessionStorage: ${ID_ATTEMPTS} fresh random ids were all taken`)
    },
    readData: (id) => (typeof id === 'string' ? store.get(id) : null),
    async updateData(id, data, expires) {
      const s = seconds(expires)
      if (s !== undefined && s <= 0) await store.remove(id)
      else await store.replace(id, data, s === undefined ? undefined : timeout(s))
    },
    async deleteData(id) {
      if (id) await store.remove(id)
    },
  })
  return {
    ...storage,
    async getSession(cookieHeader, options) {
      const id = cookieHeader && (await cookie.parse(cookieHeader, options))
      const data = typeof id === 'string' && id !== '' ? await store.get(id) : null
      // Only an id the store has is kept: an unknown one is never adopted.
      return rr.createSession(data || {}, data ? id : '')
    },
  }
}

module.exports = { createRsSessionStorage }
