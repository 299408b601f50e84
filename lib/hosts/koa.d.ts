// require('rs-store/koa'): koa-session's external store over an rs-store store.
import type { Store } from '../../index'

export interface KoaStoreOptions {
  /** Any rs-store store: rs.redis(url), rs.memory(), rs.file({ dir }), rs.daemon(port), … */
  store: Store
}

/** What koa-session's `store` option asks for. */
export declare class KoaStore {
  constructor(options: KoaStoreOptions)
  readonly store: Store
  get(key: string, maxAge: number | 'session' | undefined, data: { rolling?: boolean; ctx?: any }): Promise<Record<string, any> | null>
  set(key: string, sess: Record<string, any>, maxAge: number | 'session' | undefined, data: { rolling?: boolean; changed?: boolean; ctx?: any }): Promise<void>
  destroy(key: string, data?: { ctx?: any }): Promise<void>
}
