'use strict'
// The one place that maps errors: every error rs-store hands to JS carries a
// stable `code`; the class (TypeError / RangeError / Error) follows the code.
// Native errors arrive as plain Errors with `code` set by the Rust layer
// (src/error.rs, which also lists the codes); anything else from native
// code (e.g. a caught Rust panic) becomes ERR_INTERNAL.

/** Codes and the class their errors have: the list is src/error.rs's. */
const CLASSES = { Error, TypeError, RangeError }
const CODES = Object.freeze(Object.fromEntries(Object.entries(require('./native').errorCodes()).map(([code, cls]) => [code, CLASSES[cls]])))

function codedError(code, message, cause, Cls = CODES[code] || Error) {
  const err = new Cls(message, cause === undefined ? undefined : { cause })
  err.code = code
  return err
}

/** A TypeError for an argument or option of the wrong type. */
function invalidType(code, message) {
  return codedError(code, message, undefined, TypeError)
}

/** Normalizes anything thrown by the native layer into a coded error. */
function fromNative(e) {
  if (e && typeof e.code === 'string' && Object.hasOwn(CODES, e.code)) {
    // Native errors are plain Errors: give them their class. Errors made in
    // JS (TypeError/RangeError from codedError) already have theirs.
    const Cls = CODES[e.code]
    return Object.getPrototypeOf(e) === Error.prototype && Cls !== Error ? codedError(e.code, e.message, undefined, Cls) : e
  }
  return codedError('ERR_INTERNAL', `rs-store internal error: ${e && e.message}`, e)
}

/**
 * An async native call with its outcome applied: native async functions
 * resolve with an Error that carries its code (`Settled` in
 * src/binding/reply.rs), which is thrown here as a coded error.
 */
function settled(promise) {
  return promise.then(
    (v) => {
      if (v instanceof Error) throw fromNative(v)
      return v
    },
    (e) => {
      throw fromNative(e)
    },
  )
}

/**
 * Where problems that answer no call go (a corrupt file met by a sweep, a
 * lock lost): the store's `onError`, else a warning with the code.
 */
function reporter(onError) {
  if (onError !== undefined && typeof onError !== 'function') throw invalidType('ERR_INVALID_OPTION', 'option onError must be a function')
  return (e) => {
    const err = fromNative(e)
    if (onError) onError(err)
    else console.warn(`rs-store: ${err.code}: ${err.message}`)
  }
}

module.exports = { CODES, codedError, invalidType, fromNative, settled, reporter }
