// require('rs-store/react-router'): React Router 7's session storage over an rs-store store.
import type { Cookie, CookieOptions, SessionData, SessionStorage } from 'react-router'
import type { Store } from '../../index'

export interface RsSessionStorageOptions {
  /** Any rs-store store: rs.redis(url), rs.memory(), rs.file({ dir }), rs.daemon(port), … */
  store: Store
  /** A cookie from createCookie, or the options to make one (`name` defaults to '__session'). */
  cookie?: Cookie | (CookieOptions & { name?: string })
}

/** Like React Router's createSessionStorage, but the ids are rs-store's and an unknown cookie id is never adopted. */
export declare function createRsSessionStorage<Data = SessionData, FlashData = Data>(options: RsSessionStorageOptions): SessionStorage<Data, FlashData>
