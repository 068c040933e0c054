//! dlock: a Redis distributed lock whose logic runs as a sandboxed WebAssembly component.
//!
//! The lock logic (retries, backoff, the lease state machine and the Lua scripts) lives in a
//! WebAssembly component built from `guest/` and embedded in this crate. This crate hosts it
//! with wasmtime and gives it exactly one capability: running allowed Lua scripts on Redis
//! through `dlock:lock/redis.redis-eval`. The component gets WASI clocks and random, nothing
//! else: no files, no sockets, no environment.
//!
//! A [`Runtime`] is built once (component compiled, Redis connected); [`Client`]s are cheap
//! (one component instance each); a [`LockHandle`] is one held lock.
//!
//! ```no_run
//! use std::time::Duration;
//! use dlock_host::{LockOptions, Runtime};
//!
//! # async fn run() -> dlock_host::Result<()> {
//! let runtime = Runtime::connect("redis://127.0.0.1:6379").await?;
//! let client = runtime.client(LockOptions::default()).await?;
//! let lock = client.acquire("jobs:nightly-report", Duration::from_secs(30)).await?;
//! // ... work while holding the lock ...
//! lock.extend(Duration::from_secs(30)).await?;
//! lock.release().await?;
//! # Ok(()) }
//! ```
//!
//! Guarantees (single Redis primary): at most one unexpired holder per key; `release` and
//! `extend` never touch another holder's lock; a crashed holder's lock frees within its TTL.
//! docs/GUARANTEES.md in the repository says what breaks them, how fencing tokens protect a
//! resource, and what holds in each [`Topology`]: a Redis Cluster, a Sentinel-managed primary
//! (`redis+sentinel://`), or quorum mode (Redlock) over independent primaries.
//!
//! For a plugin host with stores of its own, [`redis::add_to_linker`] gives any `Store<T>` the
//! component's Redis import under the same [`Policy`], and [`bindings`] are the world's
//! generated bindings to call the component with.
//!
//! Features: `runtime` (default: everything above), `compose` (`compose`: a plugin composed
//! with the lock component ahead of time, with `wac-graph`), `fuzzing` (exposes the request
//! checks and reply decoding to this crate's fuzz target). A throwaway `redis-server` for your
//! own tests is the `dlock-testing` crate's `RedisServer`.
//!
//! # Observability
//!
//! What dlock reports: `tracing` spans and `metrics` instruments, through the facades only
//! (install a subscriber or recorder of your choice to see them; without one they cost a
//! branch each).
//!
//! ## Spans
//!
//! - One per lock operation, at `INFO`: `dlock.acquire`, `dlock.try_acquire`,
//!   `dlock.wait_for_lock`, `dlock.release`, `dlock.extend`, `dlock.key_state`, with the field
//!   `dlock.key` (the key as given) and, once it ends, `dlock.outcome` (as the metrics' labels
//!   below name it).
//! - One per Redis call, at `DEBUG`, following OpenTelemetry's semantic conventions for Redis
//!   client spans: span name `redis`, `otel.name` (`EVALSHA acquire`, `BLPOP signal`: the
//!   operation and its target, as the conventions name the span), `otel.kind = "client"`,
//!   `db.system.name = "redis"`, `db.operation.name` (`EVALSHA`, or `BLPOP` for a wait on a
//!   release signal), `db.stored_procedure.name` (the bundled script's name, else `other`),
//!   `db.namespace` (the database index), `server.address`, `server.port`, and `error.type` on
//!   failure (`timeout`, `unavailable`, `rejected`).
//!
//! ## Instruments
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `dlock.acquire.duration` | histogram (s) | `operation`, `outcome` | time an `acquire`, `try_acquire` or `wait_for_lock` took: the wait for a lock |
//! | `dlock.acquire.attempts` | histogram | `operation` | acquire attempts (script runs) per call |
//! | `dlock.acquire.busy` | counter | | attempts that found the lock held: contention |
//! | `dlock.lock.held` | histogram (s) | | how long a lock was held, from its acquisition to its release |
//! | `dlock.release` | counter | `outcome` | releases: `released`, `expired`, `taken_over`, `failed` |
//! | `dlock.extend` | counter | `outcome` | extends: `extended`, `expired`, `taken_over`, `failed` |
//! | `dlock.lock.lost` | counter | `reason` | leases found lost (`expired`, `taken_over`) or given up by a keep-alive (`not_kept`, `max_hold`) |
//! | `dlock.wait.wakeups` | counter | `by` | waits between attempts that ended: `signal` (a release woke it), `timeout`, `cancel` |
//! | `dlock.wait.fallbacks` | counter | | waits that would have listened for a release but had no connection to block on: plain pauses (polling) |
//! | `dlock.wait.passed_on` | counter | | release signals taken by a waiter that had given up, pushed back for the next waiter |
//! | `dlock.redis.denied` | counter | `reason` | Redis calls of a component the host's policy refused: `rate`, `policy`, `script` |
//! | `db.client.operation.duration` | histogram (s) | `db.system.name`, `db.operation.name`, `db.stored_procedure.name` (not for `BLPOP`) | every Redis call (OpenTelemetry's metric) |
//!
//! Labels never carry keys or tokens: their number is fixed.

