// require('rs-store/express'): express-session's Store over an rs-store store.
import { Store as SessionStore, SessionData } from 'express-session'
import type { Store, LockOptions } from '../../index'

export interface ExpressStoreOptions {
  /** Any rs-store store: rs.redis(url), rs.memory(), rs.file({ dir }), rs.daemon(port), rs.objectStore(cfg), … */
  store: Store
  /** Seconds, or a function of the session; else cookie.expires − now; else one day. ≤ 0 destroys. */
  ttl?: number | ((session: SessionData) => number)
  /** Never touch (no write for read-only requests; sessions then expire from their last save). */
  disableTouch?: boolean
  /** Skip a touch when this process wrote the session less than this many seconds ago. */
  touchAfter?: number
  /** Hold the backend's lock for a session from its load until the response is sent. Needs a store with locks. */
  lockRequests?: boolean | LockOptions
  /** Default true: backend errors reach the app. false: 'disconnect' / 'connect' events, requests served without a session while the backend is down. */
  failClosed?: boolean
  /** Where errors that no caller can receive go (default: console.warn). */
  onError?: (err: Error & { code?: string }) => void
}

export declare class ExpressStore extends SessionStore {
  constructor(options: ExpressStoreOptions)
  readonly store: Store
  get(sid: string, callback?: (err: any, session?: SessionData | null) => void): Promise<SessionData | null>
  set(sid: string, session: SessionData, callback?: (err?: any) => void): Promise<void>
  destroy(sid: string, callback?: (err?: any) => void): Promise<void>
  touch(sid: string, session: SessionData, callback?: (err?: any) => void): Promise<void>
  all(callback?: (err: any, sessions?: Array<SessionData & { id: string }>) => void): Promise<Array<SessionData & { id: string }>>
  length(callback?: (err: any, length?: number) => void): Promise<number>
  clear(callback?: (err?: any) => void): Promise<void>
  ids(callback?: (err: any, ids?: string[]) => void): Promise<string[]>
  /** Stops the adapter's own timer; the wrapped store stays open. */
  close(): void
}
