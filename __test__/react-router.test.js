'use strict'
// rs-store as React Router 7's session storage (rs-store/react-router),
// through react-router's own cookies and sessions, on a real redis-server
// and on the file store.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createCookie, createSessionStorage } = require('react-router')
const rs = require('..')
const { createRsSessionStorage } = require('rs-store/react-router')
const { startRedis } = require('./support/redis-servers')
const { redisAndDaemon } = require('./support/daemon')

const servers = redisAndDaemon(test)
const cookie = createCookie('__session', { secrets: ['a react router cookie secret'], httpOnly: true, maxAge: 3600 })
/** The Cookie header a browser sends back for a Set-Cookie. */
const back = (setCookie) => setCookie.split(';')[0]

const stores = {
  redis: () => rs.redis(servers.redis.url),
  file: () => rs.file({ dir: fs.mkdtempSync(path.join(os.tmpdir(), 'rs-store-rr-')) }),
}

for (const kind of ['redis', 'file']) {
  test(`react-router (${kind}): commit and read back, a counter, flash, destroy`, async () => {
    const store = stores[kind]()
    try {
      const { getSession, commitSession, destroySession } = createRsSessionStorage({ store, cookie })
      let header = null
      for (let i = 1; i <= 3; i++) {
        const session = await getSession(header)
        session.set('visits', (session.get('visits') ?? 0) + 1)
        if (i === 1) session.flash('notice', 'welcome')
        if (i === 2) assert.equal(session.get('notice'), 'welcome', 'a flash is there on the next request')
        header = back(await commitSession(session))
      }
      const session = await getSession(header)
      assert.equal(session.get('visits'), 3)
      assert.equal(session.get('notice'), undefined, 'and read once (React Router’s own Session)')
      const id = session.id
      assert.match(id, /^[A-Za-z0-9_-]{22}$/, '128 random bits, made by rs-store')
      assert.equal((await store.get(id)).visits, 3)
      // maxAge 3600 s: the store keeps the session as long as the cookie
      const ttl = await store.ttl(id)
      assert.ok(ttl > 3590 && ttl <= 3600, `ttl ${ttl}`)
      const gone = await destroySession(session)
      assert.match(gone, /Expires=Thu, 01 Jan 1970/)
      assert.equal(await store.get(id), null)
      // the old cookie finds nothing, and the next commit makes a new id
      const after = await getSession(header)
      assert.equal(after.id, '')
      assert.equal(after.get('visits'), undefined)
      after.set('visits', 1)
      const fresh = await getSession(back(await commitSession(after)))
      assert.notEqual(fresh.id, id, 'a destroyed id is not used again')
      assert.equal(fresh.get('visits'), 1)
    } finally {
      await store.close()
    }
  })
}

test('react-router: a planted unknown id is never adopted (React Router’s own createSessionStorage adopts it)', async () => {
  const store = stores.redis()
  try {
    const planted = back(await cookie.serialize('attacker-chosen-id'))
    // React Router's storage over the same store: the fixation this adapter prevents
    const theirs = createSessionStorage({
      cookie,
      createData: async (data) => (await store.set('theirs', data), 'theirs'),
      readData: (id) => store.get(id),
      updateData: (id, data) => store.set(id, data),
      deleteData: (id) => store.remove(id),
    })
    const s1 = await theirs.getSession(planted)
    s1.set('user', 'victim')
    assert.equal(await cookie.parse(await theirs.commitSession(s1)), 'attacker-chosen-id', 'adopted by React Router’s own storage')
    assert.equal((await store.get('attacker-chosen-id')).user, 'victim')
    await store.remove('attacker-chosen-id')
    // ours
    const { getSession, commitSession } = createRsSessionStorage({ store, cookie })
    const s2 = await getSession(planted)
    assert.equal(s2.id, '', 'the unknown id is dropped')
    s2.set('user', 'victim')
    const id = await cookie.parse(await commitSession(s2))
    assert.notEqual(id, 'attacker-chosen-id')
    assert.equal(await store.exists('attacker-chosen-id'), false)
    assert.equal((await store.get(id)).user, 'victim')
  } finally {
    await store.close()
  }
})

test('react-router: a commit of a session destroyed meanwhile (a logout in another tab) does not bring it back', async () => {
  const store = stores.redis()
  try {
    const { getSession, commitSession, destroySession } = createRsSessionStorage({ store, cookie })
    const first = await getSession(null)
    first.set('user', 'ada')
    const header = back(await commitSession(first))
    const slow = await getSession(header) // a request still running
    await destroySession(await getSession(header)) // the logout
    slow.set('late', true)
    await commitSession(slow)
    assert.equal(await store.exists(slow.id), false, 'the logout stands')
    assert.equal((await getSession(header)).id, '')
  } finally {
    await store.close()
  }
})

test('react-router: commitSession maxAge / expires in seconds and Dates; without either the cookie’s, without both the store’s defaultTtl', async () => {
  const store = rs.memory({ timeoutUnit: 's', defaultTtl: 120 })
  try {
    const noAge = createCookie('plain', { secrets: ['s'] })
    const { getSession, commitSession } = createRsSessionStorage({ store, cookie: noAge })
    const s = await getSession(null)
    s.set('a', 1)
    const id = await noAge.parse(await commitSession(s, { maxAge: 60 }))
    assert.equal(await store.ttl(id), 60)
    const again = await getSession(back(await commitSession(await getSession(`plain=${(await noAge.serialize(id)).split(';')[0].split('=')[1]}`), { expires: new Date(Date.now() + 30_000) })))
    assert.equal(again.id, id)
    assert.equal(await store.ttl(id), 30)
    const t = await getSession(null)
    t.set('b', 1)
    assert.equal(await store.ttl(await noAge.parse(await commitSession(t))), 120, "a browser-session cookie: the store's defaultTtl")
    // options given as cookie options (React Router makes the cookie)
    const named = createRsSessionStorage({ store, cookie: { name: 'rr', secrets: ['x'], maxAge: 10 } })
    const u = await named.getSession(null)
    u.set('c', 1)
    const set = await named.commitSession(u)
    assert.match(set, /^rr=/)
    assert.equal(await store.ttl((await named.getSession(back(set))).id), 10)
  } finally {
    await store.close()
  }
})

test('react-router: a Redis that is down rejects with a coded error within the timeout', async () => {
  const r = await startRedis()
  const store = rs.redis({ url: r.url, commandTimeoutMs: 300, connectTimeoutMs: 300 })
  try {
    const { getSession, commitSession } = createRsSessionStorage({ store, cookie })
    const s = await getSession(null)
    s.set('a', 1)
    const header = back(await commitSession(s))
    await r.stop()
    const t = Date.now()
    await assert.rejects(getSession(header), { code: 'ERR_STORE_UNAVAILABLE' })
    await assert.rejects(commitSession(s), { code: 'ERR_STORE_UNAVAILABLE' })
    assert.ok(Date.now() - t < 2000, `${Date.now() - t} ms`)
    assert.throws(() => createRsSessionStorage({ store, cookie, maxAge: 1 }), { code: 'ERR_INVALID_OPTION' })
  } finally {
    await store.close()
  }
})
