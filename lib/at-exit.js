'use strict'
// Stores that hold acknowledged writes in memory for a while (sessions.json
// gathers a burst of changes into one write) write them out when the process
// exits. `process.exit()` (what the usual SIGTERM handler calls) runs the
// 'exit' listeners and then ends the process at once: no promise settles,
// no finalizer runs, and napi's environment cleanup hooks do not run on the
// main thread either, so only a synchronous flush from an 'exit' listener
// gets the writes to disk.
//
// One listener for all open stores (none while none is open), holding them
// weakly: a store dropped without close() is written out by its own
// finalizer, and must stay collectable.

const open = new Set()
const forgotten = new FinalizationRegistry((entry) => forget(entry))

function flushAll() {
  for (const entry of [...open]) {
    const handle = entry.ref.deref()
    if (!handle) continue
    try {
      handle.flushNow()
    } catch (e) {
      // Nobody is left to answer: say it where the store says its problems.
      if (e && e.code !== 'ERR_STORE_CLOSED') entry.report(e)
    }
  }
}

function forget(entry) {
  if (!open.delete(entry)) return
  forgotten.unregister(entry)
  if (open.size === 0) process.removeListener('exit', flushAll)
}

/**
 * Flushes `handle` (a native sync store with `flushNow()`) at process exit
 * while it is open; failures go to `report`. Answers the function that
 * unregisters it (call it once the store is closed).
 */
function flushAtExit(handle, report) {
  const entry = { ref: new WeakRef(handle), report }
  if (open.size === 0) process.on('exit', flushAll)
  open.add(entry)
  forgotten.register(handle, entry, entry)
  return () => forget(entry)
}

module.exports = { flushAtExit }
