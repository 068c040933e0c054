//! The embedding API's plain data types, and their conversions to and from the WIT types.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bindings::{
    WitLockError, WitLockInfo, WitLockOptions, WitLockState, WitLockStatus, WitRedisError,
};
use crate::error::{Error, Result};

/// How a client acquires locks. `Default` gives the documented defaults, the same as the
/// component's `default-options`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOptions {
    /// How many times `acquire` retries after its first attempt. Default 5.
    pub retry_count: u32,
    /// The delay before the second attempt; it doubles for every further attempt (100 ms,
    /// 200 ms, 400 ms, ... by default). Millisecond precision; at most `u32::MAX` ms.
    pub retry_delay: Duration,
    /// No single delay of `acquire` is longer than this. Default 5 s. `wait_for_lock` also caps
    /// its delays at 1 s.
    pub max_retry_delay: Duration,
    /// Full jitter: draw each delay uniformly from zero to the computed delay. Default off.
    pub jitter: bool,
    /// Prepended to every key: the Redis key is `key_prefix + key`. Default empty.
    pub key_prefix: String,
    /// Give every acquisition a fencing token, strictly increasing per key. Default off.
    pub fencing: bool,
    /// `extend` refuses (and the handle is lost) when this little validity or less is left.
    /// Default zero: refuse once validity has run out.
    pub safety_margin: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            retry_count: 5,
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(5),
            jitter: false,
            key_prefix: String::new(),
            fencing: false,
            safety_margin: Duration::ZERO,
        }
    }
}

fn millis_u32(what: &str, d: Duration) -> Result<u32> {
    u32::try_from(d.as_millis()).map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} of {d:?} is over the limit of {} ms",
            u32::MAX
        ))
    })
}

/// A duration in whole milliseconds for the component, saturating (the component rejects
/// anything past its documented maximum).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LockOptions {
    pub(crate) fn to_wit(&self) -> Result<WitLockOptions> {
        Ok(WitLockOptions {
            retry_count: self.retry_count,
            retry_delay_ms: millis_u32("retry_delay", self.retry_delay)?,
            max_retry_delay_ms: millis_u32("max_retry_delay", self.max_retry_delay)?,
            jitter: self.jitter,
            key_prefix: self.key_prefix.clone(),
            fencing: self.fencing,
            safety_margin_ms: millis(self.safety_margin),
        })
    }

    pub(crate) fn from_wit(o: WitLockOptions) -> Self {
        LockOptions {
            retry_count: o.retry_count,
            retry_delay: Duration::from_millis(o.retry_delay_ms.into()),
            max_retry_delay: Duration::from_millis(o.max_retry_delay_ms.into()),
            jitter: o.jitter,
            key_prefix: o.key_prefix,
            fencing: o.fencing,
            safety_margin: Duration::from_millis(o.safety_margin_ms),
        }
    }

    /// Longest `acquire` can sleep in total between its attempts.
    pub(crate) fn total_backoff(&self) -> Duration {
        let max = self.max_retry_delay;
        let doubling = self.retry_count.min(32);
        let growing = (0..doubling)
            .map(|n| self.retry_delay.checked_mul(1 << n).unwrap_or(max).min(max))
            .fold(Duration::ZERO, Duration::saturating_add);
        growing.saturating_add(max.saturating_mul(self.retry_count - doubling))
    }
}

/// What a handle knows about its lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// The key as given (without the client's prefix).
    pub key: String,
    /// The token stored in Redis while the handle owns the lock (a UUID v4, or the token
    /// given to `attach`).
    pub token: String,
    /// The fencing token of this acquisition, when the client has fencing on.
    pub fence: Option<u64>,
    /// When the acquiring call was sent (wall clock, for display).
    pub acquired_at: SystemTime,
    /// When the lease ends, counted from the last acquire or extend (wall clock, for display).
    pub expires_at: SystemTime,
    /// When the handle's validity ends on this process's monotonic clock, counted from when
    /// the last acquire or extend was sent: what `is_held` compares against.
    pub valid_until: Instant,
    /// Same as [`crate::LockHandle::is_held`] at the time of the call.
    pub is_held: bool,
    /// Where the handle stands.
    pub status: LockStatus,
}

