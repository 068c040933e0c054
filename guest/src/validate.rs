//! Argument checks made before anything reaches Redis: the rules of `dlock-contract`, with their
//! failures as the lock API's `invalid-argument`.

use alloc::string::String;

use crate::bindings::exports::dlock::lock::lock::Error;
use crate::contract;

fn invalid(check: Result<(), String>) -> Result<(), Error> {
    check.map_err(Error::InvalidArgument)
}

/// See [`contract::check_key`].
pub fn key(key: &str) -> Result<(), Error> {
    invalid(contract::check_key(key))
}

/// See [`contract::check_prefix`].
pub fn prefix(prefix: &str) -> Result<(), Error> {
    invalid(contract::check_prefix(prefix))
}

/// See [`contract::check_token`].
pub fn token(token: &str) -> Result<(), Error> {
    invalid(contract::check_token(token))
}

/// See [`contract::check_duration_ms`].
pub fn duration_ms(what: &str, ms: u64, allow_zero: bool) -> Result<(), Error> {
    invalid(contract::check_duration_ms(what, ms, allow_zero))
}

/// See [`contract::check_permits`].
pub fn permits(limit: u32, count: u32) -> Result<(), Error> {
    invalid(contract::check_permits(limit, count))
}

/// See [`contract::check_lock_key`].
pub fn lock_key(redis_key: &str) -> Result<(), Error> {
    invalid(contract::check_lock_key(redis_key))
}

/// See [`contract::fence_key`].
pub fn fence_key(redis_key: &str) -> Result<String, Error> {
    contract::fence_key(redis_key).map_err(Error::InvalidArgument)
}
