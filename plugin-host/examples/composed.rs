//! The composed path at its smallest: the plugin is composed with the lock component ahead of
//! time, so the lock logic runs inside it and the host provides Redis (policed) instead of the
//! lock API. One plugin, keys confined to `plugin-a:`, WASI with nothing to reach.
//!
//! `cargo run -p dlock-plugin-host --example composed -- PLUGIN.wasm redis://127.0.0.1:6379`
//! calls the plugin's `lock-pair(key, ttl-ms)` export (the example job plugin has one).

use anyhow::Result;
use dlock_host::redis::{RedisCtx, RedisHostView, RedisView};
use dlock_host::wasmtime::component::{Component, Linker, ResourceTable};
use dlock_host::wasmtime::{Engine, Store};
use dlock_host::wasmtime_wasi::{self, WasiCtx, WasiCtxView, WasiView};
use dlock_host::{Allocation, LockComponent, Policy, TlsConfig};

struct Plugin {
    table: ResourceTable,
    wasi: WasiCtx,
    redis: RedisCtx,
}

impl WasiView for Plugin {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl RedisHostView for Plugin {
    fn redis(&mut self) -> RedisView<'_> {
        RedisView {
            ctx: &mut self.redis,
            table: &mut self.table,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, plugin, url] = &args[..] else {
        anyhow::bail!("usage: composed PLUGIN.wasm REDIS_URL")
    };
    // A composed plugin holds more core instances than the pooling allocator's limit.
    let engine = Engine::new(&LockComponent::config(Allocation::OnDemand))?;
    // No dlock component is compiled here, so nothing else ticks the epoch the stores'
    // deadlines count.
    LockComponent::tick_epochs(&engine);

    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    dlock_host::redis::add_to_linker(&mut linker)?;
    let composed = dlock_host::compose(&std::fs::read(plugin)?)?; // or `dlock compose`
    let component = Component::new(&engine, composed)?;
    // The job plugin's own import, which `lock-pair` does not use: calls trap. (Not
    // `define_unknown_imports_as_traps`: a composed plugin imports dlock's WASI at 0.2.12
    // besides its own, which this linker serves by semver, and that call would shadow them
    // with traps of other resource types; instantiation then fails.)
    let mut counter = linker.instance("example:jobs/counter@0.1.0")?;
    for name in ["get", "set"] {
        counter.func_new(name, |_, _, _, _| {
            Err(dlock_host::wasmtime::format_err!(
                "this host keeps no counters"
            ))
        })?;
    }

    // Per plugin: its own store, its keys confined to its namespace. (Many plugins share one
    // connection as `runtime.under_policy(policy).redis_ctx()`.)
    let policy = Policy::default().with_key_namespace("plugin-a:");
    let plugin = Plugin {
        table: ResourceTable::new(),
        wasi: WasiCtx::builder().build(),
        redis: RedisCtx::connect(url.as_str(), policy, TlsConfig::default()).await?,
    };
    let mut store = Store::new(&engine, plugin);
    store.epoch_deadline_async_yield_and_update(1); // yield to other tasks at every tick
    let instance = linker.instantiate_async(&mut store, &component).await?;

    let lock_pair =
        instance.get_typed_func::<(&str, u64), (Result<bool, String>,)>(&mut store, "lock-pair")?;
    // Each call into the plugin starts with a full per-call Redis budget.
    store.data_mut().redis.begin_call();
    let (taken,) = lock_pair
        .call_async(&mut store, ("plugin-a:report", 10_000))
        .await?;
    println!(
        "plugin-a:report taken and released: {}",
        taken.map_err(anyhow::Error::msg)?
    );
    Ok(())
}