/// Where a handle stands, as it knows without asking Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockStatus {
    /// Acquired and valid.
    Held,
    /// Acquired, but its validity ran out (not extended in time).
    Expired,
    /// Released by this handle.
    Released,
    /// Gone: Redis said the key no longer holds the token (expired or taken over), or an
    /// extend was refused for want of validity.
    Lost,
    /// Made by `attach`; validity unknown until the first successful extend.
    Attached,
    /// A release was sent but its outcome is unknown (Redis timed out or the connection
    /// broke): the handle no longer claims the lock; only `release` may be retried.
    Releasing,
}

impl From<WitLockStatus> for LockStatus {
    fn from(s: WitLockStatus) -> Self {
        match s {
            WitLockStatus::Held => LockStatus::Held,
            WitLockStatus::Expired => LockStatus::Expired,
            WitLockStatus::Released => LockStatus::Released,
            WitLockStatus::Lost => LockStatus::Lost,
            WitLockStatus::Attached => LockStatus::Attached,
            WitLockStatus::Releasing => LockStatus::Releasing,
        }
    }
}

impl From<WitLockInfo> for LockInfo {
    fn from(i: WitLockInfo) -> Self {
        LockInfo {
            key: i.key,
            token: i.token,
            fence: i.fence,
            acquired_at: UNIX_EPOCH + Duration::from_millis(i.acquired_at_ms),
            expires_at: UNIX_EPOCH + Duration::from_millis(i.expires_at_ms),
            valid_until: crate::clock::instant_at(i.valid_until),
            is_held: i.is_held,
            status: i.status.into(),
        }
    }
}

/// What Redis says about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// No such key.
    Unlocked,
    /// The key exists and expires after this long.
    Expiring(Duration),
    /// The key exists and has no expiry (not set by a client of the lock convention).
    Persistent,
}

impl From<WitLockState> for LockState {
    fn from(s: WitLockState) -> Self {
        match s {
            WitLockState::Unlocked => LockState::Unlocked,
            WitLockState::Expiring(ms) => LockState::Expiring(Duration::from_millis(ms)),
            WitLockState::Persistent => LockState::Persistent,
        }
    }
}

impl From<WitLockError> for Error {
    fn from(e: WitLockError) -> Self {
        match e {
            WitLockError::NotAcquired => Error::NotAcquired,
            WitLockError::NotHeld => Error::NotHeld,
            WitLockError::GrantedTooLate => Error::GrantedTooLate,
            WitLockError::NotALock => Error::NotALock,
            WitLockError::InvalidArgument(m) => Error::InvalidArgument(m),
            WitLockError::Redis(e) => e.into(),
        }
    }
}

impl From<WitRedisError> for Error {
    fn from(e: WitRedisError) -> Self {
        match e {
            WitRedisError::Unavailable(m) => Error::RedisUnavailable(m),
            WitRedisError::Timeout => Error::RedisTimeout,
            WitRedisError::Rejected(m) => Error::RedisRejected(m),
            WitRedisError::Denied(m) => Error::Denied(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_backoff_follows_the_capped_schedule() {
        let o = LockOptions::default();
        // 100 + 200 + 400 + 800 + 1600
        assert_eq!(o.total_backoff(), Duration::from_millis(3100));
        let o = LockOptions {
            retry_count: u32::MAX,
            ..LockOptions::default()
        };
        let five_s = Duration::from_secs(5);
        assert_eq!(
            o.total_backoff(),
            // 100 ms doubling to 3.2 s, then the 5 s cap for every other retry.
            Duration::from_millis(6300) + five_s * (u32::MAX - 6)
        );
    }

    #[test]
    fn options_over_u32_milliseconds_are_refused() {
        let o = LockOptions {
            retry_delay: Duration::from_secs(u64::MAX),
            ..LockOptions::default()
        };
        assert!(matches!(o.to_wit(), Err(Error::InvalidArgument(m)) if m.contains("retry_delay")));
    }
}