extern crate alloc;

pub mod bundled;
pub mod redis;

/// What the component and its hosts agree on (the `dlock-contract` crate): the limits on
/// keys, tokens and durations, the lock options' and the policy's defaults, the scripts'
/// argument shapes and the naming of companion keys. The policy, the API and the CLI apply
/// these rules before anything reaches the component.
pub use dlock_contract as contract;

#[cfg(feature = "runtime")]
pub mod bindings;
#[cfg(feature = "runtime")]
mod cache;
#[cfg(feature = "runtime")]
mod cancel;
#[cfg(feature = "runtime")]
mod cleanup;
#[cfg(feature = "runtime")]
mod client;
#[cfg(feature = "runtime")]
mod clock;
#[cfg(feature = "runtime")]
mod component;
#[cfg(feature = "compose")]
mod compose;
#[cfg(feature = "runtime")]
mod convert;
#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "runtime")]
mod keep_alive;
#[cfg(feature = "runtime")]
pub mod lock;
#[cfg(feature = "runtime")]
mod observe;
#[cfg(feature = "runtime")]
mod options;
#[cfg(feature = "runtime")]
mod random;
#[cfg(feature = "runtime")]
mod rate;
#[cfg(feature = "runtime")]
mod runtime;
#[cfg(feature = "runtime")]
mod sandbox;
#[cfg(feature = "runtime")]
mod store;

/// The redis-rs crate this crate is built on ([`Runtime::connection`] hands out its
/// connections, [`Error::Connect`] carries its error).
pub use ::redis as redis_rs;
#[cfg(feature = "runtime")]
pub use client::{Client, Deadline, LockHandle, Semaphore, SemaphoreState};
#[cfg(feature = "runtime")]
pub use component::{Allocation, LockComponent};
#[cfg(feature = "compose")]
pub use compose::{compose, compose_with};
#[cfg(feature = "runtime")]
pub use error::{Error, Lost, Result};
#[cfg(feature = "runtime")]
pub use keep_alive::{KeepAlive, KeepAliveOptions, LostSignal};
#[cfg(feature = "runtime")]
pub use options::{HandleStatus, KeyState, LockInfo, LockOptions, ReleaseOutcome, WakeOnRelease};
pub use redis::policy::Policy;
#[cfg(feature = "runtime")]
pub use redis::{connection::RedisConnection, tls::TlsConfig, topology::Topology};
#[cfg(feature = "runtime")]
pub use runtime::{Runtime, RuntimeBuilder};
/// The wasmtime crate this crate is built on ([`LockComponent::new`] takes its `Engine`; the
/// [`redis`] module links into its `Linker`).
#[cfg(feature = "runtime")]
pub use wasmtime;
/// The wasmtime-wasi crate this crate is built on, at the major that matches [`wasmtime`]: a
/// store of your own that runs the component gives it WASI's clocks, random and poll from it.
#[cfg(feature = "runtime")]
pub use wasmtime_wasi;
