//! A reference plugin host: it loads plugin components that import dlock's lock API (the
//! `lock-user` world), runs them concurrently on tokio, and gives each the lock one of two
//! ways, with its keys confined to the plugin's namespace:
//!
//! - [`Path::HostProvided`]: `dlock_host::lock::add_to_linker`, each call forwarded to a dlock
//!   component instance of the plugin's own;
//! - [`Path::Composed`]: the plugin composed ahead of time with the dlock component
//!   (`dlock_host::compose`), its Redis import given by `dlock_host::redis::add_to_linker`.
//!
//! Plugins also get WASI (with nothing to reach: no files, no sockets, no environment) and a
//! counter kept in Redis (`example:jobs/counter`), and run under an epoch deadline that yields
//! to the other plugins at every tick and ends a call after its time budget.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use dlock_host::lock::{LockCtx, LockHostView, LockView};
use dlock_host::redis::{RedisCtx, RedisHostView, RedisView};
use dlock_host::wasmtime_wasi::{self, WasiCtx, WasiCtxView, WasiView};
use dlock_host::{Allocation, LockComponent, Policy, Runtime};
use redis::aio::MultiplexedConnection;
use wasmtime::component::{Component, ComponentNamedList, Lift, Linker, Lower, ResourceTable};
use wasmtime::{Engine, Store};

include!(concat!(env!("OUT_DIR"), "/job_plugin.rs"));

/// The counter interface's name, as the plugins import it.
const COUNTER: &str = "example:jobs/counter@0.1.0";

/// How a plugin gets the lock API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Forwarded by the host to a dlock component instance of the plugin's own.
    HostProvided,
    /// Composed with the dlock component before it is loaded.
    Composed,
}

/// A plugin ready to run: its compiled component, how it gets the lock, and its policy.
#[derive(Clone)]
pub struct Plugin {
    component: Component,
    path: Path,
    policy: Policy,
}

impl Plugin {
    /// The plugin with its policy changed by `change` (it starts as the default policy, keys
    /// confined to the namespace given to [`PluginHost::load`]).
    pub fn with_policy(mut self, change: impl FnOnce(Policy) -> Policy) -> Self {
        self.policy = change(self.policy);
        self
    }
}

/// What the host keeps per plugin store.
struct PluginState {
    table: ResourceTable,
    wasi: WasiCtx,
    lock: LockCtx,
    redis: RedisCtx,
    counters: MultiplexedConnection,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LockHostView for PluginState {
    fn lock(&mut self) -> LockView<'_> {
        LockView {
            ctx: &mut self.lock,
            table: &mut self.table,
        }
    }
}

impl RedisHostView for PluginState {
    fn redis(&mut self) -> RedisView<'_> {
        RedisView {
            ctx: &mut self.redis,
            table: &mut self.table,
        }
    }
}

/// One plugin instance in its own store.
pub struct PluginInstance {
    store: Store<PluginState>,
    instance: wasmtime::component::Instance,
    call_budget: Duration,
}

impl PluginInstance {
    /// Calls the export `name` with `args`, within the call budget.
    pub async fn call<Args, Ret>(&mut self, name: &str, args: Args) -> Result<Ret>
    where
        Args: ComponentNamedList + Lower + Send + Sync + 'static,
        Ret: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let func = self
            .instance
            .get_typed_func::<Args, Ret>(&mut self.store, name)
            .map_err(|e| anyhow!("the plugin has no export `{name}` of that type: {e:#}"))?;
        match tokio::time::timeout(self.call_budget, func.call_async(&mut self.store, args)).await {
            Ok(result) => Ok(result?),
            Err(_) => bail!("the plugin ran past its {:?} budget", self.call_budget),
        }
    }
}

/// The host: one engine for the plugins and the dlock component, one dlock runtime (one Redis
/// connection), one linker per [`Path`].
pub struct PluginHost {
    engine: Engine,
    runtime: Runtime,
    counters: MultiplexedConnection,
    host_provided: Linker<PluginState>,
    composed: Linker<PluginState>,
    /// The longest one call into a plugin may take.
    call_budget: Duration,
    /// Most lock calls per second each host-provided plugin may make.
    lock_calls_per_second: u32,
}

impl PluginHost {
    /// A host whose plugins lock (and keep their counters) in the Redis at `redis_url`.
    pub async fn connect(redis_url: &str) -> Result<PluginHost> {
        // Epoch interruption (which dlock needs), linear memories of up to 16 MiB; instances
        // allocated on demand: a composed plugin holds more core instances than the pool's
        // per-component limit.
        let engine = Engine::new(&LockComponent::config(Allocation::OnDemand))?;
        let dlock = LockComponent::new(&engine, dlock_host::bundled::COMPONENT)?;
        let runtime = Runtime::builder(redis_url)
            .with_component(dlock)
            .build()
            .await?;
        let counters = redis::Client::open(redis_url)?
            .get_multiplexed_async_connection()
            .await?;

        let mut host_provided = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut host_provided)?;
        dlock_host::lock::add_to_linker(&mut host_provided)?;
        add_counter(&mut host_provided)?;

