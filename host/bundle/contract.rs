//! What the component and its hosts agree on, stated once: the limits on keys, prefixes, tokens
//! and durations, the option defaults, the retry schedule, and how fence counters are named.
//!
//! The component enforces these; `dlock-host` embeds a copy of this file
//! (`host/bundle/contract.rs`, checked against this one by the test suite) so that its policy,
//! its API and the CLI apply the same rules before anything reaches the component. It uses
//! only `core` and `alloc`.

use alloc::format;
use alloc::string::String;

/// Longest lock key, in bytes (without the client's prefix).
pub const MAX_KEY_BYTES: usize = 512;
/// Longest key prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 256;
/// Longest token `attach` accepts (a token another client of the convention wrote), in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Length of the component's own tokens: a UUID v4 in hyphenated lowercase form.
pub const TOKEN_BYTES: usize = 36;
/// Longest TTL or wait: 10^12 ms, about 31.7 years. Redis accepts more, but a longer lease is a
/// bug, and this bound keeps every deadline computation far from overflow.
pub const MAX_DURATION_MS: u64 = 1_000_000_000_000;
/// `wait-for-lock` never waits longer than this between two attempts, in milliseconds.
pub const WAIT_MAX_DELAY_MS: u64 = 1000;
/// How much longer than the longest wait it announces a waiter's mark lasts, in milliseconds:
/// a release signals while the mark lasts, so the mark must outlive the wait it announces.
pub const WAITERS_MARK_SLACK_MS: u64 = 1000;

/// Quorum mode (Redlock over independent primaries): the allowance for clock drift between
/// the client and the primaries, per mille of the TTL. A lease granted by a majority is
/// counted valid for `ttl - elapsed - drift`, where `drift` is this share of the TTL plus
/// [`QUORUM_DRIFT_MS`] (node-redlock's and rslock's 1 % + 2 ms).
pub const QUORUM_DRIFT_PER_MILLE: u64 = 10;
/// Quorum mode: the fixed part of the clock-drift allowance, in milliseconds.
pub const QUORUM_DRIFT_MS: u64 = 2;

/// `lock-options.retry-count` by default.
pub const DEFAULT_RETRY_COUNT: u32 = 5;
/// `lock-options.retry-delay-ms` by default.
pub const DEFAULT_RETRY_DELAY_MS: u32 = 100;
/// `lock-options.max-retry-delay-ms` by default.
pub const DEFAULT_MAX_RETRY_DELAY_MS: u32 = 5000;
/// `lock-options.jitter` by default.
pub const DEFAULT_JITTER: bool = false;
/// `lock-options.fencing` by default.
pub const DEFAULT_FENCING: bool = false;
/// `lock-options.safety-margin-ms` by default.
pub const DEFAULT_SAFETY_MARGIN_MS: u64 = 0;

/// The keys that belong to a lock key, in its Redis Cluster slot, each named by suffixing it
/// (see [`companion_key`]). None of them is a lock: [`check_lock_key`] refuses them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Companion {
    /// The fence counter: incremented by every fenced acquisition, never deleted.
    Fence,
    /// The signal list: dlock's release script pushes one signal on it, in the same atomic
    /// step, when waiters are marked; a waiter blocks on it (BLPOP) to wake on a release.
    Signal,
    /// The waiters' mark: set (with an expiry) by the acquire script of a client that will
    /// wait on the signal list if the lock is busy; a release signals only while it lasts.
    Waiters,
}

impl Companion {
    /// Every companion key.
    pub const ALL: [Companion; 3] = [Companion::Fence, Companion::Signal, Companion::Waiters];

    /// The suffix that names it: `:fence`, `:signal`, `:waiters`.
    pub fn suffix(self) -> &'static str {
        match self {
            Companion::Fence => ":fence",
            Companion::Signal => ":signal",
            Companion::Waiters => ":waiters",
        }
    }
}

/// How many of `nodes` independent primaries must grant, extend or answer for a quorum
/// decision: a strict majority, `nodes / 2 + 1`.
pub fn quorum(nodes: u32) -> u32 {
    nodes / 2 + 1
}

/// Quorum mode: the clock-drift allowance of a lease of `ttl_ms`, in nanoseconds
/// (`ttl * QUORUM_DRIFT_PER_MILLE / 1000 + QUORUM_DRIFT_MS`). A TTL of at most this much can
/// never be valid, and is refused.
pub fn quorum_drift_ns(ttl_ms: u64) -> u64 {
    ttl_ms
        .saturating_mul(1_000 * QUORUM_DRIFT_PER_MILLE)
        .saturating_add(QUORUM_DRIFT_MS * 1_000_000)
}

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

/// A Redis key used as a lock (prefix included): not a companion key of some lock (its fence
/// counter, signal list or waiters' mark), so that no release, extend or acquire through the
/// lock API can delete, expire or overwrite a counter that fencing relies on never going
/// backwards, or the keys waiters rely on.
pub fn check_lock_key(redis_key: &str) -> Result<(), String> {
    if let Some(companion) = companion_of(redis_key) {
        let what = match companion {
            Companion::Fence => "fence counter",
            Companion::Signal => "signal list",
            Companion::Waiters => "waiters' mark",
        };
        return Err(format!(
            "the key {redis_key:?} is a lock's {what}, not a lock: use another key"
        ));
    }
    Ok(())
}

