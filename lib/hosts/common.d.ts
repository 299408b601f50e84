// The options ExpressStore and FastifyStore share (lib/hosts/common.js).
import type { Store, LockOptions, UserSession } from '../../index'

export interface SessionAdapterOptions<Session> {
  /** Any rs-store store: rs.redis(url), rs.memory(), rs.file({ dir }), rs.daemon(port), rs.objectStore(cfg), … */
  store: Store
  /** Seconds, or a function of the session; else cookie.expires − now; else one day. ≤ 0 destroys. */
  ttl?: number | ((session: Session) => number)
  /** Never touch (no write for read-only requests; sessions then expire from their last save). */
  disableTouch?: boolean
  /** Skip a touch when this process wrote the session less than this many seconds ago. */
  touchAfter?: number
  /** Hold the backend's lock for a session from its load until the response is sent. Needs a store with locks (and on fastify `app.register(store.plugin)`). */
  lockRequests?: boolean | LockOptions
  /**
   * Default true: backend errors reach the app. false: 'disconnect' / 'connect' events; while the backend is down
   * express serves requests without a session, fastify with an empty, unsaved one (`storeUnavailable: true`).
   */
  failClosed?: boolean
  /** Where errors that no caller can receive go (default: console.warn). */
  onError?: (err: Error & { code?: string }) => void
}

/** The per-user calls ExpressStore and FastifyStore pass through to their store (made with `userOf`). */
export interface SessionAdapterUsers {
  /** A user's live sessions, least recently written first. */
  sessionsOf(user: string, callback?: (err: any, sessions?: UserSession[]) => void): Promise<UserSession[]>
  /** Removes every session of `user` but the ids in `except` ("log out other devices"); resolves how many. */
  revokeUser(user: string, options?: { except?: string[] }, callback?: (err: any, removed?: number) => void): Promise<number>
  /** Moves a live session to a free id (data, ttl, user, absolute end) at once; false when `oldId` has none or `newId` is taken. */
  rotate(oldId: string, newId: string, callback?: (err: any, moved?: boolean) => void): Promise<boolean>
}
