//! The limits on keys, prefixes, tokens and durations, and the checks that apply them.

use alloc::format;
use alloc::string::String;

use crate::companion::companion_of;

/// Longest lock key, in bytes (without the client's prefix).
pub const MAX_KEY_BYTES: usize = 512;
/// Longest key prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 256;
/// Longest token `attach` accepts (a token another client of the convention wrote), in bytes;
/// also the longest foreign token a host's policy lets `release` and `extend` name.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Length of the component's own tokens: a UUID v4 in hyphenated lowercase form.
pub const TOKEN_BYTES: usize = 36;
/// Most bytes one `wasi:random` `get-random-bytes` call may ask of a host; a larger request
/// traps the call instead of making the host allocate it. The component draws its tokens'
/// randomness in batches well below it.
pub const MAX_RANDOM_BYTES: u64 = 4096;
/// Longest TTL or wait: 10^12 ms, about 31.7 years. Redis accepts more, but a longer lease is a
/// bug, and this bound keeps every deadline computation far from overflow.
pub const MAX_DURATION_MS: u64 = 1_000_000_000_000;
/// Most permits a counting semaphore may have (its limit), and so the most one acquisition may
/// take: each permit is a member of the semaphore's sorted set, written by one script call.
pub const MAX_PERMITS: u32 = 1000;
/// `wait-for-lock` never waits longer than this between two attempts, in milliseconds.
pub const WAIT_MAX_DELAY_MS: u64 = 1000;
/// How much longer than the longest wait it announces a waiter's mark lasts, in milliseconds:
/// a release signals while the mark lasts, so the mark must outlive the wait it announces.
pub const WAITERS_MARK_SLACK_MS: u64 = 1000;

/// Text that names something: 1 (or 0 with `allow_empty`) to `max` bytes, no control
/// characters. The error names `what`.
pub fn check_text(what: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), String> {
    if value.is_empty() && !allow_empty {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > max {
        return Err(format!(
            "{what} is {} bytes long; the limit is {max}",
            value.len()
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("{what} contains the control character {c:?}"));
    }
    Ok(())
}

/// A lock key: 1 to [`MAX_KEY_BYTES`] bytes, no control characters.
pub fn check_key(key: &str) -> Result<(), String> {
    check_text("the lock key", key, MAX_KEY_BYTES, false)
}

/// A key prefix: up to [`MAX_PREFIX_BYTES`] bytes, no control characters (empty is fine).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    check_text("the key prefix", prefix, MAX_PREFIX_BYTES, true)
}

/// A token given to `attach`: 1 to [`MAX_TOKEN_BYTES`] bytes, no control characters.
pub fn check_token(token: &str) -> Result<(), String> {
    check_text("the token", token, MAX_TOKEN_BYTES, false)
}

/// A lease or wait in milliseconds: 1 to [`MAX_DURATION_MS`] (0 too when `allow_zero`).
pub fn check_duration_ms(what: &str, ms: u64, allow_zero: bool) -> Result<(), String> {
    if ms == 0 && !allow_zero {
        return Err(format!("{what} must be positive, got 0 ms"));
    }
    if ms > MAX_DURATION_MS {
        return Err(format!(
            "{what} of {ms} ms is over the limit of {MAX_DURATION_MS} ms"
        ));
    }
    Ok(())
}

/// A counting semaphore's request: a limit of 1 to [`MAX_PERMITS`], and 1 to `limit` permits
/// taken.
pub fn check_permits(limit: u32, count: u32) -> Result<(), String> {
    if !(1..=MAX_PERMITS).contains(&limit) {
        return Err(format!(
            "a semaphore's limit must be 1 to {MAX_PERMITS} permits, got {limit}"
        ));
    }
    if !(1..=limit).contains(&count) {
        return Err(format!(
            "an acquisition takes 1 to the limit of {limit} permits, got {count}"
        ));
    }
    Ok(())
}

/// A Redis key used as a lock (prefix included): not a companion key of some lock (its fence
/// counter, signal list or waiters' mark), so that no release, extend or acquire through the
/// lock API can delete, expire or overwrite a counter that fencing relies on never going
/// backwards, or the keys waiters rely on.
pub fn check_lock_key(redis_key: &str) -> Result<(), String> {
    if let Some(companion) = companion_of(redis_key) {
        return Err(format!(
            "the key {redis_key:?} is a lock's {}, not a lock: use another key",
            companion.description()
        ));
    }
    Ok(())
}

/// Whether `token` has the form of the component's own tokens:
/// `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx` in lowercase hex.
pub fn is_uuid_v4(token: &str) -> bool {
    let b = token.as_bytes();
    b.len() == TOKEN_BYTES
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}
