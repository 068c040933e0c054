//! The API's data types to and from the WIT's, for both sets of generated bindings: the lock
//! component's exports (what a `Client` calls) and the `lock` interface provided to plugins
//! (what a plugin calls). The WIT types are the same; `bindgen!` makes a Rust type for each side.

use std::time::Duration;

pub(crate) use crate::error::{Error, Result};
pub(crate) use crate::options::{
    HandleStatus, KeyState, LockInfo, LockOptions, ReleaseOutcome, WakeOnRelease, millis,
};

pub(crate) fn millis_u32(what: &str, d: Duration) -> Result<u32> {
    u32::try_from(d.as_millis()).map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} of {d:?} is over the limit of {} ms",
            u32::MAX
        ))
    })
}

/// Milliseconds since the Unix epoch of `t` (0 before it).
pub(crate) fn epoch_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, millis)
}

/// Conversions between the API's types and the WIT types of one `bindgen!` module `$lock`
/// (the `lock` interface) with its redis error type `$redis_error`. A macro, not functions:
/// it writes the same `From` impls for two sets of distinct generated types, which share no
/// trait a generic function could name (the exports' types cannot stand in for the imports'
/// through `bindgen!`'s `with`, which remaps an imported interface as a whole).
macro_rules! wit_conversions {
    ($lock:path, $redis_error:path) => {
        const _: () = {
            use std::time::{Duration, UNIX_EPOCH};

            use $crate::convert::{
                Error, HandleStatus, KeyState, LockInfo, LockOptions, ReleaseOutcome, Result,
                WakeOnRelease, epoch_ms, millis, millis_u32,
            };
            use $lock as wit;
            use $redis_error as WitRedisError;

            impl TryFrom<&LockOptions> for wit::LockOptions {
                type Error = Error;

                fn try_from(o: &LockOptions) -> Result<Self> {
                    Ok(wit::LockOptions {
                        retry_count: o.retry_count,
                        retry_delay_ms: millis_u32("retry_delay", o.retry_delay)?,
                        max_retry_delay_ms: millis_u32("max_retry_delay", o.max_retry_delay)?,
                        jitter: o.jitter,
                        key_prefix: o.key_prefix.clone(),
                        fencing: o.fencing,
                        safety_margin_ms: millis(o.safety_margin),
                        wake_on_release: o.wake_on_release.into(),
                    })
                }
            }

            impl From<WakeOnRelease> for wit::WakeOnRelease {
                fn from(w: WakeOnRelease) -> Self {
                    match w {
                        WakeOnRelease::Never => wit::WakeOnRelease::Never,
                        WakeOnRelease::WaitForLock => wit::WakeOnRelease::WaitForLock,
                        WakeOnRelease::Always => wit::WakeOnRelease::Always,
                    }
                }
            }

            impl From<wit::WakeOnRelease> for WakeOnRelease {
                fn from(w: wit::WakeOnRelease) -> Self {
                    match w {
                        wit::WakeOnRelease::Never => WakeOnRelease::Never,
                        wit::WakeOnRelease::WaitForLock => WakeOnRelease::WaitForLock,
                        wit::WakeOnRelease::Always => WakeOnRelease::Always,
                    }
                }
            }

            impl From<ReleaseOutcome> for wit::ReleaseOutcome {
                fn from(o: ReleaseOutcome) -> Self {
                    match o {
                        ReleaseOutcome::Released => wit::ReleaseOutcome::Released,
                        ReleaseOutcome::Expired => wit::ReleaseOutcome::Expired,
                        ReleaseOutcome::TakenOver => wit::ReleaseOutcome::TakenOver,
                    }
                }
            }

            impl From<wit::ReleaseOutcome> for ReleaseOutcome {
                fn from(o: wit::ReleaseOutcome) -> Self {
                    match o {
                        wit::ReleaseOutcome::Released => ReleaseOutcome::Released,
                        wit::ReleaseOutcome::Expired => ReleaseOutcome::Expired,
                        wit::ReleaseOutcome::TakenOver => ReleaseOutcome::TakenOver,
                    }
                }
            }

            impl From<wit::LockOptions> for LockOptions {
                fn from(o: wit::LockOptions) -> Self {
                    LockOptions {
                        retry_count: o.retry_count,
                        retry_delay: Duration::from_millis(o.retry_delay_ms.into()),
                        max_retry_delay: Duration::from_millis(o.max_retry_delay_ms.into()),
                        jitter: o.jitter,
                        key_prefix: o.key_prefix,
                        fencing: o.fencing,
                        safety_margin: Duration::from_millis(o.safety_margin_ms),
                        wake_on_release: o.wake_on_release.into(),
                    }
                }
            }

            impl From<wit::HandleStatus> for HandleStatus {
                fn from(s: wit::HandleStatus) -> Self {
                    match s {
                        wit::HandleStatus::Held => HandleStatus::Held,
                        wit::HandleStatus::Expired => HandleStatus::Expired,
                        wit::HandleStatus::Released => HandleStatus::Released,
                        wit::HandleStatus::Releasing => HandleStatus::Releasing,
                        wit::HandleStatus::Lost => HandleStatus::Lost,
                        wit::HandleStatus::Attached => HandleStatus::Attached,
                    }
                }
            }

            impl From<HandleStatus> for wit::HandleStatus {
                fn from(s: HandleStatus) -> Self {
                    match s {
                        HandleStatus::Held => wit::HandleStatus::Held,
                        HandleStatus::Expired => wit::HandleStatus::Expired,
                        HandleStatus::Released => wit::HandleStatus::Released,
                        HandleStatus::Releasing => wit::HandleStatus::Releasing,
                        HandleStatus::Lost => wit::HandleStatus::Lost,
                        HandleStatus::Attached => wit::HandleStatus::Attached,
                    }
                }
            }

            impl From<wit::LockInfo> for LockInfo {
                fn from(i: wit::LockInfo) -> Self {
                    LockInfo {
                        key: i.key,
                        token: i.token,
                        fence: i.fence,
                        acquired_at: UNIX_EPOCH + Duration::from_millis(i.acquired_at_ms),
                        expires_at: UNIX_EPOCH + Duration::from_millis(i.expires_at_ms),
                        valid_until: crate::clock::instant_at(i.valid_until_ns),
                        status: i.status.into(),
                    }
                }
            }

            impl From<LockInfo> for wit::LockInfo {
                fn from(i: LockInfo) -> Self {
                    wit::LockInfo {
                        key: i.key,
                        token: i.token,
                        fence: i.fence,
                        acquired_at_ms: epoch_ms(i.acquired_at),
                        expires_at_ms: epoch_ms(i.expires_at),
                        valid_until_ns: crate::clock::reading_at(i.valid_until),
                        status: i.status.into(),
                    }
                }
            }

            impl From<wit::KeyState> for KeyState {
                fn from(s: wit::KeyState) -> Self {
                    match s {
                        wit::KeyState::Unlocked => KeyState::Unlocked,
                        wit::KeyState::Expiring(ms) => {
                            KeyState::Expiring(Duration::from_millis(ms))
                        }
                        wit::KeyState::Persistent => KeyState::Persistent,
                    }
                }
            }

            impl From<KeyState> for wit::KeyState {
                fn from(s: KeyState) -> Self {
                    match s {
                        KeyState::Unlocked => wit::KeyState::Unlocked,
                        KeyState::Expiring(left) => wit::KeyState::Expiring(millis(left)),
                        KeyState::Persistent => wit::KeyState::Persistent,
                    }
                }
            }

            impl From<wit::Error> for Error {
                fn from(e: wit::Error) -> Self {
                    match e {
                        wit::Error::NotAcquired => Error::NotAcquired,
                        wit::Error::NotHeld => Error::NotHeld,
                        wit::Error::Expired => Error::Expired,
                        wit::Error::TakenOver => Error::TakenOver,
                        wit::Error::Cancelled => Error::Cancelled,
                        wit::Error::GrantedTooLate => Error::GrantedTooLate,
                        wit::Error::NotALock => Error::NotALock,
                        wit::Error::InvalidArgument(m) => Error::InvalidArgument(m),
                        wit::Error::ReleaseIncomplete(m) => Error::ReleaseIncomplete(m),
                        wit::Error::Redis(e) => e.into(),
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

            /// What a plugin sees of a failure: the lock API's errors as they are, Redis's
            /// classified, and failures of the host itself (the lock component trapped, the
            /// client is poisoned, Redis could not be connected to) as `rejected`: the same
            /// call will not succeed (a new client may).
            impl From<Error> for wit::Error {
                fn from(e: Error) -> Self {
                    match e {
                        Error::NotAcquired => wit::Error::NotAcquired,
                        Error::NotHeld => wit::Error::NotHeld,
                        Error::Expired => wit::Error::Expired,
                        Error::TakenOver => wit::Error::TakenOver,
                        Error::Cancelled => wit::Error::Cancelled,
                        Error::GrantedTooLate => wit::Error::GrantedTooLate,
                        Error::NotALock => wit::Error::NotALock,
                        Error::InvalidArgument(m) => wit::Error::InvalidArgument(m),
                        Error::ReleaseIncomplete(m) => wit::Error::ReleaseIncomplete(m),
                        Error::RedisUnavailable(m) => {
                            wit::Error::Redis(WitRedisError::Unavailable(m))
                        }
                        Error::RedisTimeout => wit::Error::Redis(WitRedisError::Timeout),
                        Error::RedisRejected(m) => wit::Error::Redis(WitRedisError::Rejected(m)),
                        Error::Denied(m) => wit::Error::Redis(WitRedisError::Denied(m)),
                        other => wit::Error::Redis(WitRedisError::Rejected(other.to_string())),
                    }
                }
            }
        };
    };
}

pub(crate) use wit_conversions;

wit_conversions!(
    crate::bindings::exports::dlock::lock::lock,
    crate::bindings::dlock::lock::types::RedisError
);

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::bindings::exports::dlock::lock::lock as wit;

    #[test]
    fn options_over_u32_milliseconds_are_refused() {
        let o = LockOptions::default().with_retry_delay(Duration::from_secs(u64::MAX));
        assert!(matches!(
            wit::LockOptions::try_from(&o),
            Err(Error::InvalidArgument(m)) if m.contains("retry_delay")
        ));
    }

    #[test]
    fn options_and_infos_cross_unchanged_both_ways() {
        let o = LockOptions::default()
            .with_key_prefix("app:")
            .with_fencing(true)
            .with_safety_margin(Duration::from_millis(7))
            .with_wake_on_release(WakeOnRelease::Always);
        let back = LockOptions::from(wit::LockOptions::try_from(&o).unwrap());
        assert_eq!(back, o);
        let info = LockInfo {
            key: "k".into(),
            token: "t".into(),
            fence: Some(3),
            acquired_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            expires_at: UNIX_EPOCH + Duration::from_millis(1_700_000_030_000),
            valid_until: crate::clock::instant_at(5_000_000_000),
            status: HandleStatus::Releasing,
        };
        assert_eq!(LockInfo::from(wit::LockInfo::from(info.clone())), info);
    }
}
