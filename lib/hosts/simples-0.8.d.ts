// require('rs-store/simples-0.8'): simpleS 0.8.8's callback store over an rs-store store.
import type { Store } from '../../index'

declare namespace simples08 {
  /** What simpleS 0.8.8 stores per session; `expire` is epoch ms (NaN without a timeout setting). */
  interface Simples08Session {
    id: string
    hash: string
    expire: number
    container: Record<string, any>
  }

  interface Simples08Store {
    get(id: string, callback: (session: Simples08Session | null) => void): void
    set(id: string, session: Simples08Session, callback: () => void): void
  }
}

declare function simples08(store: Store, options?: { onError?: (err: Error & { code?: string }) => void }): simples08.Simples08Store
export = simples08
