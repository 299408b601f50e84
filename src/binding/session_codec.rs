//! `SessionCodec`: the stores' codec on its own.

use napi_derive::napi;

use crate::codec::Codec;
use crate::error::{Code, StoreError};

/// The codec on its own (benchmarks, and tools that inspect stored values):
/// the same pipeline every store applies.
#[napi]
pub struct SessionCodec {
  codec: Codec,
}

#[napi]
impl SessionCodec {
  /// `secrets`: newest first (each at least 64 characters); `compress`: zstd.
  #[napi(constructor, catch_unwind)]
  pub fn new(secrets: Option<Vec<String>>, compress: Option<bool>) -> napi::Result<Self, Code> {
    Ok(SessionCodec { codec: Codec::new(&secrets.unwrap_or_default(), compress.unwrap_or(false))? })
  }

  /// The bytes a store keeps for this session text under this id.
  #[napi(catch_unwind)]
  pub fn encode(&self, id: String, text: String) -> napi::Result<napi::bindgen_prelude::Buffer, Code> {
    Ok(self.codec.encode(&id, text.into_bytes())?.into())
  }

  /// The session text back from stored bytes (`ERR_CORRUPT_DATA` when they
  /// cannot be decoded with these secrets).
  #[napi(catch_unwind)]
  pub fn decode(&self, id: String, stored: napi::bindgen_prelude::Buffer) -> napi::Result<String, Code> {
    let bytes = self.codec.decode(&id, stored.to_vec())?;
    Ok(String::from_utf8(bytes).map_err(|_| StoreError::new(Code::Corrupt, "not UTF-8 text"))?)
  }
}