/// A companion key of a lock key, in the same Redis Cluster slot.
///
/// A key without a hash tag is hashed whole, so it becomes the companion's tag:
/// `job` -> `{job}:fence`. A key with a hash tag (`{...}` with something inside) keeps it, and
/// the suffix follows a second colon: `app:{job}` -> `app:{job}::fence`, `{job}` ->
/// `{job}::fence`. The naming is injective: the first form always has `}` before the suffix
/// and the second `:`, so distinct lock keys never share a companion key (`job` and `{job}`
/// have separate fence counters, signal lists and waiters' marks). A key that has no hash tag
/// but contains `}` cannot be wrapped and has no companions (no fencing, no wake-up on
/// release).
pub fn companion_key(redis_key: &str, companion: Companion) -> Result<String, String> {
    let suffix = companion.suffix();
    // Built by hand: `format!` costs several times as much, and this runs on every release.
    let mut key = String::with_capacity(redis_key.len() + suffix.len() + 2);
    if has_hash_tag(redis_key) {
        key.push_str(redis_key);
        key.push(':');
    } else if !redis_key.contains('}') {
        key.push('{');
        key.push_str(redis_key);
        key.push('}');
    } else {
        return Err(format!(
            "the key {redis_key:?} contains '}}' but no hash tag, so no {} key can share its \
             cluster slot; give it a hash tag such as {{name}}",
            &suffix[1..]
        ));
    }
    key.push_str(suffix);
    Ok(key)
}

/// The fence counter key of a lock key: [`companion_key`] with [`Companion::Fence`].
pub fn fence_key(redis_key: &str) -> Result<String, String> {
    companion_key(redis_key, Companion::Fence)
}

/// Which companion key `key` is, if it is what [`companion_key`] makes of some lock key.
pub fn companion_of(key: &str) -> Option<Companion> {
    Companion::ALL
        .into_iter()
        .find(|&c| companion_stem(key, c).is_some())
}

/// The lock key whose `companion` key `key` is, if [`companion_key`] makes `key` of one.
fn companion_stem(key: &str, companion: Companion) -> Option<&str> {
    let stem = key.strip_suffix(companion.suffix())?;
    if let Some(tagged) = stem.strip_suffix(':') {
        return has_hash_tag(tagged).then_some(tagged);
    }
    let inner = stem.strip_prefix('{')?.strip_suffix('}')?;
    (!inner.is_empty() && !inner.contains('}')).then_some(inner)
}

/// Whether `candidate` is the `companion` key of `lock_key` (what [`companion_key`] makes of
/// it), checked without allocating.
pub fn is_companion_key(candidate: &str, lock_key: &str, companion: Companion) -> bool {
    let Some(stem) = candidate.strip_suffix(companion.suffix()) else {
        return false;
    };
    if has_hash_tag(lock_key) {
        stem.strip_suffix(':') == Some(lock_key)
    } else {
        !lock_key.contains('}')
            && stem
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .is_some_and(|inner| inner == lock_key)
    }
}

/// Whether `key` is what [`fence_key`] makes of some lock key.
pub fn is_fence_counter(key: &str) -> bool {
    companion_of(key) == Some(Companion::Fence)
}

/// The lock key whose companion `key` is, for keys [`companion_key`] made from a key without a
/// hash tag (`{job}:signal` -> `job`); `None` for other keys. (A companion of a key with a hash
/// tag starts with that key itself.)
pub fn wrapped_lock_key(key: &str) -> Option<&str> {
    Companion::ALL
        .into_iter()
        .find_map(|c| companion_stem(key, c).filter(|stem| !has_hash_tag(stem)))
}

/// Whether Redis Cluster hashes only part of `key`: a `{` followed later by a `}` with at
/// least one byte between them.
pub fn has_hash_tag(key: &str) -> bool {
    match key.find('{') {
        Some(open) => matches!(key[open + 1..].find('}'), Some(len) if len > 0),
        None => false,
    }
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

/// The retry schedule: attempt 1 at once, then `base * 2^(n-2)` before attempt `n`, capped,
/// with optional full jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before attempt 2, in milliseconds.
    pub base_ms: u64,
    /// No delay is longer than this.
    pub max_ms: u64,
    /// Draw each delay uniformly from `[0, delay]` instead of using it as is.
    pub jitter: bool,
}

impl Backoff {
    /// The delay in milliseconds before attempt `attempt` (1-based). Attempt 1 has none.
    /// `random` is called only with jitter on, and only for a non-zero delay.
    pub fn delay_ms(&self, attempt: u32, random: impl FnOnce() -> u64) -> u64 {
        if attempt <= 1 {
            return 0;
        }
        let doublings = attempt - 2;
        let delay = if doublings >= 63 {
            u64::MAX
        } else {
            self.base_ms.saturating_mul(1u64 << doublings)
        }
        .min(self.max_ms);
        if self.jitter && delay > 0 {
            random() % (delay + 1)
        } else {
            delay
        }
    }

    /// The same schedule with every delay capped at `cap_ms` as well.
    pub fn capped(self, cap_ms: u64) -> Backoff {
        Backoff {
            max_ms: self.max_ms.min(cap_ms),
            ..self
        }
    }

    /// The longest total sleep of `retries` retries (attempts 2 to `retries + 1`), jitter
    /// aside.
    pub fn total_ms(&self, retries: u32) -> u64 {
        let exact = Backoff {
            jitter: false,
            ..*self
        };
        let growing = retries.min(64);
        let mut total = (2..growing.saturating_add(2))
            .map(|attempt| exact.delay_ms(attempt, || 0))
            .fold(0u64, u64::saturating_add);
        if retries > growing {
            total = total.saturating_add(self.max_ms.saturating_mul(u64::from(retries - growing)));
        }
        total
    }
}
