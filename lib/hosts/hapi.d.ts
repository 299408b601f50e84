// require('rs-store/hapi'): a catbox engine (hapi's server cache, @hapi/yar) over an rs-store store.
import type { Store } from '../../index'

export interface CatboxEngineOptions {
  /** Any rs-store store: rs.redis(url), rs.memory(), rs.file({ dir }), rs.daemon(port), … */
  store: Store
  /** Set by catbox (hapi: 'hapi-cache'); the first part of every key. */
  partition?: string
}

export interface CatboxKey {
  segment: string
  id: string
}

/** A catbox engine: give the class as a provider's `constructor`, with `options: { store }`. */
export declare class CatboxEngine<T = unknown> {
  constructor(options: CatboxEngineOptions)
  readonly store: Store
  start(): Promise<void>
  stop(): Promise<void>
  isReady(): boolean
  validateSegmentName(segment: string): Error | null
  /** `ttl` is the one the item was set with; catbox's client answers the remaining ms (stored + ttl − now). */
  get(key: CatboxKey): Promise<{ item: T; stored: number; ttl: number } | null>
  set(key: CatboxKey, value: T, ttl: number): Promise<void>
  drop(key: CatboxKey): Promise<void>
}
