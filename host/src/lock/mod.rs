//! The `dlock:lock/lock` interface provided to plugins: a plugin that imports the lock API
//! (the `lock-user` world) gets it from the host, each call forwarded to a [`crate::Client`]
//! of its own, so the lock logic still runs inside a dlock component instance, in a store of
//! its own, under its own limits and the plugin's [`crate::Policy`].
//!
//! The same shape as [`crate::redis`]: a [`LockCtx`] in the plugin store's data, a
//! [`LockHostView`] impl, and [`add_to_linker`]. The plugin's keys are confined by its
//! runtime's policy (give each plugin its own namespace); [`LockCtx`] also bounds how many
//! clients (lock component instances) it may hold and how many lock calls per second it may
//! make:
//!
//! ```no_run
//! use dlock_host::lock::{LockCtx, LockHostView, LockView};
//! use dlock_host::wasmtime::component::{Linker, ResourceTable};
//! use dlock_host::{Policy, Runtime};
//!
//! struct Plugin {
//!     table: ResourceTable,
//!     lock: LockCtx,
//! }
//!
//! impl LockHostView for Plugin {
//!     fn lock(&mut self) -> LockView<'_> {
//!         LockView { ctx: &mut self.lock, table: &mut self.table }
//!     }
//! }
//!
//! # async fn host(runtime: Runtime, linker: &mut Linker<Plugin>) -> dlock_host::Result<()> {
//! dlock_host::lock::add_to_linker(linker).map_err(dlock_host::Error::Component)?;
//! // One context per plugin, its keys confined to its namespace.
//! let ctx = LockCtx::new(runtime.under_policy(Policy::default().with_key_namespace("plugin-a:")));
//! # Ok(()) }
//! ```

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::client::{Client, Deadline, LockHandle};
use crate::rate::TokenBucket;
use crate::runtime::Runtime;

/// The bindings of the `lock-user` world: the `lock` interface as plugins import it.
pub mod bindings {
    #![allow(
        missing_docs,
        reason = "generated code; the WIT (bundle/wit) documents every item"
    )]

    wasmtime::component::bindgen!({
        path: "bundle/wit",
        world: "lock-user",
        imports: { default: async | trappable },
        with: {
            "dlock:lock/lock.client": super::ClientEntry,
            "dlock:lock/lock.lock-handle": super::HandleEntry,
        },
    });
}

use bindings::dlock::lock::lock as wit;

crate::convert::wit_conversions!(
    crate::lock::bindings::dlock::lock::lock,
    crate::lock::bindings::dlock::lock::types::RedisError
);

/// The host value behind a plugin's `client` resource.
#[derive(Debug)]
pub struct ClientEntry(Arc<Client>);

/// The host value behind a plugin's `lock-handle` resource.
#[derive(Debug)]
pub struct HandleEntry(Arc<LockHandle>);

/// The lock API of one plugin store: the runtime (component, connection, and the plugin's
/// policy) its clients are made from, and the plugin's own limits: how many clients it may
/// hold, and how many lock calls it may make per second.
#[derive(Debug)]
pub struct LockCtx {
    runtime: Runtime,
    clients: usize,
    max_clients: usize,
    calls: TokenBucket,
    max_calls_per_second: u32,
}

impl LockCtx {
    /// Most clients a plugin may hold at once by default: each is a lock component instance.
    pub const DEFAULT_MAX_CLIENTS: usize = 16;
    /// Most lock calls (client and handle methods) a plugin may make per second by default.
    pub const DEFAULT_MAX_CALLS_PER_SECOND: u32 = 10_000;

    /// A context whose clients come from `runtime`, under its policy (give each plugin its
    /// own with [`Runtime::under_policy`]).
    pub fn new(runtime: Runtime) -> Self {
        LockCtx {
            runtime,
            clients: 0,
            max_clients: Self::DEFAULT_MAX_CLIENTS,
            calls: TokenBucket::new(Self::DEFAULT_MAX_CALLS_PER_SECOND.into()),
            max_calls_per_second: Self::DEFAULT_MAX_CALLS_PER_SECOND,
        }
    }

    /// Most clients the plugin may hold at once; `create` past it fails with
    /// `redis(denied(..))`. Default [`LockCtx::DEFAULT_MAX_CLIENTS`].
    pub fn with_max_clients(mut self, clients: usize) -> Self {
        self.max_clients = clients;
        self
    }

