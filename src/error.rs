//! One error type for the whole crate, with stable `ERR_*` codes.
//!
//! Every error that reaches JavaScript carries its code in `error.code` and
//! the JS class its code names ([`Code::class`]). The list of codes and
//! their classes lives here only: `lib/errors.js` reads it from the addon
//! (`errorCodes()`), and a test checks `index.d.ts` against it.

use std::fmt;

/// Stable error codes. The string form is part of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
  /// Session id is not a non-empty string of at most `MAX_ID_BYTES` bytes.
  InvalidId,
  /// A timeout/ttl is negative, NaN or not a number.
  InvalidTimeout,
  /// A session that is not an object or JSON text, or cannot be serialized.
  NotSerializable,
  /// Serialized session is larger than `maxSessionBytes`.
  SessionTooLarge,
  /// A configuration option is wrong.
  InvalidOption,
  /// The store was closed.
  StoreClosed,
  /// The backing server or service cannot be reached (in time).
  StoreUnavailable,
  /// The backing server refused our credentials.
  StoreAuth,
  /// The backing server is reachable but refuses writes: out of memory
  /// (Redis `maxmemory` with `noeviction`: OOM), a read-only replica
  /// (READONLY), or it cannot persist (MISCONF). Not a disconnect.
  StoreReadOnly,
  /// Stored data could not be decoded (corrupt, tampered, wrong key).
  Corrupt,
  /// A filesystem or other I/O operation failed.
  Io,
  /// A lock could not be acquired in time.
  LockTimeout,
  /// A lock held here was found gone or taken by another holder when it was
  /// renewed (the backend restarted, or the holder stalled past its ttl).
  LockLost,
  /// Another store (in this or another process) has the file open.
  InUse,
  /// A module path or name is not a safe relative path.
  InvalidPath,
  /// The named thing does not exist (module store).
  NotFound,
  /// The named thing exists already (module store).
  AlreadyExists,
  /// An argument of the wrong kind (e.g. a callback: the API returns Promises).
  InvalidArgument,
  /// A bug: a panic or an invariant broken inside rs-store.
  Internal,
}

impl Code {
  pub const fn as_str(self) -> &'static str {
    match self {
      Code::InvalidId => "ERR_INVALID_ID",
      Code::InvalidTimeout => "ERR_INVALID_TIMEOUT",
      Code::NotSerializable => "ERR_NOT_SERIALIZABLE",
      Code::SessionTooLarge => "ERR_SESSION_TOO_LARGE",
      Code::InvalidOption => "ERR_INVALID_OPTION",
      Code::StoreClosed => "ERR_STORE_CLOSED",
      Code::StoreUnavailable => "ERR_STORE_UNAVAILABLE",
      Code::StoreAuth => "ERR_STORE_AUTH",
      Code::StoreReadOnly => "ERR_STORE_READONLY",
      Code::Corrupt => "ERR_CORRUPT_DATA",
      Code::Io => "ERR_STORE_IO",
      Code::LockTimeout => "ERR_LOCK_TIMEOUT",
      Code::LockLost => "ERR_LOCK_LOST",
      Code::InUse => "ERR_STORE_IN_USE",
      Code::InvalidPath => "ERR_INVALID_PATH",
      Code::NotFound => "ERR_NOT_FOUND",
      Code::AlreadyExists => "ERR_ALREADY_EXISTS",
      Code::InvalidArgument => "ERR_INVALID_ARGUMENT",
      Code::Internal => "ERR_INTERNAL",
    }
  }
}

impl Code {
  /// The JS class of its errors. Wrong values are RangeErrors, wrong kinds
  /// TypeErrors (an id of the wrong type is a TypeError too: the facade
  /// makes that one itself), failures of the store plain Errors.
  pub const fn class(self) -> &'static str {
    match self {
      Code::InvalidId | Code::InvalidTimeout | Code::InvalidOption | Code::SessionTooLarge | Code::InvalidPath => "RangeError",
      Code::NotSerializable | Code::InvalidArgument => "TypeError",
      Code::StoreClosed
      | Code::StoreUnavailable
      | Code::StoreAuth
      | Code::StoreReadOnly
      | Code::Corrupt
      | Code::Io
      | Code::LockTimeout
      | Code::LockLost
      | Code::InUse
      | Code::NotFound
      | Code::AlreadyExists
      | Code::Internal => "Error",
    }
  }

  pub const ALL: [Code; 19] = [
    Code::InvalidId,
    Code::InvalidTimeout,
    Code::NotSerializable,
    Code::SessionTooLarge,
    Code::InvalidOption,
    Code::StoreClosed,
    Code::StoreUnavailable,
    Code::StoreAuth,
    Code::StoreReadOnly,
    Code::Corrupt,
    Code::Io,
    Code::LockTimeout,
    Code::LockLost,
    Code::InUse,
    Code::InvalidPath,
    Code::NotFound,
    Code::AlreadyExists,
    Code::InvalidArgument,
    Code::Internal,
  ];

  /// The code named `s` (`ERR_…`), e.g. from the session daemon's error replies.
  pub fn parse(s: &str) -> Option<Code> {
    Code::ALL.into_iter().find(|c| c.as_str() == s)
  }
}

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    self.as_str()
  }
}

/// The crate's error: a stable code plus a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
  pub code: Code,
  pub message: String,
}

impl StoreError {
  pub fn new(code: Code, message: impl Into<String>) -> Self {
    StoreError { code, message: message.into() }
  }

  /// A failed file system call: what was tried, on which path, and why.
  pub fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Self {
    StoreError::new(Code::Io, format!("{what} {}: {e}", path.display()))
  }

  /// Every call on a closed store fails with this.
  pub fn closed() -> Self {
    StoreError::new(Code::StoreClosed, "the store is closed")
  }
}

impl fmt::Display for StoreError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}: {}", self.code.as_str(), self.message)
  }
}

impl std::error::Error for StoreError {}

impl From<std::io::Error> for StoreError {
  fn from(e: std::io::Error) -> Self {
    StoreError::new(Code::Io, e.to_string())
  }
}

impl From<StoreError> for napi::Error<Code> {
  fn from(e: StoreError) -> Self {
    napi::Error::new(e.code, e.message)
  }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn codes_are_stable_strings() {
    assert_eq!(Code::InvalidId.as_str(), "ERR_INVALID_ID");
    assert_eq!(Code::StoreUnavailable.as_str(), "ERR_STORE_UNAVAILABLE");
    let e = StoreError::new(Code::SessionTooLarge, "too big");
    assert_eq!(e.to_string(), "ERR_SESSION_TOO_LARGE: too big");
    let io: StoreError = std::io::Error::other("disk").into();
    assert_eq!(io.code, Code::Io);
  }
}
