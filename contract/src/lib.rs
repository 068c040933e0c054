//! What dlock's lock component and its hosts agree on, stated once.
//!
//! dlock runs its lock logic as a sandboxed WebAssembly component (`dlock-guest`) that reaches
//! Redis only through Lua scripts a host runs for it (`dlock-host` under wasmtime, `@dlock/node`
//! under Node). This crate is the one home of every fact they share:
//!
//! - the WIT package version ([`WIT_VERSION`], [`REDIS_INTERFACE`]);
//! - the component's scripts and the argument shapes each is written for ([`Script`],
//!   [`Shape`]);
//! - how a lock key's companion keys (fence counter, signal list, waiters' mark) are named
//!   ([`companion_key`]);
//! - the limits on keys, prefixes, tokens and durations, and their checks ([`check_key`], ...);
//! - the lock options' defaults and the retry schedule ([`DEFAULT_RETRY_COUNT`], [`Backoff`]);
//! - the host policy's defaults ([`policy`]).
//!
//! The component enforces the limits; the hosts apply the same rules before anything reaches
//! the component or Redis. The Node package's constants are generated from this crate (the
//! repository's test suite fails while they are stale). The crate is `no_std` and uses only
//! `core` and `alloc`.

#![no_std]

extern crate alloc;

mod companion;
mod limits;
mod options;
pub mod policy;
mod scripts;

pub use companion::*;
pub use limits::*;
pub use options::*;
pub use scripts::*;

/// The WIT package version, as a literal (for `concat!`).
macro_rules! wit_version {
    () => {
        "0.4.0"
    };
}

/// The version of the `dlock:lock` WIT package (`wit/world.wit`) this crate states the contract
/// of. A component and a host agree only when they were built against the same version.
pub const WIT_VERSION: &str = wit_version!();
/// The WIT package with its version: `dlock:lock@` [`WIT_VERSION`].
pub const WIT_PACKAGE: &str = concat!("dlock:lock@", wit_version!());
/// The interface a host provides and the component imports, with the package version, as
/// components name it.
pub const REDIS_INTERFACE: &str = concat!("dlock:lock/redis@", wit_version!());
/// The interface the component exports, with the package version.
pub const LOCK_INTERFACE: &str = concat!("dlock:lock/lock@", wit_version!());

#[cfg(test)]
extern crate std;
#[cfg(test)]
mod tests;
