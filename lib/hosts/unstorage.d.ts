// require('rs-store/unstorage'): an unstorage driver over an rs-store store.
// Structurally unstorage's Driver (not imported: unstorage's types name
// every optional driver's module).
import type { Store } from '../../index'

declare namespace rsStore {
  interface RsStoreDriverOptions {
    /** Any rs-store store: rs.redis(url), rs.memory(), rs.file({ dir }), rs.daemon(port), … (closed by dispose()) */
    store: Store
    /** Seconds an item set without a `ttl` lives (default: the store's defaultTtl). */
    ttl?: number
  }

  interface RsStoreDriver {
    name: 'rs-store'
    options: RsStoreDriverOptions
    flags: { ttl: true }
    getInstance(): Store
    hasItem(key: string, opts?: {}): Promise<boolean>
    getItem(key: string, opts?: {}): Promise<string | null>
    /** `ttl` in seconds. */
    setItem(key: string, value: string, opts?: { ttl?: number }): Promise<void>
    removeItem(key: string, opts?: {}): Promise<void>
    getKeys(base: string, opts?: {}): Promise<string[]>
    clear(base: string, opts?: {}): Promise<void>
    /** Closes the store. */
    dispose(): Promise<void>
  }
}

/** The driver factory: createStorage({ driver: rsStore({ store }) }). */
declare function rsStore(options: rsStore.RsStoreDriverOptions): rsStore.RsStoreDriver
export = rsStore
