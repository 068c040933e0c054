//! What the lock logic needs from the outside world: clocks, sleep, randomness and Redis.
//!
//! In the component these come from WASI and the host's `redis-eval` (see `component.rs`); the
//! native unit tests provide a virtual clock and a recorded sequence of `redis-eval` replies, so
//! the retry, backoff and state-machine logic is tested without wasm.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use crate::bindings::dlock::lock::redis::{RedisError, Value, Wake};
use crate::scripts::Op;

/// The replies of one script run on every primary (`eval_all`): one per primary, in a fixed
/// order; the outer error is the host refusing the call before any primary saw it.
pub type Round = Result<Vec<Result<Value, RedisError>>, RedisError>;

/// The component's view of its environment.
pub trait Platform {
    /// Monotonic time in nanoseconds (arbitrary origin).
    fn monotonic_ns(&self) -> u64;
    /// The wall-clock time, in milliseconds since the Unix epoch, of the monotonic reading
    /// `monotonic_ns`. (In the component: the wall clock read once when the client was created,
    /// advanced by the monotonic clock since; one clock read per operation instead of two.)
    fn wall_ms_at(&self, monotonic_ns: u64) -> u64;
    /// Blocks (in the component: yields to the host) for `ns` nanoseconds.
    fn sleep_ns(&self, ns: u64);
    /// A uniformly random `u64`.
    fn random_u64(&self) -> u64;
    /// A fresh lock token: a UUID v4 in its hyphenated lowercase form.
    fn new_token(&self) -> String;
    /// Runs one of the component's scripts in Redis.
    fn eval(&self, op: Op, keys: &[String], args: &[String]) -> Result<Value, RedisError>;
    /// Pauses up to `timeout_ms` between two attempts on the lock key `redis_key`; with
    /// `listen`, until a release is signalled (the host's `wait-for-release`).
    fn wait_for_release(
        &self,
        redis_key: &str,
        timeout_ms: u64,
        listen: bool,
    ) -> Result<Wake, RedisError>;
    /// How many independent primaries the host runs scripts on: 1 for one store (a primary,
    /// Sentinel, a Cluster), where `eval` is used; more in quorum mode, where `eval_all` is.
    fn nodes(&self) -> u32;
    /// Runs one of the component's scripts on every primary at once.
    fn eval_all(&self, op: Op, keys: &[String], args: &[String]) -> Round;
}

/// Formats 16 random bytes as a UUID v4 (version and variant bits set).
pub fn uuid_v4(bytes: [u8; 16]) -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v4_sets_version_and_variant() {
        let t = uuid_v4([0xff; 16]);
        assert_eq!(t, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let t = uuid_v4([0; 16]);
        assert_eq!(t, "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn tokens_have_the_contracts_form_of_the_components_own() {
        for bytes in [[0; 16], [7; 16], [0xff; 16]] {
            assert!(dlock_contract::is_uuid_v4(&uuid_v4(bytes)), "{bytes:?}");
        }
    }
}
