// require('rs-store/fastify'): @fastify/session's store over an rs-store store.
import { EventEmitter } from 'node:events'
import type { Store, LockOptions } from '../../index'

export interface FastifyStoreOptions {
  /** Any rs-store store: rs.redis(url), rs.memory(), rs.file({ dir }), … */
  store: Store
  /** Seconds, or a function of the session; else cookie.expires − now; else one day. ≤ 0 destroys. */
  ttl?: number | ((session: any) => number)
  /** Never touch: an unmodified session's rolling save writes nothing (it then expires from its last change). */
  disableTouch?: boolean
  /** Skip a touch when this process wrote the session less than this many seconds ago. */
  touchAfter?: number
  /** Hold the backend's lock for a session from its load until the response is sent; needs `app.register(store.plugin)`. */
  lockRequests?: boolean | LockOptions
  /** Default true: backend errors reach fastify. false: 'disconnect' / 'connect' events, requests served with an empty, unsaved session (`storeUnavailable: true`) while the backend is down. */
  failClosed?: boolean
  /** Where errors that no caller can receive go (default: console.warn). */
  onError?: (err: Error & { code?: string }) => void
}

type Callback = (err?: any) => void

/** Structurally what @fastify/session's SessionStore interface asks for. */
export declare class FastifyStore extends EventEmitter {
  constructor(options: FastifyStoreOptions)
  readonly store: Store
  /** A fastify plugin (for every route) that releases each request's lock once its response is sent (lockRequests). */
  readonly plugin: (app: any, opts: any, done: (err?: Error) => void) => void
  set(sessionId: string, session: any, callback: Callback): Promise<void>
  get(sessionId: string, callback: (err: any, session?: any) => void): Promise<Record<string, any> | null>
  destroy(sessionId: string, callback: Callback): Promise<void>
  /** Stops the adapter's own probe timer; the wrapped store stays open. */
  close(): void
}
