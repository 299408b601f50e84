//! What the addon tells about itself (its error codes, its version) and the
//! one check of session text given as a string.

use napi_derive::napi;

use super::text::Utf8Text;
use crate::error::Code;

/// Every error code and the JS class of its errors (`lib/errors.js`).
#[napi(catch_unwind, ts_return_type = "Record<string, 'Error' | 'TypeError' | 'RangeError'>")]
pub fn error_codes() -> napi::Result<std::collections::HashMap<String, String>> {
  Ok(Code::ALL.iter().map(|c| (c.as_str().to_string(), c.class().to_string())).collect())
}

/// The addon's own version (Cargo.toml), to tell which binary runs.
#[napi]
pub fn addon_version() -> String {
  format!("{}{}", env!("CARGO_PKG_VERSION"), if cfg!(debug_assertions) { " (debug build)" } else { "" })
}

/// Checks that session text given as a string (approuter passes JSON text)
/// is exactly one JSON value, so nothing else reaches a store (in
/// sessions.json it would be spliced into the file as it is). Validated
/// without building anything, at any depth.
#[napi(catch_unwind)]
pub fn check_json(#[napi(ts_arg_type = "string")] text: Utf8Text) -> napi::Result<(), Code> {
  serde_json::from_slice::<serde::de::IgnoredAny>(text.as_str().as_bytes())
    .map(|_| ())
    .map_err(|e| napi::Error::new(Code::NotSerializable, format!("session text is not one JSON value: {e}")))
}
