//! The embedding API's plain data types: options, what a handle knows, what Redis says of a
//! key (`convert.rs` maps them to and from the WIT's).

use std::time::{Duration, Instant, SystemTime};

use crate::contract;

/// How a client acquires locks. `Default` gives the contract's defaults
/// ([`contract::DEFAULT_RETRY_COUNT`], ...), the same as the component's `default-options`; the
/// `with_*` methods change one field each.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// How many times `acquire` retries after its first attempt. Default
    /// [`contract::DEFAULT_RETRY_COUNT`].
    pub retry_count: u32,
    /// The delay before the second attempt; it doubles for every further attempt. Default
    /// [`contract::DEFAULT_RETRY_DELAY_MS`]. Millisecond precision; at most `u32::MAX` ms.
    pub retry_delay: Duration,
    /// No single delay of `acquire` is longer than this. Default
    /// [`contract::DEFAULT_MAX_RETRY_DELAY_MS`]. `wait_for_lock` also caps its delays at
    /// [`contract::WAIT_MAX_DELAY_MS`].
    pub max_retry_delay: Duration,
    /// Full jitter: draw each delay uniformly from zero to the computed delay. Default
    /// [`contract::DEFAULT_JITTER`].
    pub jitter: bool,
    /// Prepended to every key: the Redis key is `key_prefix + key`. Default empty.
    pub key_prefix: String,
    /// Give every acquisition a fencing token, strictly increasing per key. Default
    /// [`contract::DEFAULT_FENCING`].
    pub fencing: bool,
    /// `extend` refuses (and the handle is lost) when this little validity or less is left.
    /// Default [`contract::DEFAULT_SAFETY_MARGIN_MS`] (zero: refuse once validity has run out).
    pub safety_margin: Duration,
    /// Which waits between attempts end as soon as the holder releases the lock. Default
    /// [`WakeOnRelease::WaitForLock`].
    pub wake_on_release: WakeOnRelease,
}

/// Which waits between two acquire attempts end early, when the holder releases the lock.
///
/// dlock's release signals the release, in the same atomic step, to the clients waiting on the
/// key; the first of them blocked wakes and tries again at once instead of sleeping out its
/// backoff delay (at most one blocked waiter per release: no thundering herd; the signal is a
/// hint, and the woken waiter may find the lock taken again). A wait never lasts longer than
/// the delay polling would sleep, nor past the holder's expiry, so a crashed holder, or a
/// client of the convention that releases without signalling (redis-py, redsync), costs at
/// most the polling delay. Each waiting client holds one of its policy's blocking connections
/// while it waits ([`crate::Policy::with_max_blocking_connections`]); when none is free it
/// polls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WakeOnRelease {
    /// No wait ends early: polling with backoff.
    Never,
    /// `wait_for_lock`'s waits end on a release; `acquire` keeps its exact schedule.
    #[default]
    WaitForLock,
    /// `wait_for_lock`'s and `acquire`'s waits end on a release (a retry a release woke
    /// counts as one of `acquire`'s retries).
    Always,
}

/// What [`crate::LockHandle::release`] found in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseOutcome {
    /// The key held the handle's token and was deleted. (After a release whose outcome was
    /// unknown, a retry that finds the key gone also reports this: the earlier attempt may
    /// have deleted it.)
    Released,
    /// The key was gone: the lease had run out (or someone deleted the key). Nothing was
    /// changed; the lock was not held for as long as the handle assumed.
    Expired,
    /// The key holds another owner's token (or another value): the lease ran out and someone
    /// else took the lock. Nothing was changed.
    TakenOver,
}

impl ReleaseOutcome {
    /// The outcome's name, as metrics label it: `released`, `expired`, `taken_over`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseOutcome::Released => "released",
            ReleaseOutcome::Expired => "expired",
            ReleaseOutcome::TakenOver => "taken_over",
        }
    }
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            retry_count: contract::DEFAULT_RETRY_COUNT,
            retry_delay: Duration::from_millis(contract::DEFAULT_RETRY_DELAY_MS.into()),
            max_retry_delay: Duration::from_millis(contract::DEFAULT_MAX_RETRY_DELAY_MS.into()),
            jitter: contract::DEFAULT_JITTER,
            key_prefix: String::new(),
            fencing: contract::DEFAULT_FENCING,
            safety_margin: Duration::from_millis(contract::DEFAULT_SAFETY_MARGIN_MS),
            wake_on_release: WakeOnRelease::default(),
        }
    }
}

impl LockOptions {
    /// See [`LockOptions::retry_count`].
    pub fn with_retry_count(mut self, retries: u32) -> Self {
        self.retry_count = retries;
        self
    }

    /// See [`LockOptions::retry_delay`].
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// See [`LockOptions::max_retry_delay`].
    pub fn with_max_retry_delay(mut self, delay: Duration) -> Self {
        self.max_retry_delay = delay;
        self
    }

    /// See [`LockOptions::jitter`].
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// See [`LockOptions::key_prefix`].
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// See [`LockOptions::fencing`].
    pub fn with_fencing(mut self, fencing: bool) -> Self {
        self.fencing = fencing;
        self
    }

    /// See [`LockOptions::safety_margin`].
    pub fn with_safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = margin;
        self
    }

    /// See [`LockOptions::wake_on_release`].
    pub fn with_wake_on_release(mut self, wake: WakeOnRelease) -> Self {
        self.wake_on_release = wake;
        self
    }
}

/// A duration in whole milliseconds for the component, saturating (the component rejects
/// anything past its documented maximum).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LockOptions {
    /// Longest `acquire` can sleep in total between its attempts.
    pub(crate) fn total_backoff(&self) -> Duration {
        let schedule = contract::Backoff {
            base_ms: millis(self.retry_delay),
            max_ms: millis(self.max_retry_delay),
            jitter: self.jitter,
        };
        Duration::from_millis(schedule.total_ms(self.retry_count))
    }
}

/// What a handle knows about its lock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Where the handle stands.
    pub status: HandleStatus,
}

impl LockInfo {
    /// This snapshot as of `now`: a held lock whose validity has run out is `Expired`.
    pub(crate) fn seen_at(mut self, now: Instant) -> Self {
        if self.status == HandleStatus::Held && now >= self.valid_until {
            self.status = HandleStatus::Expired;
        }
        self
    }
}

/// Where a handle stands, as it knows without asking Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleStatus {
    /// Acquired and valid.
    Held,
    /// Acquired, but its validity ran out (not extended in time).
    Expired,
    /// Released by this handle.
    Released,
    /// A release was sent but its outcome is unknown (Redis timed out or the connection
    /// broke): the handle no longer claims the lock; only `release` may be retried.
    Releasing,
    /// Gone: Redis said the key no longer holds the token (expired or taken over), or an
    /// extend was refused for want of validity.
    Lost,
    /// Made by `attach`; validity unknown until the first successful extend.
    Attached,
}

/// What Redis says about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyState {
    /// No such key.
    Unlocked,
    /// The key exists and expires after this long.
    Expiring(Duration),
    /// The key exists and has no expiry (not set by a client of the lock convention).
    Persistent,
}
