// Compiled by __test__/types.test.js with skipLibCheck (unstorage's and
// better-auth's own .d.ts files name modules apps need not have): what
// rs-store/unstorage and rs-store/better-auth give is assignable to what
// those frameworks take.
import * as rs from 'rs-store'
import { createStorage } from 'unstorage'
import rsStoreDriver = require('rs-store/unstorage')
import type { BetterAuthOptions } from 'better-auth' with { 'resolution-mode': 'import' }
import { secondaryStorage } from 'rs-store/better-auth'

const store = rs.redis('redis://127.0.0.1:6379')
const kv = createStorage({ driver: rsStoreDriver({ store, ttl: 3600 }) })
void kv.setItem('a', { n: 1 }, { ttl: 60 })
const authSecondary: BetterAuthOptions['secondaryStorage'] = secondaryStorage(store)
void authSecondary
