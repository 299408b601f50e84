//! The stored form of one session shared by the file and object-storage
//! backends: one header line
//! `{"rs-store":1,"id":"…","expires":<ms|null>,"sum":<crc32c>}`, then the
//! payload. `sum` (CRC-32C of the payload) lets a reader tell a torn or
//! mixed read from a record; records without it are accepted. Names come
//! from a hash of the id, never from the id. The file store's per-user
//! sessions add `"user"` and `"end"` (see [`Header`]); records without
//! them are anonymous, and readers that do not know them ignore them.

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
  /// Whose session it is (a file store with `userOf`; its user's index
  /// names it too).
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub user: Option<String>,
  /// Its absolute end (`maxLifetime`), epoch ms.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub end: Option<Expiry>,
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
  hashed_name(id, EXT)
}

/// `<sha256(key) hex>.<ext>`
pub fn hashed_name(key: &str, ext: &str) -> String {
  const HEX: &[u8; 16] = b"0123456789abcdef";
  let digest = Sha256::digest(key.as_bytes());
  let mut name = String::with_capacity(64 + 1 + ext.len());
  for b in digest.iter() {
    name.push(HEX[(b >> 4) as usize] as char);
    name.push(HEX[(b & 15) as usize] as char);
  }
  name.push('.');
  name.push_str(ext);
  name
}

/// Whose a record is and its absolute end (per-user sessions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
  pub user: Option<String>,
  pub end: Option<Expiry>,
}

pub fn encode(id: &str, expires: Option<Expiry>, payload: &[u8]) -> Result<Vec<u8>> {
  encode_owned(id, expires, payload, Owner::default())
}

/// [`encode`] with the record's user and absolute end.
pub fn encode_owned(id: &str, expires: Option<Expiry>, payload: &[u8], owner: Owner) -> Result<Vec<u8>> {
  let Owner { user, end } = owner;
  let header = serde_json::to_vec(&Header { version: 1, id: id.to_string(), expires, sum: Some(sum(payload)), user, end })
    .map_err(|e| StoreError::new(Code::Internal, e.to_string()))?;
  let mut buf = Vec::with_capacity(header.len() + 1 + payload.len());
  buf.extend_from_slice(&header);
  buf.push(b'\n');
  buf.extend_from_slice(payload);
  Ok(buf)
}

/// `what` names the record in errors (a path or an object key); it is only
/// formatted when there is an error.
type What<'a> = &'a dyn std::fmt::Display;

fn corrupt(what: What, why: &str) -> StoreError {
  StoreError::new(Code::Corrupt, format!("{what} is not an rs-store session record: {why}"))
}

/// Parses only the header line of `bytes` (e.g. the first 4 KiB of a file);
/// returns it and where the payload starts.
pub fn decode_header(what: What, bytes: &[u8]) -> Result<(Header, usize)> {
  let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt(what, "no header line"))?;
  let header: Header = serde_json::from_slice(&bytes[..nl]).map_err(|e| corrupt(what, &e.to_string()))?;
  if header.version != 1 {
    return Err(corrupt(what, &format!("unknown version {}", header.version)));
  }
  Ok((header, nl + 1))
}

/// Parses a record and checks its payload against `sum`; `what` names it in
/// errors (a path or an object key).
pub fn decode(what: What, mut bytes: Vec<u8>) -> Result<Record> {
  let (header, start) = decode_header(what, &bytes)?;
  if header.sum.is_some_and(|s| s != sum(&bytes[start..])) {
    return Err(corrupt(what, "the payload does not match its checksum"));
  }
  bytes.drain(..start); // in place: no second buffer
  Ok(Record { header, payload: bytes })
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn names_are_the_sha256_hex_of_the_id() {
    assert_eq!(name_for("a"), "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb.sess");
  }

  #[test]
  fn a_changed_payload_fails_its_checksum() {
    let mut bytes = encode("id", Some(5), b"{\"n\":1}").unwrap();
    assert_eq!(decode(&"x", bytes.clone()).unwrap().payload, b"{\"n\":1}");
    let last = bytes.len() - 2;
    bytes[last] = b'2';
    assert_eq!(decode(&"x", bytes).err().map(|e| e.code), Some(Code::Corrupt));
    // records without a sum (older files) are accepted
    let plain = b"{\"rs-store\":1,\"id\":\"id\",\"expires\":null}\n{}".to_vec();
    assert_eq!(decode(&"x", plain).unwrap().payload, b"{}");
  }
}
