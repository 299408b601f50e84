// The options ExpressStore and FastifyStore share (lib/hosts/common.js).
import type { Store, LockOptions } from '../../index'

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
