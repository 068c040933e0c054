//! The smallest host that gives its plugins the lock: one plugin, host-provided lock API,
//! keys confined to `plugin-a:`, WASI with nothing to reach, calls bounded by epochs.
//!
//! `cargo run -p dlock-plugin-host --example minimal -- PLUGIN.wasm redis://127.0.0.1:6379`
//! calls the plugin's `lock-pair(key, ttl-ms)` export (the example job plugin has one).

use anyhow::Result;
use dlock_host::lock::{LockCtx, LockHostView, LockView};
use dlock_host::wasmtime::component::{Component, Linker, ResourceTable};
use dlock_host::wasmtime::{Engine, Store};
use dlock_host::wasmtime_wasi::{self, WasiCtx, WasiCtxView, WasiView};
use dlock_host::{Allocation, LockComponent, Policy, Runtime};

struct Plugin {
    table: ResourceTable,
    wasi: WasiCtx,
    lock: LockCtx,
}

impl WasiView for Plugin {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LockHostView for Plugin {
    fn lock(&mut self) -> LockView<'_> {
        LockView {
            ctx: &mut self.lock,
            table: &mut self.table,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, plugin, url] = &args[..] else {
        anyhow::bail!("usage: minimal PLUGIN.wasm REDIS_URL")
    };
    // One engine for the plugins and the lock component: async, epoch interruption.
    let engine = Engine::new(&LockComponent::config(Allocation::OnDemand))?;
    let dlock = LockComponent::new(&engine, dlock_host::bundled::COMPONENT)?;
    let runtime = Runtime::builder(url).with_component(dlock).build().await?;

    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    dlock_host::lock::add_to_linker(&mut linker)?;
    let component = Component::from_file(&engine, plugin)?;
    linker.define_unknown_imports_as_traps(&component)?; // this host offers nothing else

    // Per plugin: its own store, its keys confined to its namespace.
    let policy = Policy::default().with_key_namespace("plugin-a:");
    let lock = LockCtx::new(runtime.under_policy(policy));
    let plugin = Plugin {
        table: ResourceTable::new(),
        wasi: WasiCtx::builder().build(),
        lock,
    };
    let mut store = Store::new(&engine, plugin);
    store.epoch_deadline_async_yield_and_update(1); // yield to other tasks at every tick
    let instance = linker.instantiate_async(&mut store, &component).await?;

    let lock_pair =
        instance.get_typed_func::<(&str, u64), (Result<bool, String>,)>(&mut store, "lock-pair")?;
    let (taken,) = lock_pair
        .call_async(&mut store, ("plugin-a:report", 10_000))
        .await?;
    println!(
        "plugin-a:report taken and released: {}",
        taken.map_err(anyhow::Error::msg)?
    );
    Ok(())
}
