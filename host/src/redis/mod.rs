//! The `dlock:lock/redis` import as a linkable unit: Redis for any component, in any store,
//! under a [`Policy`].
//!
//! It follows the shape of wasmtime's own host crates (`wasmtime-wasi`'s `WasiView`,
//! `wasmtime-wasi-keyvalue`'s `add_to_linker`): the store's data holds a [`RedisCtx`], a
//! [`RedisHostView`] impl lends it out with the store's `ResourceTable`, and [`add_to_linker`]
//! adds the interface to a `Linker<T>`:
//!
//! ```no_run
//! use dlock_host::redis::{RedisCtx, RedisHostView, RedisView};
//! use dlock_host::wasmtime::component::{Linker, ResourceTable};
//!
//! struct MyState {
//!     table: ResourceTable,
//!     redis: RedisCtx,
//! }
//!
//! impl RedisHostView for MyState {
//!     fn redis(&mut self) -> RedisView<'_> {
//!         RedisView { ctx: &mut self.redis, table: &mut self.table }
//!     }
//! }
//!
//! # fn link(linker: &mut Linker<MyState>) -> dlock_host::wasmtime::Result<()> {
//! dlock_host::redis::add_to_linker(linker)?;
//! # Ok(()) }
//! ```
//!
//! A [`RedisCtx`] comes from [`crate::Runtime::redis_ctx`] (sharing the runtime's connection
//! and policy) or from [`RedisCtx::connect`]. Every call of the component is policed: the
//! script allowlist, the argument shapes of the bundled scripts, the key namespace, size caps,
//! the command timeout, and rates of calls and bytes; and so is `wait-for-release` (the key's
//! namespace and form, the rates, the call's deadline, a bounded number of connections to block
//! on).

#[cfg(feature = "runtime")]
mod connect;
mod import;
pub(crate) mod policy;

#[cfg(feature = "runtime")]
pub(crate) use connect::{
    blocking, connection, link, node, sentinel, tls, topology, url, weakness,
};
pub(crate) use import::reply;
#[cfg(feature = "runtime")]
pub(crate) use import::{ctx, eval, grants, request, wait, wit};
pub(crate) use policy::limits;

#[cfg(feature = "runtime")]
pub(crate) use connection::RedisConnection;
#[cfg(feature = "runtime")]
pub use ctx::{RedisCtx, RedisHostView, RedisView, add_to_linker};
#[cfg(feature = "runtime")]
pub use eval::ScriptEntry;
#[cfg(feature = "runtime")]
pub(crate) use eval::run;
#[cfg(feature = "runtime")]
pub(crate) use grants::{Grant, Grants, Taken};
#[cfg(feature = "fuzzing")]
pub use limits::{MAX_FOREIGN_TOKEN_BYTES, RequestLimits};
#[cfg(feature = "runtime")]
pub(crate) use link::{DEFAULT_CONNECT_TIMEOUT, Link};
#[cfg(feature = "runtime")]
pub(crate) use policy::Policy;
#[cfg(all(feature = "runtime", not(feature = "fuzzing")))]
pub(crate) use reply::Failure;
#[cfg(feature = "fuzzing")]
pub use reply::{Failure, Reply, Scalar, classify, flatten};
#[cfg(feature = "runtime")]
pub(crate) use tls::TlsConfig;
#[cfg(feature = "runtime")]
pub use topology::MAX_QUORUM_NODES;
#[cfg(feature = "runtime")]
pub(crate) use topology::Topology;
#[cfg(feature = "runtime")]
pub use url::redact_url;
#[cfg(feature = "runtime")]
pub use wait::MAX_UNSCOPED_WAIT;
#[cfg(feature = "runtime")]
pub use weakness::Weakness;
