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
  // napi's async methods carry the code as a message prefix (src/error.rs).
  const m = e && typeof e.message === 'string' && !Object.hasOwn(CODES, e.code) && /^(ERR_[A-Z_]+): ([\s\S]*)$/.exec(e.message)
  if (m && Object.hasOwn(CODES, m[1])) return codedError(m[1], m[2])
  if (e && typeof e.code === 'string' && Object.hasOwn(CODES, e.code)) {
    // Native errors are plain Errors: give them their class. Errors made in
    // JS (TypeError/RangeError from codedError) already have theirs.
    const Cls = CODES[e.code]
    return Object.getPrototypeOf(e) === Error.prototype && Cls !== Error ? codedError(e.code, e.message, undefined, Cls) : e
  }
  return codedError('ERR_INTERNAL', `rs-store internal error: ${e && e.message}`, e)
}

module.exports = { CODES, codedError, invalidType, fromNative }
