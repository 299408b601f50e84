// require('rs-store/fastify'): @fastify/session's store over an rs-store store.
import type { Store } from '../../index'

export interface FastifyStoreOptions {
  /** Any rs-store store: rs.redis(url), rs.memory(), rs.file({ dir }), … */
  store: Store
  /** Seconds, or a function of the session; else cookie.expires − now; else one day. ≤ 0 destroys. */
  ttl?: number | ((session: any) => number)
  /** Where errors that no caller can receive go (default: console.warn). */
  onError?: (err: Error & { code?: string }) => void
}

type Callback = (err?: any) => void

/** Structurally what @fastify/session's SessionStore interface asks for. */
export declare class FastifyStore {
  constructor(options: FastifyStoreOptions)
  readonly store: Store
  set(sessionId: string, session: any, callback: Callback): Promise<void>
  get(sessionId: string, callback: (err: any, session?: any) => void): Promise<Record<string, any> | null>
  destroy(sessionId: string, callback: Callback): Promise<void>
}
