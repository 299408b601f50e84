//! The stored form of one session shared by the file and object-storage
//! backends: one header line `{"rs-store":1,"id":"…","expires":<ms|null>}`,
//! then the payload. Names come from a hash of the id, never from the id.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Code, Result, StoreError};
use crate::expiry::Expiry;

/// File/object name extension of a session record.
pub const EXT: &str = "sess";

#[derive(Serialize, Deserialize)]
pub struct Header {
  #[serde(rename = "rs-store")]
  pub version: u32,
  pub id: String,
  pub expires: Option<Expiry>,
}

/// A parsed record.
pub struct Record {
  pub header: Header,
  pub payload: Vec<u8>,
}

/// `<sha256(id) hex>.sess`
pub fn name_for(id: &str) -> String {
  let digest = Sha256::digest(id.as_bytes());
  let mut name = String::with_capacity(64 + 1 + EXT.len());
  for b in digest.iter() {
    name.push_str(&format!("{b:02x}"));
  }
  name.push('.');
  name.push_str(EXT);
  name
}

pub fn encode(id: &str, expires: Option<Expiry>, payload: &[u8]) -> Result<Vec<u8>> {
  let header = serde_json::to_vec(&Header { version: 1, id: id.to_string(), expires })
    .map_err(|e| StoreError::new(Code::Internal, e.to_string()))?;
  let mut buf = Vec::with_capacity(header.len() + 1 + payload.len());
  buf.extend_from_slice(&header);
  buf.push(b'\n');
  buf.extend_from_slice(payload);
  Ok(buf)
}

/// Parses a record; `what` names it in errors (a path or an object key).
pub fn decode(what: &str, mut bytes: Vec<u8>) -> Result<Record> {
  let corrupt = |why: &str| StoreError::new(Code::Corrupt, format!("{what} is not an rs-store session record: {why}"));
  let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt("no header line"))?;
  let header: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| corrupt(&e.to_string()))?;
  if header.version != 1 {
    return Err(corrupt(&format!("unknown version {}", header.version)));
  }
  let payload = bytes.split_off(nl + 1);
  Ok(Record { header, payload })
}
