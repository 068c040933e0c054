//! The one error type of `dlock-host`, and why a kept-alive lock was lost.

use std::fmt;

/// Why a dlock operation failed.
///
/// The first group mirrors the component's `error` variant (`wit/lock.wit`); the Redis cases
/// keep the classification of `wit/redis.wit`, so [`Error::is_retryable`] tells whether the
/// same call may succeed later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `acquire` ran out of retries, or `wait_for_lock` reached its deadline, while the lock
    /// was held by someone else.
    #[error("the lock is held by someone else")]
    NotAcquired,
    /// The handle released the lock already (or, for `extend`, is releasing it): no Redis
    /// call was made.
    #[error("this handle released the lock already")]
    NotHeld,
    /// The lock's lease had run out: the key was gone when Redis was asked, or the handle's
    /// validity had run out (within the safety margin) before asking. Nothing was changed; the
    /// handle is lost.
    #[error("the lock had expired (its lease ran out)")]
    Expired,
    /// The key holds another owner's token: someone else took the lock after this handle's
    /// lease ran out. Nothing was changed; the handle is lost.
    #[error("the lock was taken over by another owner after its lease ran out")]
    TakenOver,
    /// The caller cancelled the call (dropped its future, or its cancellation completed): it
    /// ended early, took no lock and left the client usable.
    #[error("the call was cancelled")]
    Cancelled,
    /// A kept-alive lock could not be kept (see [`Lost`]); the work under it was
    /// stopped.
    #[error("the lock was lost while the work ran: {0}")]
    LockLost(Lost),
    /// Redis granted the lock, but the reply came after the lease had already run out, so the
    /// lock was given back: Redis is too slow for a TTL this short. A retry, or a longer TTL,
    /// may succeed.
    #[error(
        "the lock was granted only after its TTL had run out (Redis too slow for this TTL) and was given back"
    )]
    GrantedTooLate,
    /// The key holds a value of another type than a lock (a hash, a list, ...). Nothing was
    /// changed; waiting will not help.
    #[error("the key holds a non-lock value")]
    NotALock,
    /// An argument was refused before anything reached Redis.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Quorum mode: fewer than a majority of the primaries confirmed that the token is gone
    /// (the others refused or did not answer), so a majority may still hold it until its TTL
    /// ends; the text says how many confirmed. The handle is
    /// [`crate::HandleStatus::Releasing`]: retrying `release` is safe and completes once a
    /// majority confirms.
    #[error("the release is incomplete: {0}")]
    ReleaseIncomplete(String),
    /// Redis could not be reached, the connection broke, or the server is temporarily unable
    /// to serve. A retry may succeed.
    #[error("Redis is unavailable: {0}")]
    RedisUnavailable(String),
    /// Redis did not answer within the configured timeout; the outcome is unknown. A retry
    /// may succeed.
    #[error("Redis did not answer in time (the outcome is unknown)")]
    RedisTimeout,
    /// Redis refused the call (script error, wrong type, ACL, out of memory). A retry of the
    /// same call will fail again.
    #[error("Redis rejected the call: {0}")]
    RedisRejected(String),
    /// The host's policy refused a call the component tried to make.
    #[error("refused by the host's policy: {0}")]
    Denied(String),
    /// The first connection to Redis failed.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The Redis URL, without its password.
        url: String,
        /// What went wrong.
        #[source]
        source: redis::RedisError,
    },
    /// The component could not be compiled, linked or instantiated.
    #[error("cannot load the lock component: {0:#}")]
    Component(wasmtime::Error),
    /// The component trapped or ran past its time budget. The client that ran it is
    /// unusable from now on (see [`Error::Poisoned`]); other clients are unaffected.
    #[error("the lock component failed: {0:#}")]
    Trap(wasmtime::Error),
    /// A plugin could not be composed with the lock component (see `compose`).
    #[error("cannot compose the plugin with the lock component: {0}")]
    Compose(String),
    /// The client was poisoned by an earlier trap or an interrupted call; create a new one.
    #[error("this client is unusable after an earlier component failure; create a new client")]
    Poisoned,
}

impl Error {
    /// True when the same call may succeed if retried later: Redis was unavailable, did not
    /// answer in time, answered too late for the lease, or too few primaries confirmed a
    /// release.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RedisUnavailable(_)
                | Error::RedisTimeout
                | Error::GrantedTooLate
                | Error::ReleaseIncomplete(_)
        )
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a kept-alive lock was given up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lost {
    /// An extend found the key gone: the lease had run out.
    Expired,
    /// An extend found another owner's token: someone else took the lock.
    TakenOver,
    /// An extend failed (Redis slow, unreachable or refusing; the error's text) and the lock's
    /// remaining validity does not outlast the next try (a period plus a command timeout).
    NotKept(String),
    /// No extend renewed the lock and less than the stop margin of its validity is left (an
    /// extend hanging on a silent Redis).
    RunningOut,
    /// The maximum hold was reached; the lease was still valid.
    MaxHold,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Expired => f.write_str("the lock expired"),
            Lost::TakenOver => f.write_str("the lock was taken over by another owner"),
            Lost::NotKept(e) => write!(
                f,
                "could not extend the lock ({e}) and its validity is running out"
            ),
            Lost::RunningOut => {
                f.write_str("no extend succeeded and the lock's validity is running out")
            }
            Lost::MaxHold => f.write_str("the maximum hold was reached"),
        }
    }
}

impl Lost {
    /// The `reason` label of the `dlock.lock.lost` metric.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Lost::Expired => "expired",
            Lost::TakenOver => "taken_over",
            Lost::MaxHold => "max_hold",
            Lost::NotKept(_) | Lost::RunningOut => "not_kept",
        }
    }
}
