import type { Store } from '../index'

/** The smallest part of a prom-client `Registry` this entry needs. */
export interface Registry {
  registerMetric(metric: unknown): void
}

/**
 * Exports `store`'s counters on `registry` (prom-client's `Registry`, e.g.
 * `require('prom-client').register`): rs_store_calls_total{store, op},
 * rs_store_errors_total{store, code}, rs_store_in_flight{store} and the
 * histogram rs_store_call_duration_seconds{store, op}. `name` is the `store`
 * label (default: the store's kind, e.g. `redis`); each store on one registry
 * needs its own. Returns a function that unregisters the store.
 */
export function register(registry: Registry, store: Pick<Store, 'stats'>, options?: { name?: string }): () => void

/** The histogram's bucket upper bounds, in seconds. */
export const BUCKETS_S: readonly number[]
