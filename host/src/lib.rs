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
//! See the README for what breaks them and how fencing tokens protect a resource.

mod bindings;
pub mod bundled;
mod cache;
mod client;
mod clock;
mod engine;
mod error;
mod grants;
mod limits;
mod policy;
mod random;
mod redis_eval;
mod reply;
mod runtime;
pub mod server;
mod state;
mod types;

pub use client::{Client, LockHandle};
pub use engine::{Allocation, LockComponent};
pub use error::{Error, Result};
pub use policy::{Policy, sha1_hex};
pub use runtime::{Runtime, RuntimeBuilder, redact_url};
pub use types::{LockInfo, LockOptions, LockState, LockStatus};
