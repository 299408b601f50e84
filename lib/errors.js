'use strict'
// The one place that maps errors: every error rs-store hands to JS carries a
// stable `code`; the class (TypeError / RangeError / Error) follows the code.
// Native errors arrive as plain Errors with `code` set by the Rust layer
// (src/error.rs); anything else from native code (e.g. a caught Rust panic)
// becomes ERR_INTERNAL.

/** Codes and the class their errors have. */
const CODES = Object.freeze({
  ERR_INVALID_ID: RangeError, // wrong type → TypeError, see invalidType()
  ERR_INVALID_TIMEOUT: RangeError,
  ERR_INVALID_OPTION: RangeError,
  ERR_NOT_SERIALIZABLE: TypeError,
  ERR_SESSION_TOO_LARGE: RangeError,
  ERR_STORE_CLOSED: Error,
  ERR_STORE_UNAVAILABLE: Error,
  ERR_STORE_AUTH: Error,
  ERR_CORRUPT_DATA: Error,
  ERR_STORE_IO: Error,
  ERR_LOCK_TIMEOUT: Error,
  ERR_INVALID_PATH: RangeError,
  ERR_NOT_FOUND: Error,
  ERR_ALREADY_EXISTS: Error,
  ERR_INVALID_ARGUMENT: TypeError,
  ERR_INTERNAL: Error,
})

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