    /// Most lock calls the plugin may make per second: a token bucket of this many calls
    /// refilled at this many per second; a call past it fails with `redis(denied(..))` without
    /// reaching its lock component. It keeps one plugin's flood from crowding the connection
    /// every plugin shares. Default [`LockCtx::DEFAULT_MAX_CALLS_PER_SECOND`].
    pub fn with_max_calls_per_second(mut self, calls: u32) -> Self {
        self.calls = TokenBucket::new(calls.into());
        self.max_calls_per_second = calls;
        self
    }

    /// The runtime clients are made from.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Admits one lock call, or says why not.
    fn admit(&mut self) -> Result<(), wit::Error> {
        if self.calls.take(std::time::Instant::now(), 1) {
            Ok(())
        } else {
            Err(denied(format!(
                "more than {} lock calls in one second",
                self.max_calls_per_second
            )))
        }
    }
}

fn denied(reason: String) -> wit::Error {
    wit::Error::Redis(bindings::dlock::lock::types::RedisError::Denied(reason))
}

/// A store's lock context lent out with its resource table, for the duration of one call.
pub struct LockView<'a> {
    /// The store's lock context.
    pub ctx: &'a mut LockCtx,
    /// The store's resource table (holds the plugin's `client` and `lock-handle` resources).
    pub table: &'a mut ResourceTable,
}

impl std::fmt::Debug for LockView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockView").field("ctx", &self.ctx).finish()
    }
}

/// Store data that can lend out a [`LockView`]: what [`add_to_linker`] needs of `T`.
pub trait LockHostView: Send {
    /// The store's lock context and resource table.
    fn lock(&mut self) -> LockView<'_>;
}

/// Ties [`LockView`] to the linker.
struct HasLock;

impl HasData for HasLock {
    type Data<'a> = LockView<'a>;
}

/// Adds `dlock:lock/lock` (and the type-only `dlock:lock/types`) to `linker`, each call
/// forwarded to a [`Client`] the plugin's [`LockCtx`] makes. The functions are async:
/// instantiate and call with the `_async` methods. A call that waits (`acquire`,
/// `wait-for-lock`) waits in the host, not in the plugin: bound the plugin's calls with a
/// timeout of your own if it must not wait that long (dropping the call gives back any lock it
/// was taking).
pub fn add_to_linker<T: LockHostView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::dlock::lock::types::add_to_linker::<T, HasLock>(linker, T::lock)?;
    wit::add_to_linker::<T, HasLock>(linker, T::lock)
}

type Outcome<T> = wasmtime::Result<Result<T, wit::Error>>;

