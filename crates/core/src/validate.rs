//! Checks on caller input, done before anything reaches Redis.
//!
//! Numbers arrive as `f64` because that is what a JavaScript number is; every check here names
//! the argument it refuses, so that the error message says what to fix.

use crate::error::{Error, Result};

/// Longest key accepted, in bytes. Redis takes far longer keys, but a lock key this long is a
/// bug in the caller (a serialized object used as a key, say), and side keys add to it.
pub const MAX_KEY_BYTES: usize = 4096;
/// Longest token accepted, in bytes. Tokens made here are 36 bytes; other clients' are shorter
/// than this too.
pub const MAX_TOKEN_BYTES: usize = 1024;
/// Largest ttl or duration accepted: 2^31 − 1 ms, about 24.8 days (the largest timer delay
/// Node.js honours as well).
pub const MAX_MILLIS: u64 = i32::MAX as u64;

/// Shortest lease accepted. Below it a lock hardly exists: the clock-drift margin (2 ms plus 1 %)
/// and one round trip eat the validity, and the watchdog would renew every few milliseconds.
pub const MIN_TTL_MS: u64 = 100;

/// A lease (`ttl`, `maxHold`): a whole number of milliseconds in `MIN_TTL_MS..=MAX_MILLIS`.
pub fn lease(name: &str, value: f64) -> Result<u64> {
  let millis = positive_millis(name, value)?;
  if millis < MIN_TTL_MS {
    return Err(Error::invalid_argument(format!(
      "{name} must be at least {MIN_TTL_MS} ms, got {value}: a shorter lease would expire before it could be used"
    )));
  }
  Ok(millis)
}

/// Longest key prefix accepted, in bytes.
pub const MAX_PREFIX_BYTES: usize = 256;

pub fn prefix(prefix: &str) -> Result<()> {
  if prefix.len() > MAX_PREFIX_BYTES {
    return Err(Error::invalid_argument(format!(
      "prefix is {} bytes long; the limit is {MAX_PREFIX_BYTES}",
      prefix.len()
    )));
  }
  Ok(())
}

pub fn key(key: &str) -> Result<()> {
  if key.is_empty() {
    return Err(Error::invalid_argument("key must be a non-empty string"));
  }
  if key.len() > MAX_KEY_BYTES {
    return Err(Error::invalid_argument(format!(
      "key is {} bytes long; the limit is {MAX_KEY_BYTES}",
      key.len()
    )));
  }
  Ok(())
}

pub fn token(token: &str) -> Result<()> {
  if token.is_empty() {
    return Err(Error::invalid_argument("token must be a non-empty string"));
  }
  if token.len() > MAX_TOKEN_BYTES {
    return Err(Error::invalid_argument(format!(
      "token is {} bytes long; the limit is {MAX_TOKEN_BYTES}",
      token.len()
    )));
  }
  Ok(())
}

/// A whole number of milliseconds in `1..=MAX_MILLIS`.
pub fn positive_millis(name: &str, value: f64) -> Result<u64> {
  millis(name, value, 1)
}

/// A whole number of milliseconds in `0..=MAX_MILLIS`.
pub fn non_negative_millis(name: &str, value: f64) -> Result<u64> {
  millis(name, value, 0)
}

fn millis(name: &str, value: f64, min: u64) -> Result<u64> {
  let described = if min == 0 {
    "a non-negative"
  } else {
    "a positive"
  };
  if !value.is_finite() || value.fract() != 0.0 || value < min as f64 {
    return Err(Error::invalid_argument(format!(
      "{name} must be {described} integer number of milliseconds, got {value}"
    )));
  }
  if value > MAX_MILLIS as f64 {
    return Err(Error::invalid_argument(format!(
      "{name} must be at most {MAX_MILLIS} ms (about 24.8 days), got {value}"
    )));
  }
  Ok(value as u64)
}

/// A whole count in `0..=max`.
pub fn count(name: &str, value: f64, max: u64) -> Result<u64> {
  if !value.is_finite() || value.fract() != 0.0 || value < 0.0 || value > max as f64 {
    return Err(Error::invalid_argument(format!(
      "{name} must be an integer between 0 and {max}, got {value}"
    )));
  }
  Ok(value as u64)
}

/// A fraction in `0.0..max` (exclusive).
pub fn fraction(name: &str, value: f64, max: f64) -> Result<f64> {
  if !value.is_finite() || value < 0.0 || value >= max {
    return Err(Error::invalid_argument(format!(
      "{name} must be a number at least 0 and below {max}, got {value}"
    )));
  }
  Ok(value)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::ErrorKind;

  #[test]
  fn keys_must_be_non_empty_and_bounded() {
    assert!(key("order:42").is_ok());
    assert!(key("{ünïcode} key with spaces").is_ok());
    assert_eq!(key("").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert!(key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
    let too_long = key(&"k".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
    assert!(too_long.message().contains("4097 bytes"), "{too_long}");
  }

  #[test]
  fn tokens_must_be_non_empty_and_bounded() {
    assert!(token("0b5e9c1e-5c1c-4b8e-9f57-3c1e3e0f1a2b").is_ok());
    assert!(token("").is_err());
    assert!(token(&"t".repeat(MAX_TOKEN_BYTES + 1)).is_err());
  }

  #[test]
  fn millis_are_whole_and_in_range() {
    assert_eq!(positive_millis("ttl", 1.0).unwrap(), 1);
    assert_eq!(
      positive_millis("ttl", MAX_MILLIS as f64).unwrap(),
      MAX_MILLIS
    );
    for bad in [
      0.0,
      -1.0,
      1.5,
      f64::NAN,
      f64::INFINITY,
      MAX_MILLIS as f64 + 1.0,
    ] {
      let err = positive_millis("ttl", bad).unwrap_err();
      assert_eq!(err.kind(), ErrorKind::InvalidArgument);
      assert!(err.message().starts_with("ttl must be"), "{err}");
    }
    assert_eq!(non_negative_millis("retryDelay", 0.0).unwrap(), 0);
    assert!(non_negative_millis("retryDelay", -0.5).is_err());
  }

  #[test]
  fn counts_and_fractions() {
    assert_eq!(count("retryCount", 3.0, 1000).unwrap(), 3);
    assert!(count("retryCount", 1001.0, 1000).is_err());
    assert!(count("retryCount", 2.5, 1000).is_err());
    assert_eq!(fraction("driftFactor", 0.01, 0.5).unwrap(), 0.01);
    assert!(fraction("driftFactor", 0.5, 0.5).is_err());
    assert!(fraction("driftFactor", f64::NAN, 0.5).is_err());
  }
}
