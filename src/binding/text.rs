//! What crosses from JS into every call: ids and session text read as UTF-8
//! in one pass ([`Utf8Text`]), a call's parts ([`Call`]), and the limits
//! checked before anything is queued.

use napi_derive::napi;

use crate::error::{Code, Result, StoreError};

/// Longest accepted session id, in UTF-8 bytes (the JS facade answers
/// reads of longer ids "missing" itself).
#[napi]
pub const MAX_ID_BYTES: u32 = crate::backend::MAX_ID_BYTES as u32;
/// Default for `maxSessionBytes`: 1 MiB of serialized session.
pub const DEFAULT_MAX_SESSION_BYTES: u32 = 1024 * 1024;

/// A JS string as UTF-8 (a session's JSON text, an id), converted in one pass over the JS
/// string. napi-rs's `String` asks V8 for the UTF-8 length first (a whole
/// pass) and then copies into a zeroed buffer (a second pass); the UTF-16
/// length is known at once and bounds the UTF-8 size (at most 3 bytes per
/// UTF-16 unit; V8 replaces lone surrogates with U+FFFD, also 3 bytes).
pub struct Utf8Text(Vec<u8>);

impl Utf8Text {
  pub fn as_str(&self) -> &str {
    // SAFETY: V8 wrote it as UTF-8, replacing invalid sequences.
    unsafe { std::str::from_utf8_unchecked(&self.0) }
  }
  pub fn into_bytes(self) -> Vec<u8> {
    self.0
  }
  pub fn into_string(self) -> String {
    // SAFETY: as in `as_str`.
    unsafe { String::from_utf8_unchecked(self.0) }
  }
}

super::reply::ts_type!(Utf8Text, "string", String);

impl napi::bindgen_prelude::FromNapiValue for Utf8Text {
  unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> napi::Result<Self> {
    let fail = |what: &str| napi::Error::new(napi::Status::StringExpected, format!("{what}: a string was expected"));
    let mut units = 0usize;
    // SAFETY: a null buffer asks for the length only.
    let status = unsafe { napi::sys::napi_get_value_string_utf16(env, value, std::ptr::null_mut(), 0, &mut units) };
    if status != napi::sys::Status::napi_ok {
      return Err(fail("an argument"));
    }
    let cap = units.saturating_mul(3).saturating_add(1);
    let mut buf: Vec<u8> = Vec::with_capacity(cap);
    let mut written = 0usize;
    // SAFETY: `buf` has room for `cap` bytes; V8 writes at most cap - 1 and a NUL.
    let status = unsafe { napi::sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), cap, &mut written) };
    if status != napi::sys::Status::napi_ok {
      return Err(fail("an argument"));
    }
    // SAFETY: V8 initialized `written` bytes (the NUL after them is not kept).
    unsafe { buf.set_len(written) };
    Ok(Utf8Text(buf))
  }
}

/// A call as JS makes it: the op's name and its arguments (see
/// [`Op::from_call`]), strings read in one pass each (see [`Utf8Text`]).
pub(crate) type Call = (Utf8Text, Option<Utf8Text>, Option<Utf8Text>, Option<f64>);

/// Declares the `#[napi]` function of a store kind that takes one call as
/// data (`sync_call`, `batch_q`, `wire_q`): the store first, then `op`, which
/// names it, `id`, the session id (`page`: the cursor), `text`, the
/// session's JSON (locks: the token), and `ms`, a ttl in ms (`page`: how
/// many). The body sees them as one [`Call`], named by the caller. Its docs
/// are `#[doc = "…"]` lines: napi-rs would copy `///` lines that passed
/// through a macro into the types as raw strings (`r" …`).
macro_rules! call_fn {
  ($(#[$($attr:tt)*])* pub fn $name:ident($store:ident: $kind:ty, $call:ident) -> $ret:ty $body:block) => {
    $(#[$($attr)*])*
    pub fn $name(
      $store: &napi::bindgen_prelude::External<$kind>,
      #[napi(ts_arg_type = "string")] op: $crate::binding::Utf8Text,
      #[napi(ts_arg_type = "string")] id: Option<$crate::binding::Utf8Text>,
      #[napi(ts_arg_type = "string")] text: Option<$crate::binding::Utf8Text>,
      ms: Option<f64>,
    ) -> napi::Result<$ret, $crate::error::Code> {
      let $call: $crate::binding::text::Call = (op, id, text, ms);
      $body
    }
  };
}
pub(crate) use call_fn;

/// Per-session limits checked on the JS thread before anything is queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
  max_session_bytes: usize,
}

impl SessionLimits {
  pub(crate) fn new(max: Option<u32>) -> Result<Self> {
    match max {
      Some(0) => Err(StoreError::new(Code::InvalidOption, "maxSessionBytes must be at least 1")),
      v => Ok(SessionLimits { max_session_bytes: v.unwrap_or(DEFAULT_MAX_SESSION_BYTES) as usize }),
    }
  }

  pub(crate) fn check(&self, value: &[u8]) -> Result<()> {
    if value.len() > self.max_session_bytes {
      return Err(StoreError::new(
        Code::SessionTooLarge,
        format!("session is {} bytes; maxSessionBytes is {}", value.len(), self.max_session_bytes),
      ));
    }
    Ok(())
  }
}