impl LockView<'_> {
    fn client(&self, client: &Resource<ClientEntry>) -> wasmtime::Result<Arc<Client>> {
        Ok(self.table.get(client)?.0.clone())
    }

    fn handle(&self, handle: &Resource<HandleEntry>) -> wasmtime::Result<Arc<LockHandle>> {
        Ok(self.table.get(handle)?.0.clone())
    }

    /// The plugin's `acquired`: the handle in its table, with the handle's info.
    fn new_handle(&mut self, handle: LockHandle) -> wasmtime::Result<wit::Acquired> {
        let info = handle.info().into();
        Ok(wit::Acquired {
            handle: self.table.push(HandleEntry(Arc::new(handle)))?,
            info,
        })
    }

    /// The client behind `client`, once the plugin's call rate admits one more call; the
    /// refusal otherwise.
    fn admitted(
        &mut self,
        client: &Resource<ClientEntry>,
    ) -> wasmtime::Result<Result<Arc<Client>, wit::Error>> {
        if let Err(e) = self.ctx.admit() {
            return Ok(Err(e));
        }
        Ok(Ok(self.client(client)?))
    }

    /// An acquisition's result as the plugin gets it.
    fn acquired(&mut self, taken: crate::Result<LockHandle>) -> Outcome<wit::Acquired> {
        match taken {
            Ok(handle) => Ok(Ok(self.new_handle(handle)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    /// A single attempt's result as the plugin gets it.
    fn maybe_acquired(
        &mut self,
        taken: crate::Result<Option<LockHandle>>,
    ) -> Outcome<Option<wit::Acquired>> {
        match taken {
            Ok(Some(handle)) => Ok(Ok(Some(self.new_handle(handle)?))),
            Ok(None) => Ok(Ok(None)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

fn millis(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}

impl bindings::dlock::lock::types::Host for LockView<'_> {}

impl wit::Host for LockView<'_> {
    async fn default_options(&mut self) -> wasmtime::Result<wit::LockOptions> {
        Ok(wit::LockOptions::try_from(&crate::LockOptions::default())?)
    }
}

impl wit::HostClient for LockView<'_> {
    async fn create(&mut self, options: wit::LockOptions) -> Outcome<Resource<ClientEntry>> {
        if let Err(e) = self.ctx.admit() {
            return Ok(Err(e));
        }
        if self.ctx.clients >= self.ctx.max_clients {
            return Ok(Err(denied(format!(
                "more than {} lock clients at once",
                self.ctx.max_clients
            ))));
        }
        match self.ctx.runtime.client(options.into()).await {
            Ok(client) => {
                self.ctx.clients += 1;
                Ok(Ok(self.table.push(ClientEntry(Arc::new(client)))?))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn acquire(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
        ttl_ms: u64,
    ) -> Outcome<wit::Acquired> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let taken = client.acquire(&key, millis(ttl_ms)).await;
        self.acquired(taken)
    }

    async fn try_acquire(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
        ttl_ms: u64,
    ) -> Outcome<Option<wit::Acquired>> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let taken = client.try_acquire(&key, millis(ttl_ms)).await;
        self.maybe_acquired(taken)
    }

    async fn wait_for_lock(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Outcome<wit::Acquired> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let deadline = Deadline::after(millis(timeout_ms));
        let taken = client.wait_for_lock(&key, millis(ttl_ms), deadline).await;
        self.acquired(taken)
    }

    async fn is_locked(&mut self, client: Resource<ClientEntry>, key: String) -> Outcome<bool> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        Ok(client.is_locked(&key).await.map_err(wit::Error::from))
    }

    async fn key_state(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
    ) -> Outcome<wit::KeyState> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        Ok(client
            .key_state(&key)
            .await
            .map(wit::KeyState::from)
            .map_err(wit::Error::from))
    }

    async fn attach(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
        token: String,
    ) -> Outcome<wit::Acquired> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let taken = client.attach(&key, &token).await;
        self.acquired(taken)
    }

    async fn acquire_permits(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
        permits: wit::Permits,
        ttl_ms: u64,
    ) -> Outcome<wit::Acquired> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let semaphore = client.semaphore(&key, permits.limit);
        let taken = semaphore.acquire(permits.count, millis(ttl_ms)).await;
        self.acquired(taken)
    }

    async fn try_acquire_permits(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
        permits: wit::Permits,
        ttl_ms: u64,
    ) -> Outcome<Option<wit::Acquired>> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let semaphore = client.semaphore(&key, permits.limit);
        let taken = semaphore.try_acquire(permits.count, millis(ttl_ms)).await;
        self.maybe_acquired(taken)
    }

    async fn wait_for_permits(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
        permits: wit::Permits,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Outcome<wit::Acquired> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let semaphore = client.semaphore(&key, permits.limit);
        let deadline = Deadline::after(millis(timeout_ms));
        match semaphore
            .wait(permits.count, millis(ttl_ms), deadline)
            .await
        {
            Ok(handle) => Ok(Ok(self.new_handle(handle)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn semaphore_state(
        &mut self,
        client: Resource<ClientEntry>,
        key: String,
    ) -> Outcome<wit::SemaphoreState> {
        let client = match self.admitted(&client)? {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        Ok(client
            .semaphore(&key, 1)
            .state()
            .await
            .map(|s| wit::SemaphoreState {
                held: s.held,
                first_ends_in_ms: s.first_ends_in.map(crate::options::millis),
            })
            .map_err(wit::Error::from))
    }

    async fn drop(&mut self, client: Resource<ClientEntry>) -> wasmtime::Result<()> {
        self.table.delete(client)?;
        self.ctx.clients = self.ctx.clients.saturating_sub(1);
        Ok(())
    }
}

impl wit::HostLockHandle for LockView<'_> {
    async fn release(&mut self, handle: Resource<HandleEntry>) -> Outcome<wit::ReleaseOutcome> {
        if let Err(e) = self.ctx.admit() {
            return Ok(Err(e));
        }
        let handle = self.handle(&handle)?;
        Ok(handle
            .release()
            .await
            .map(wit::ReleaseOutcome::from)
            .map_err(wit::Error::from))
    }

    async fn extend(&mut self, handle: Resource<HandleEntry>, ttl_ms: u64) -> Outcome<()> {
        if let Err(e) = self.ctx.admit() {
            return Ok(Err(e));
        }
        let handle = self.handle(&handle)?;
        Ok(handle
            .extend(millis(ttl_ms))
            .await
            .map_err(wit::Error::from))
    }

    async fn is_held(&mut self, handle: Resource<HandleEntry>) -> wasmtime::Result<bool> {
        Ok(self.handle(&handle)?.is_held())
    }

    async fn info(&mut self, handle: Resource<HandleEntry>) -> wasmtime::Result<wit::LockInfo> {
        Ok(self.handle(&handle)?.info().into())
    }

    async fn drop(&mut self, handle: Resource<HandleEntry>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}
