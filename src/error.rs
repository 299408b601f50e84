//! One error type for the whole crate, with stable `ERR_*` codes.
//!
//! Every error that reaches JavaScript carries its code in `error.code` and
//! the JS class its code names ([`Code::class`]). The list of codes and
//! their classes lives here only: `lib/errors.js` reads it from the addon
//! (`errorCodes()`), and a test checks `index.d.ts` against it.

use std::fmt;

/// One table for every code: its variant, its stable string and its JS
/// class. Wrong values are RangeErrors, wrong kinds TypeErrors (an id of the
/// wrong type is a TypeError too: the facade makes that one itself),
/// failures of the store plain Errors. A code added here is in `as_str`,
/// `class`, `ALL` and so `errorCodes()` and `parse` at once.
macro_rules! codes {
  ($($(#[$doc:meta])* $name:ident => $text:literal, $class:literal;)+) => {
    /// Stable error codes. The string form is part of the public API.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Code {
      $($(#[$doc])* $name,)+
    }

    impl Code {
      pub const fn as_str(self) -> &'static str {
        match self {
          $(Code::$name => $text,)+
        }
      }

      /// The JS class of its errors.
      pub const fn class(self) -> &'static str {
        match self {
          $(Code::$name => $class,)+
        }
      }

      pub const ALL: &'static [Code] = &[$(Code::$name,)+];
    }
  };
}

codes! {
  /// Session id is not a non-empty string of at most `MAX_ID_BYTES` bytes.
  InvalidId => "ERR_INVALID_ID", "RangeError";
  /// A timeout/ttl is negative, NaN or not a number.
  InvalidTimeout => "ERR_INVALID_TIMEOUT", "RangeError";
  /// A session that is not an object or JSON text, or cannot be serialized.
  NotSerializable => "ERR_NOT_SERIALIZABLE", "TypeError";
  /// Serialized session is larger than `maxSessionBytes`.
  SessionTooLarge => "ERR_SESSION_TOO_LARGE", "RangeError";
  /// A configuration option is wrong.
  InvalidOption => "ERR_INVALID_OPTION", "RangeError";
  /// The store was closed.
  StoreClosed => "ERR_STORE_CLOSED", "Error";
  /// The backing server or service cannot be reached (in time).
  StoreUnavailable => "ERR_STORE_UNAVAILABLE", "Error";
  /// The backing server refused our credentials.
  StoreAuth => "ERR_STORE_AUTH", "Error";
  /// The backing server is reachable but refuses writes: out of memory
  /// (Redis `maxmemory` with `noeviction`: OOM), a read-only replica
  /// (READONLY), or it cannot persist (MISCONF). Not a disconnect.
  StoreReadOnly => "ERR_STORE_READONLY", "Error";
  /// Stored data could not be decoded (corrupt, tampered, wrong key).
  Corrupt => "ERR_CORRUPT_DATA", "Error";
  /// A filesystem or other I/O operation failed.
  Io => "ERR_STORE_IO", "Error";
  /// A lock could not be acquired in time.
  LockTimeout => "ERR_LOCK_TIMEOUT", "Error";
  /// A lock held here was found gone or taken by another holder when it was
  /// renewed (the backend restarted, or the holder stalled past its ttl).
  LockLost => "ERR_LOCK_LOST", "Error";
  /// Another store (in this or another process) has the file open.
  InUse => "ERR_STORE_IN_USE", "Error";
  /// A module path or name is not a safe relative path.
  InvalidPath => "ERR_INVALID_PATH", "RangeError";
  /// The named thing does not exist (module store).
  NotFound => "ERR_NOT_FOUND", "Error";
  /// The named thing exists already (module store).
  AlreadyExists => "ERR_ALREADY_EXISTS", "Error";
  /// An argument of the wrong kind (e.g. a callback: the API returns Promises).
  InvalidArgument => "ERR_INVALID_ARGUMENT", "TypeError";
  /// A bug: a panic or an invariant broken inside rs-store.
  Internal => "ERR_INTERNAL", "Error";
}

impl Code {
  /// The code named `s` (`ERR_…`), e.g. from the session daemon's error replies.
  pub fn parse(s: &str) -> Option<Code> {
    Code::ALL.iter().copied().find(|c| c.as_str() == s)
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
