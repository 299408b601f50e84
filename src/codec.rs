//! The one codec pipeline, shared by every backend: session JSON text →
//! compression (when it pays) → AES-256-GCM, and back.
//!
//! * Compression: zstd level 1, chosen by measurement on approuter-like
//!   sessions (figures in docs/backends.md): it keeps the fewest bytes of
//!   the fast codecs, far faster than gzip. Below `MIN_COMPRESS` bytes
//!   nothing pays, and a result that is not smaller is not used.
//! * Encryption: AES-256-GCM (RustCrypto `aes-gcm`) with a random 96-bit
//!   nonce per write and a key derived from the secret with HKDF-SHA256
//!   (`info` = [`KDF_INFO`]). The associated data is the 2-byte header plus
//!   the session id: a changed header, or a ciphertext moved to another id,
//!   does not decrypt.
//! * Rotation: `secrets[0]` encrypts; any of them decrypts. Each encrypted
//!   value names its key by a 4-byte key id (a hash of the derived key).
//! * Format: byte 0 = `FORMAT` (1), byte 1 = flags (`COMPRESSED`,
//!   `ENCRYPTED`), then (encrypted) key id + nonce + ciphertext and tag, or
//!   (compressed only) the zstd frame. Values that start with another byte
//!   are plain JSON text (stored without a codec); they are accepted only
//!   when no secret is configured.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use crate::error::{Code, Result, StoreError};

pub const FORMAT: u8 = 1;
const COMPRESSED: u8 = 1;
const ENCRYPTED: u8 = 2;
/// Sessions smaller than this are never compressed.
pub const MIN_COMPRESS: usize = 512;
/// Shortest accepted secret (approuter's documented requirement).
pub const MIN_SECRET_CHARS: usize = 64;
pub const KDF_INFO: &[u8] = b"rs-store session encryption v1";
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
/// Largest decompressed session accepted (guards against zstd bombs).
const MAX_PLAIN: usize = 64 * 1024 * 1024;

struct SessionKey {
  id: [u8; KEY_ID_LEN],
  cipher: Aes256Gcm,
}

pub struct Codec {
  compress: bool,
  keys: Vec<SessionKey>,
}

/// Associated data: the header and the session id.
fn aad(flags: u8, id: &str) -> Vec<u8> {
  let mut a = Vec::with_capacity(2 + id.len());
  a.extend_from_slice(&[FORMAT, flags]);
  a.extend_from_slice(id.as_bytes());
  a
}

fn corrupt(why: &str) -> StoreError {
  StoreError::new(Code::Corrupt, format!("stored session cannot be decoded: {why}"))
}

impl Codec {
  /// `secrets[0]` encrypts, all decrypt; no secrets = no encryption.
  pub fn new(secrets: &[String], compress: bool) -> Result<Self> {
    let mut keys = Vec::with_capacity(secrets.len());
    for s in secrets {
      if s.chars().count() < MIN_SECRET_CHARS {
        return Err(StoreError::new(
          Code::InvalidOption,
          format!("a secret must be at least {MIN_SECRET_CHARS} characters long (got {})", s.chars().count()),
        ));
      }
      let mut okm = [0u8; 32];
      Hkdf::<Sha256>::new(None, s.as_bytes())
        .expand(KDF_INFO, &mut okm)
        .map_err(|_| StoreError::new(Code::Internal, "HKDF output length"))?;
      let digest = Sha256::digest(okm);
      let mut id = [0u8; KEY_ID_LEN];
      id.copy_from_slice(&digest[..KEY_ID_LEN]);
      let key = Key::<Aes256Gcm>::try_from(&okm[..]).map_err(|_| StoreError::new(Code::Internal, "key length"))?;
      keys.push(SessionKey { id, cipher: Aes256Gcm::new(&key) });
    }
    Ok(Codec { compress, keys })
  }

  /// Does this codec change anything? (If not, values stay plain JSON text.)
  pub fn is_active(&self) -> bool {
    self.compress || !self.keys.is_empty()
  }

  pub fn encode(&self, id: &str, plain: Vec<u8>) -> Result<Vec<u8>> {
    if !self.is_active() {
      return Ok(plain);
    }
    let mut flags = 0;
    let mut body = plain;
    if self.compress && body.len() >= MIN_COMPRESS {
      let z = zstd::bulk::compress(&body, 1).map_err(|e| StoreError::new(Code::Internal, format!("zstd: {e}")))?;
      if z.len() < body.len() {
        body = z;
        flags |= COMPRESSED;
      }
    }
    let Some(key) = self.keys.first() else {
      let mut out = Vec::with_capacity(2 + body.len());
      out.extend_from_slice(&[FORMAT, flags]);
      out.extend_from_slice(&body);
      return Ok(out);
    };
    flags |= ENCRYPTED;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| StoreError::new(Code::Internal, format!("no randomness: {e}")))?;
    let sealed = key
      .cipher
      .encrypt(&Nonce::from(nonce), Payload { msg: &body, aad: &aad(flags, id) })
      .map_err(|_| StoreError::new(Code::Internal, "encryption failed"))?;
    let mut out = Vec::with_capacity(2 + KEY_ID_LEN + NONCE_LEN + sealed.len());
    out.extend_from_slice(&[FORMAT, flags]);
    out.extend_from_slice(&key.id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
  }

