//! The stored form of one session shared by the file and object-storage
//! backends: one header line
//! `{"rs-store":1,"id":"…","expires":<ms|null>,"sum":<crc32c>}`, then the
//! payload. `sum` (CRC-32C of the payload) lets a reader tell a torn or
//! mixed read from a record; records without it are accepted. Names come
//! from a hash of the id, never from the id.

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
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub sum: Option<u32>,
}

/// CRC-32C of a payload.
fn sum(payload: &[u8]) -> u32 {
  crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, payload) as u32
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
  let header = serde_json::to_vec(&Header { version: 1, id: id.to_string(), expires, sum: Some(sum(payload)) })
    .map_err(|e| StoreError::new(Code::Internal, e.to_string()))?;
  let mut buf = Vec::with_capacity(header.len() + 1 + payload.len());
  buf.extend_from_slice(&header);
  buf.push(b'\n');
  buf.extend_from_slice(payload);
  Ok(buf)
}

fn corrupt(what: &str, why: &str) -> StoreError {
  StoreError::new(Code::Corrupt, format!("{what} is not an rs-store session record: {why}"))
}

/// Parses only the header line of `bytes` (e.g. the first 4 KiB of a file);
/// returns it and where the payload starts.
pub fn decode_header(what: &str, bytes: &[u8]) -> Result<(Header, usize)> {
  let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt(what, "no header line"))?;
  let header: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| corrupt(what, &e.to_string()))?;
  if header.version != 1 {
    return Err(corrupt(what, &format!("unknown version {}", header.version)));
  }
  Ok((header, nl + 1))
}

/// Parses a record and checks its payload against `sum`; `what` names it in
/// errors (a path or an object key).
pub fn decode(what: &str, mut bytes: Vec<u8>) -> Result<Record> {
  let (header, start) = decode_header(what, &bytes)?;
  let payload = bytes.split_off(start);
  if header.sum.is_some_and(|s| s != sum(&payload)) {
    return Err(corrupt(what, "the payload does not match its checksum"));
  }
  Ok(Record { header, payload })
}
