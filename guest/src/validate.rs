//! Argument checks made before anything reaches Redis. Limits are part of the documented API.

use alloc::format;
use alloc::string::String;

use crate::bindings::exports::dlock::lock::lock::Error;

/// Longest accepted lock key, in bytes (without the client's prefix).
pub const MAX_KEY_BYTES: usize = 512;
/// Longest accepted key prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 256;
/// Longest accepted token (for `attach`), in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Longest accepted TTL or wait timeout: 10^12 ms, about 31.7 years. Redis accepts more, but a
/// longer lease is a bug, and this bound keeps every deadline computation far from overflow.
pub const MAX_DURATION_MS: u64 = 1_000_000_000_000;

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

fn check_text(what: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), Error> {
    if value.is_empty() && !allow_empty {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if value.len() > max {
        return Err(invalid(format!(
            "{what} is {} bytes long; the limit is {max}",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "{what} contains the control character {c:?}"
        )));
    }
    Ok(())
}

/// A lock key: 1 to `MAX_KEY_BYTES` bytes, no control characters.
pub fn key(key: &str) -> Result<(), Error> {
    check_text("the lock key", key, MAX_KEY_BYTES, false)
}

/// A key prefix: up to `MAX_PREFIX_BYTES` bytes, no control characters (empty is fine).
pub fn prefix(prefix: &str) -> Result<(), Error> {
    check_text("the key prefix", prefix, MAX_PREFIX_BYTES, true)
}

/// A token given to `attach`: 1 to `MAX_TOKEN_BYTES` bytes, no control characters.
pub fn token(token: &str) -> Result<(), Error> {
    check_text("the token", token, MAX_TOKEN_BYTES, false)
}

/// A lease or timeout in milliseconds: 1 to `MAX_DURATION_MS` (0 too when `allow_zero`).
pub fn duration_ms(what: &str, ms: u64, allow_zero: bool) -> Result<(), Error> {
    if ms == 0 && !allow_zero {
        return Err(invalid(format!("{what} must be positive, got 0 ms")));
    }
    if ms > MAX_DURATION_MS {
        return Err(invalid(format!(
            "{what} of {ms} ms is over the limit of {MAX_DURATION_MS} ms"
        )));
    }
    Ok(())
}

/// The fence counter key for a lock key, in the same Redis Cluster slot.
///
/// A key with a hash tag (`{...}` with something inside) keeps its tag, so the counter is the
/// key plus `:fence`. A key without one is hashed whole, so it becomes the counter's tag:
/// `{key}:fence`. A key that has no hash tag but contains `}` cannot be wrapped that way and is
/// refused for fencing.
pub fn fence_key(redis_key: &str) -> Result<String, Error> {
    if has_hash_tag(redis_key) {
        Ok(format!("{redis_key}:fence"))
    } else if !redis_key.contains('}') {
        Ok(format!("{{{redis_key}}}:fence"))
    } else {
        Err(invalid(format!(
            "the key {redis_key:?} contains '}}' but no hash tag, so no fence counter can share \
             its cluster slot; give it a hash tag such as {{name}}"
        )))
    }
}

/// A Redis key used as a lock: not some lock's fence counter (see [`is_fence_counter`]), so
/// that no release, extend or acquire through the lock API can delete, expire or overwrite a
/// counter that fencing relies on never going backwards.
pub fn lock_key(redis_key: &str) -> Result<(), Error> {
    if is_fence_counter(redis_key) {
        return Err(invalid(format!(
            "the key {redis_key:?} is a lock's fence counter, not a lock: use another key"
        )));
    }
    Ok(())
}

/// Whether `key` is what [`fence_key`] makes of some lock key: a key ending in `:fence`
/// whose part before that has a hash tag (`{job}:fence`, `app:{job}:fence`).
pub fn is_fence_counter(key: &str) -> bool {
    key.strip_suffix(":fence").is_some_and(has_hash_tag)
}

/// Whether Redis Cluster would hash only part of `key`: a `{` followed later by a `}` with at
/// least one byte between them.
fn has_hash_tag(key: &str) -> bool {
    match key.find('{') {
        Some(open) => matches!(key[open + 1..].find('}'), Some(len) if len > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<(), Error>) -> String {
        match r {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected invalid-argument, got {other:?}"),
        }
    }

    #[test]
    fn keys_must_be_nonempty_short_and_printable() {
        assert!(key("jobs:nightly").is_ok());
        assert!(key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(message(key("")).contains("empty"));
        assert!(message(key(&"k".repeat(MAX_KEY_BYTES + 1))).contains("limit is 512"));
        assert!(message(key("a\nb")).contains("control character"));
        assert!(message(key("a\0b")).contains("control character"));
    }

    #[test]
    fn empty_prefix_is_allowed_but_control_characters_are_not() {
        assert!(prefix("").is_ok());
        assert!(message(prefix("app\r")).contains("control"));
    }

    #[test]
    fn durations_are_bounded() {
        assert!(duration_ms("ttl", 1, false).is_ok());
        assert!(duration_ms("ttl", MAX_DURATION_MS, false).is_ok());
        assert!(duration_ms("timeout", 0, true).is_ok());
        assert!(message(duration_ms("ttl", 0, false)).contains("positive"));
        assert!(message(duration_ms("ttl", u64::MAX, false)).contains("over the limit"));
    }

    #[test]
    fn fence_keys_share_the_lock_keys_slot() {
        assert_eq!(fence_key("job").unwrap(), "{job}:fence");
        assert_eq!(fence_key("app:{job}").unwrap(), "app:{job}:fence");
        assert_eq!(fence_key("a{b").unwrap(), "{a{b}:fence");
        // An empty tag does not count: the whole key is hashed.
        assert!(matches!(fence_key("a{}"), Err(Error::InvalidArgument(_))));
        assert!(matches!(fence_key("a}b"), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn every_fence_key_is_recognised_as_a_fence_counter_and_refused_as_a_lock() {
        for lock in ["job", "app:{job}", "a{b", "x", "app:job"] {
            let counter = fence_key(lock).unwrap();
            assert!(is_fence_counter(&counter), "{counter}");
            assert!(message(lock_key(&counter)).contains("fence counter"));
            assert!(lock_key(lock).is_ok(), "{lock}");
        }
        for not_a_counter in ["job:fence", "{}:fence", "fence", ":fence", "{job}:fenced"] {
            assert!(!is_fence_counter(not_a_counter), "{not_a_counter}");
        }
    }
}