  pub fn decode(&self, id: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
    if stored.first() != Some(&FORMAT) {
      // Plain JSON text (written without a codec).
      return if self.keys.is_empty() { Ok(stored) } else { Err(corrupt("not encrypted, but a secret is set")) };
    }
    let flags = *stored.get(1).ok_or_else(|| corrupt("truncated header"))?;
    if flags & !(COMPRESSED | ENCRYPTED) != 0 {
      return Err(corrupt("unknown flags"));
    }
    let mut body = stored[2..].to_vec();
    if flags & ENCRYPTED != 0 {
      if body.len() < KEY_ID_LEN + NONCE_LEN + 16 {
        return Err(corrupt("truncated ciphertext"));
      }
      let key = self.keys.iter().find(|k| k.id[..] == body[..KEY_ID_LEN]).ok_or_else(|| {
        corrupt(if self.keys.is_empty() {
          "encrypted, and this store has no secret configured (give it the `secret` or `secrets` that wrote it)"
        } else {
          "encrypted with a key that is not among the configured secrets"
        })
      })?;
      let nonce = Nonce::try_from(&body[KEY_ID_LEN..KEY_ID_LEN + NONCE_LEN]).map_err(|_| corrupt("nonce"))?;
      body = key
        .cipher
        .decrypt(&nonce, Payload { msg: &body[KEY_ID_LEN + NONCE_LEN..], aad: &aad(flags, id) })
        .map_err(|_| corrupt("authentication failed (tampered, truncated, or another session's data)"))?;
    } else if !self.keys.is_empty() {
      return Err(corrupt("not encrypted, but a secret is set"));
    }
    if flags & COMPRESSED != 0 {
      body = zstd::bulk::decompress(&body, MAX_PLAIN).map_err(|e| corrupt(&format!("zstd: {e}")))?;
    }
    Ok(body)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn secret(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
  }

  fn big_json() -> Vec<u8> {
    let mut s = String::from("{\"scopes\":[");
    for i in 0..200 {
      s.push_str(&format!("\"app!t{i}.Display\","));
    }
    s.push_str("\"openid\"]}");
    s.into_bytes()
  }

  #[test]
  fn roundtrip_all_modes() {
    for (secrets, compress) in [(vec![], false), (vec![], true), (vec![secret('a')], false), (vec![secret('a')], true)] {
      let c = Codec::new(&secrets, compress).unwrap();
      for plain in [b"{\"a\":1}".to_vec(), big_json()] {
        let enc = c.encode("id1", plain.clone()).unwrap();
        assert_eq!(c.decode("id1", enc.clone()).unwrap(), plain);
        if !secrets.is_empty() {
          assert!(!enc.windows(7).any(|w| w == b"openid\"" || w == b"{\"a\":1}"), "no plaintext");
        }
        if compress && plain.len() > MIN_COMPRESS {
          assert!(enc.len() < plain.len() / 2, "compressed: {} of {}", enc.len(), plain.len());
        }
      }
    }
    // no codec: plain JSON stays plain
    assert_eq!(Codec::new(&[], false).unwrap().encode("x", b"{}".to_vec()).unwrap(), b"{}");
  }

  #[test]
  fn rotation_tamper_wrong_key_and_id_binding() {
    let old = Codec::new(&[secret('o')], true).unwrap();
    let rotated = Codec::new(&[secret('n'), secret('o')], true).unwrap();
    let new_only = Codec::new(&[secret('n')], true).unwrap();
    let enc_old = old.encode("s", big_json()).unwrap();
    assert_eq!(rotated.decode("s", enc_old.clone()).unwrap(), big_json(), "older secrets still decrypt");
    let enc_new = rotated.encode("s", big_json()).unwrap();
    assert_eq!(new_only.decode("s", enc_new.clone()).unwrap(), big_json(), "newest secret encrypts");
    assert_eq!(new_only.decode("s", enc_old.clone()).unwrap_err().code, Code::Corrupt, "wrong key");
    let no_secret = Codec::new(&[], true).unwrap().decode("s", enc_old.clone()).unwrap_err();
    assert!(no_secret.message.contains("no secret configured"), "says no secret is configured: {}", no_secret.message);
    assert_eq!(old.decode("other-id", enc_old.clone()).unwrap_err().code, Code::Corrupt, "bound to its id");
    for i in [1, 3, 10, enc_old.len() - 1] {
      for bit in [0x01, 0x40] {
        let mut t = enc_old.clone();
        t[i] ^= bit;
        assert!(matches!(old.decode("s", t), Err(e) if e.code == Code::Corrupt), "tampered byte {i} bit {bit}");
      }
    }
    assert_eq!(old.decode("s", enc_old[..20].to_vec()).unwrap_err().code, Code::Corrupt, "truncated");
    assert_eq!(old.decode("s", b"{\"plain\":1}".to_vec()).unwrap_err().code, Code::Corrupt, "plaintext refused");
    // two encryptions of one session differ (random nonce)
    assert_ne!(old.encode("s", big_json()).unwrap(), old.encode("s", big_json()).unwrap());
  }

  #[test]
  fn short_secret_refused() {
    let e = Codec::new(&["short".to_string()], false).err().unwrap();
    assert_eq!(e.code, Code::InvalidOption);
  }
}
