// require('rs-store/fastify'): @fastify/session's store over an rs-store store.
import { EventEmitter } from 'node:events'
import type { Store } from '../../index'
import type { SessionAdapterOptions, SessionAdapterUsers } from './common'

export interface FastifyStoreOptions extends SessionAdapterOptions<any> {}

type Callback = (err?: any) => void

export interface FastifyStore extends SessionAdapterUsers {}

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
