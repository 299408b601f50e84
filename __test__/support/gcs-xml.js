'use strict'
// A loopback stand-in for Google Cloud Storage's XML API, the API that
// object_store's GCS client speaks (GET/HEAD/PUT/DELETE /<bucket>/<object>,
// GET /<bucket>?list-type=2, x-goog-generation and
// x-goog-if-generation-match). It checks every request's shape: the bearer
// token must be an RS256 JWT signed by the service account's private key,
// and every request is recorded for the test to inspect.
//
// Why not an emulator: none that speaks this API installs from the
// registries this project reaches. gcp-storage-emulator (PyPI) serves the
// JSON API and only GET/PUT on XML paths (HEAD, DELETE and XML listing answer
// 501/404, and it refuses percent-encoded bucket names); fake-gcs-server is
// a Go binary / Docker image.
const http = require('node:http')
const crypto = require('node:crypto')

const xml = (s) => String(s).replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`)
const b64url = (s) => Buffer.from(s, 'base64url')

/** A service account key (the JSON a user downloads from Google Cloud). */
function serviceAccount(email = 'rs-store-test@project.iam.gserviceaccount.com') {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
  const key = {
    type: 'service_account',
    project_id: 'project',
    private_key_id: crypto.randomBytes(8).toString('hex'),
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: email,
  }
  return { key, publicKey }
}

/** Starts the stand-in; `account` is what `serviceAccount()` returned. */
async function startGcs({ account, buckets = ['synchro-apps'], pageSize = 3 }) {
  const store = new Map(buckets.map((b) => [b, new Map()])) // bucket → key → { body, generation, mtime }
  const requests = []
  let generation = 1_000
  const verify = (auth) => {
    const m = /^Bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/.exec(auth || '')
    if (!m) return 'no bearer JWT'
    const header = JSON.parse(b64url(m[1]))
    const claims = JSON.parse(b64url(m[2]))
    if (header.alg !== 'RS256' || header.kid !== account.key.private_key_id) return `bad JWT header ${JSON.stringify(header)}`
    if (!crypto.verify('RSA-SHA256', Buffer.from(`${m[1]}.${m[2]}`), account.publicKey, b64url(m[3]))) return 'bad JWT signature'
    if (claims.iss !== account.key.client_email || !/cloud-platform/.test(claims.scope)) return `bad JWT claims ${JSON.stringify(claims)}`
    if (claims.exp * 1000 < Date.now()) return 'expired JWT'
    return null
  }
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url, 'http://x')
      const [bucketEnc, ...rest] = url.pathname.slice(1).split('/')
      const bucket = decodeURIComponent(bucketEnc)
      const key = rest.map(decodeURIComponent).join('/')
      const denied = verify(req.headers.authorization)
      requests.push({ method: req.method, bucket, key, query: Object.fromEntries(url.searchParams), headers: req.headers, denied })
      const reply = (status, headers = {}, body = '') => {
        res.writeHead(status, headers)
        res.end(body)
      }
      if (denied) return reply(401, {}, `<Error><Code>AuthenticationRequired</Code><Details>${xml(denied)}</Details></Error>`)
      const objects = store.get(bucket)
      if (!objects) return reply(404, {}, '<Error><Code>NoSuchBucket</Code></Error>')
      const meta = (o) => ({
        'content-length': o.body.length,
        'last-modified': o.mtime.toUTCString(),
        etag: `"${o.generation}"`,
        'x-goog-generation': String(o.generation),
      })
      if (!key && req.method === 'GET' && url.searchParams.get('list-type') === '2') {
        const prefix = url.searchParams.get('prefix') || ''
        const delimiter = url.searchParams.get('delimiter')
        const after = url.searchParams.get('continuation-token') || url.searchParams.get('start-after') || ''
        const names = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > after).sort()
        const contents = []
        const prefixes = new Set()
        let last = null
        for (const k of names) {
          if (contents.length + prefixes.size >= pageSize) break
          const cut = delimiter ? k.indexOf(delimiter, prefix.length) : -1
          if (cut >= 0) prefixes.add(k.slice(0, cut + 1))
          else contents.push(k)
          last = cut >= 0 ? k.slice(0, cut + 1) + '\uffff' : k
        }
        const more = last !== null && names.some((k) => k > last)
        const body = '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://doc.s3.amazonaws.com/2006-03-01">' +
          `<Name>${xml(bucket)}</Name><Prefix>${xml(prefix)}</Prefix>` +
          contents.map((k) => {
            const o = objects.get(k)
            return `<Contents><Key>${xml(k)}</Key><Size>${o.body.length}</Size><LastModified>${o.mtime.toISOString()}</LastModified><ETag>"${o.generation}"</ETag></Contents>`
          }).join('') +
          [...prefixes].map((p) => `<CommonPrefixes><Prefix>${xml(p)}</Prefix></CommonPrefixes>`).join('') +
          (more ? `<NextContinuationToken>${xml(last)}</NextContinuationToken>` : '') +
          '</ListBucketResult>'
        return reply(200, { 'content-type': 'application/xml' }, body)
      }
      const o = objects.get(key)
      switch (req.method) {
        case 'GET':
        case 'HEAD':
          if (!o) return reply(404, {}, '<Error><Code>NoSuchKey</Code></Error>')
          return reply(200, meta(o), req.method === 'GET' ? o.body : undefined)
        case 'PUT': {
          const match = req.headers['x-goog-if-generation-match']
          if (match !== undefined && String(o ? o.generation : 0) !== match) return reply(412, {}, '<Error><Code>PreconditionFailed</Code></Error>')
          const n = { body: Buffer.concat(chunks), generation: ++generation, mtime: new Date() }
          objects.set(key, n)
          return reply(200, { etag: `"${n.generation}"`, 'x-goog-generation': String(n.generation) })
        }
        case 'DELETE':
          if (!o) return reply(404, {}, '<Error><Code>NoSuchKey</Code></Error>')
          objects.delete(key)
          return reply(204)
        default:
          return reply(405)
      }
    })
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`,
    objects: (bucket) => store.get(bucket),
    requests,
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(r))),
  }
}

module.exports = { startGcs, serviceAccount }
