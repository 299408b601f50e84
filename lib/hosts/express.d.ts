// require('rs-store/express'): express-session's Store over an rs-store store.
import { Store as SessionStore, SessionData } from 'express-session'
import type { Store } from '../../index'
import type { SessionAdapterOptions, SessionAdapterUsers } from './common'

export interface ExpressStoreOptions extends SessionAdapterOptions<SessionData> {}

export interface ExpressStore extends SessionAdapterUsers {}

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
  /**
   * A new id for the request's session, its data and remaining ttl kept (after a login); the response sets the
   * new cookie. false when there was no stored session to move (nothing changed).
   */
  rotateRequest(req: import('express').Request, callback?: (err: any, moved?: boolean) => void): Promise<boolean>
  /** Stops the adapter's own timer; the wrapped store stays open. */
  close(): void
}
