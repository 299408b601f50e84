//! Stores nothing (HTTP Sessions' `DummyStorage`): every read misses, every
//! write succeeds. Useful in tests and to measure host overhead.

use super::{SyncBackend, Ttl};
use crate::error::Result;
use crate::expiry::Expiry;

#[derive(Debug, Default)]
pub struct DummyBackend;

impl SyncBackend for DummyBackend {
  fn get(&self, _id: &str) -> Result<Option<Vec<u8>>> {
    Ok(None)
  }
  fn set(&self, _id: &str, _value: Vec<u8>, _expires: Option<Expiry>) -> Result<()> {
    Ok(())
  }
  fn remove(&self, _id: &str) -> Result<bool> {
    Ok(false)
  }
  fn touch(&self, _id: &str, _expires: Option<Expiry>) -> Result<bool> {
    Ok(false)
  }
  fn ttl(&self, _id: &str) -> Result<Ttl> {
    Ok(Ttl::Missing)
  }
  fn exists(&self, _id: &str) -> Result<bool> {
    Ok(false)
  }
  fn len(&self) -> Result<u64> {
    Ok(0)
  }
  fn clear(&self) -> Result<u64> {
    Ok(0)
  }
  fn keys(&self) -> Result<Vec<String>> {
    Ok(Vec::new())
  }
  fn entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(Vec::new())
  }
  /// Like HTTP Sessions' DummyStorage: every lock is granted, none is exclusive.
  fn lock(&self, _id: &str, _token: &str, _ttl_ms: u64) -> Result<bool> {
    Ok(true)
  }
  fn unlock(&self, _id: &str, _token: &str) -> Result<bool> {
    Ok(true)
  }
  fn renew(&self, _id: &str, _token: &str, _ttl_ms: u64) -> Result<bool> {
    Ok(true)
  }
  fn close(&self) -> Result<()> {
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn stores_nothing() {
    let d = DummyBackend;
    d.set("a", b"x".to_vec(), None).unwrap();
    assert_eq!(SyncBackend::get(&d, "a").unwrap(), None);
    assert!(!d.exists("a").unwrap());
    assert_eq!(d.len().unwrap(), 0);
    assert_eq!(d.ttl("a").unwrap(), Ttl::Missing);
  }
}
