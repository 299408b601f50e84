// require('rs-store/better-auth'): better-auth's secondaryStorage over an rs-store store.
import type { LockingStore } from '../../index'

/** Structurally better-auth's SecondaryStorage (1.7). */
export interface RsSecondaryStorage {
  get(key: string): Promise<string | null>
  /** `ttl` in seconds; without it the store's defaultTtl applies. */
  set(key: string, value: string, ttl?: number): Promise<void>
  delete(key: string): Promise<void>
  /** Atomic (under the store's lock on `key`). */
  getAndDelete(key: string): Promise<string | null>
  /** Atomic; a new counter lives `ttl` seconds, later increments never extend it. */
  increment(key: string, ttl: number): Promise<number>
}

/** Needs a store with locks: memory, file, redis, daemon. */
export declare function secondaryStorage(store: LockingStore): RsSecondaryStorage
