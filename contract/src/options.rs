//! The lock options' defaults, the retry schedule, and quorum mode's arithmetic.

/// Quorum mode (Redlock over independent primaries): the allowance for clock drift between
/// the client and the primaries, per mille of the TTL. A lease granted by a majority is
/// counted valid for `ttl - elapsed - drift`, where `drift` is this share of the TTL plus
/// [`QUORUM_DRIFT_MS`] (node-redlock's and rslock's 1 % + 2 ms).
pub const QUORUM_DRIFT_PER_MILLE: u64 = 10;
/// Quorum mode: the fixed part of the clock-drift allowance, in milliseconds.
pub const QUORUM_DRIFT_MS: u64 = 2;
/// Quorum mode: the most independent primaries (at least 2). Redlock is run with 3 or 5; more
/// only adds latency and Redis calls.
pub const MAX_QUORUM_NODES: usize = 9;

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
