'use strict'
// Codec cost per session size: µs to encode and decode approuter-like
// sessions of 1, 10 and 50 KB (JSON text → zstd → AES-256-GCM and back), and
// the stored size next to approuter's own gzip + base64.
const crypto = require('node:crypto')
const zlib = require('node:zlib')
const { SessionCodec } = require('../lib/native')

/** An approuter-like session of about `size` bytes: scopes (repetitive) + tokens (random). */
function approuterSession(size) {
  const s = { cookie: { originalMaxAge: 900_000, httpOnly: true, path: '/' }, user: { name: 'ada@example.com', scopes: [] }, tokens: {} }
  for (let i = 0; JSON.stringify(s).length < size * 0.55; i++) s.user.scopes.push(`approuter-app!t${i}.Display`, `approuter-app!t${i}.Edit`)
  const rest = size - JSON.stringify(s).length - 30
  s.tokens.access = crypto.randomBytes(Math.max(0, Math.floor((rest * 3) / 4))).toString('base64url')
  return JSON.stringify(s)
}

function usPerOp(fn, minMs = 300) {
  let n = 0
  const t0 = performance.now()
  while (performance.now() - t0 < minMs) for (let k = 0; k < 20; k++, n++) fn()
  return ((performance.now() - t0) * 1000) / n
}

module.exports = async function codecBench() {
  const codec = new SessionCodec(['s'.repeat(64)], true)
  const gz = (t) => zlib.gzipSync(Buffer.from(JSON.stringify(t)), { level: zlib.constants.Z_BEST_SPEED }).toString('base64')
  console.log('\n## Codec (zstd-1 + AES-256-GCM) per session, vs approuter\'s gzip(level 1) + base64')
  console.log('| session | rs-store encode µs | decode µs | stored bytes | approuter gzip+base64 µs | stored bytes | size ÷ approuter |')
  console.log('|---|---|---|---|---|---|---|')
  const rows = []
  for (const kb of [1, 10, 50]) {
    const text = approuterSession(kb * 1024)
    const enc = codec.encode('id', text)
    if (codec.decode('id', enc) !== text) throw new Error('codec round trip failed')
    const e = usPerOp(() => codec.encode('id', text))
    const d = usPerOp(() => codec.decode('id', enc))
    const g = gz(text)
    const ge = usPerOp(() => gz(text))
    rows.push({ kb, e, d, size: enc.length, ge, gsize: g.length })
    console.log(`| ${kb} KB (${text.length} B) | ${e.toFixed(1)} | ${d.toFixed(1)} | ${enc.length} | ${ge.toFixed(1)} | ${g.length} | ${(enc.length / g.length).toFixed(2)}× |`)
  }
  return rows
}
