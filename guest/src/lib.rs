//! dlock's lock logic as a WebAssembly component.
//!
//! Built for `wasm32-wasip2` by `tests/build.rs` (and `scripts/bundle` copies the result to
//! `host/bundle/`, which the host embeds). The component
//! exports `dlock:lock/lock` (see `wit/lock.wit`) and reaches Redis only through the imported
//! `dlock:lock/redis.redis-eval`. Everything here except `component.rs` also builds natively,
//! so the retry, backoff and lease logic is unit-tested with `cargo test`.
//!
//! In the component the crate is `no_std` (with `alloc`): without Rust's standard library the
//! component imports nothing but `dlock:lock/redis`, WASI clocks, random and poll, so a host can
//! give it exactly that and nothing more.

#![cfg_attr(target_family = "wasm", no_std)]

extern crate alloc;

/// The limits, defaults, key naming and script shapes the component shares with its hosts.
pub use dlock_contract as contract;

#[allow(missing_docs, reason = "generated bindings; the WIT carries the docs")]
pub mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "dlock", generate_all });
}

#[cfg(target_family = "wasm")]
mod component;
pub mod lock;
pub mod platform;
pub mod quorum;
pub mod scripts;
pub mod validate;

#[cfg(test)]
mod tests;
