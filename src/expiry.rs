//! Absolute expiry. Every backend stores "expires at" as epoch milliseconds
//! (`u64`), never a relative duration, so no timer ever overflows (a 30-day or
//! 10-year expiry is just a bigger number) and restarts do not stretch it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Epoch milliseconds. `None` in an `Option<Expiry>` means "never expires".
pub type Expiry = u64;

/// Current wall-clock time in epoch milliseconds.
pub fn now_ms() -> u64 {
  SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Absolute expiry for a relative ttl in ms, saturating instead of overflowing.
pub fn after_ms(ttl_ms: u64) -> Expiry {
  now_ms().saturating_add(ttl_ms)
}

/// Is `at` in the past (relative to `now`)? An entry expiring exactly now is expired.
pub fn is_expired(at: Option<Expiry>, now: u64) -> bool {
  matches!(at, Some(t) if t <= now)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn expiry_math() {
    let now = 1_000;
    assert!(is_expired(Some(1_000), now));
    assert!(!is_expired(Some(1_001), now));
    assert!(!is_expired(None, now));
    // 30 days and far beyond do not overflow
    let thirty_days = 30 * 24 * 3600 * 1000u64;
    assert!(after_ms(thirty_days) > now_ms());
    assert_eq!(after_ms(u64::MAX), u64::MAX);
  }
}