        let mut composed = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut composed)?;
        dlock_host::redis::add_to_linker(&mut composed)?;
        add_counter(&mut composed)?;

        Ok(PluginHost {
            engine,
            runtime,
            counters,
            host_provided,
            composed,
            call_budget: Duration::from_secs(120),
            lock_calls_per_second: LockCtx::DEFAULT_MAX_CALLS_PER_SECOND,
        })
    }

    /// Sets how many lock calls per second each host-provided plugin may make (default
    /// `LockCtx::DEFAULT_MAX_CALLS_PER_SECOND`).
    pub fn with_lock_calls_per_second(mut self, calls: u32) -> Self {
        self.lock_calls_per_second = calls;
        self
    }

    /// Sets the longest one call into a plugin may take (default 2 minutes).
    pub fn with_call_budget(mut self, budget: Duration) -> Self {
        self.call_budget = budget;
        self
    }

    /// Compiles the plugin component `plugin` to get the lock through `path`, its Redis keys
    /// confined to `namespace`.
    pub fn load(&self, plugin: &[u8], path: Path, namespace: &str) -> Result<Plugin> {
        let bytes = match path {
            Path::HostProvided => plugin.to_vec(),
            Path::Composed => dlock_host::compose(plugin)?,
        };
        Ok(Plugin {
            component: Component::new(&self.engine, bytes)?,
            path,
            policy: Policy::default().with_key_namespace(namespace),
        })
    }

    /// Instantiates `plugin` in a store of its own, its calls bounded by the call budget and
    /// yielding to the other plugins at every epoch tick.
    pub async fn instantiate(&self, plugin: &Plugin) -> Result<PluginInstance> {
        let runtime = self.runtime.under_policy(plugin.policy.clone());
        let mut table = ResourceTable::new();
        // A bound on what a plugin can make the host keep (clients, handles, WASI resources).
        table.set_max_capacity(4096);
        let state = PluginState {
            table,
            wasi: WasiCtx::builder().build(),
            lock: LockCtx::new(runtime.clone())
                .with_max_calls_per_second(self.lock_calls_per_second),
            redis: runtime.redis_ctx(),
            counters: self.counters.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.epoch_deadline_async_yield_and_update(1);
        let linker = match plugin.path {
            Path::HostProvided => &self.host_provided,
            Path::Composed => &self.composed,
        };
        let instantiate = linker.instantiate_async(&mut store, &plugin.component);
        let instance = match tokio::time::timeout(self.call_budget, instantiate).await {
            Ok(instance) => instance?,
            Err(_) => bail!("the plugin ran past its {:?} budget", self.call_budget),
        };
        Ok(PluginInstance {
            store,
            instance,
            call_budget: self.call_budget,
        })
    }

    /// Instantiates `plugin` and calls its export `name` with `args` once.
    pub async fn call<Args, Ret>(&self, plugin: &Plugin, name: &str, args: Args) -> Result<Ret>
    where
        Args: ComponentNamedList + Lower + Send + Sync + 'static,
        Ret: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        self.instantiate(plugin).await?.call(name, args).await
    }

    /// Runs the job plugin's `run`: `increments` read-modify-writes of `counter`, each under
    /// the lock `lock_key`.
    pub async fn run_jobs(
        &self,
        plugin: &Plugin,
        lock_key: &str,
        counter: &str,
        increments: u32,
    ) -> Result<u32> {
        let (outcome,): (Result<u32, String>,) = self
            .call(
                plugin,
                "run",
                (lock_key.to_owned(), counter.to_owned(), increments),
            )
            .await?;
        outcome.map_err(anyhow::Error::msg)
    }

    /// The value of counter `name` in Redis.
    pub async fn counter(&self, name: &str) -> Result<i64> {
        let value: Option<i64> = redis::cmd("GET")
            .arg(name)
            .query_async(&mut self.counters.clone())
            .await?;
        Ok(value.unwrap_or(0))
    }
}

/// Adds `example:jobs/counter`: a value per name, kept in Redis as a plain string.
fn add_counter(linker: &mut Linker<PluginState>) -> Result<()> {
    let mut counter = linker.instance(COUNTER)?;
    counter.func_wrap_async("get", |store, (name,): (String,)| {
        let mut conn = store.data().counters.clone();
        Box::new(async move {
            let value: Option<i64> = redis::cmd("GET").arg(name).query_async(&mut conn).await?;
            Ok((value.unwrap_or(0),))
        })
    })?;
    counter.func_wrap_async("set", |store, (name, value): (String, i64)| {
        let mut conn = store.data().counters.clone();
        Box::new(async move {
            let () = redis::cmd("SET")
                .arg(name)
                .arg(value)
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
    })?;
    Ok(())
}
