//! An embedder's own store, on their own engine with wasmtime-wasi's WASI, gets the Redis
//! import with one call and runs the bundled component there, under the same policy. Only
//! the public API of `dlock_host`, wasmtime and wasmtime-wasi is used.

use dlock_host::bindings::Dlock;
use dlock_host::bindings::dlock::lock::types::RedisError;
use dlock_host::bindings::exports::dlock::lock::lock::Error as LockError;
use dlock_host::redis::{RedisCtx, RedisHostView, RedisView};
use dlock_host::{Policy, TlsConfig};
use dlock_tests::{get, raw, redis};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What a plugin host keeps per store: full WASI of its own, and dlock's Redis capability.
struct PluginState {
    table: ResourceTable,
    wasi: WasiCtx,
    redis: RedisCtx,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
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

#[tokio::test]
async fn an_embedders_own_store_runs_the_bundled_component_with_the_redis_import() {
    let server = redis();
    let mut conn = raw(&server).await;
    let engine = Engine::new(&Config::new()).unwrap();
    let mut linker = Linker::<PluginState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    dlock_host::redis::add_to_linker(&mut linker).unwrap();
    let component = Component::new(&engine, dlock_host::bundled::COMPONENT).unwrap();
    let policy = Policy::default().with_key_namespace("plugin-a:");
    let redis = RedisCtx::connect(&server.url(), policy, TlsConfig::default())
        .await
        .unwrap();
    let mut store = Store::new(
        &engine,
        PluginState {
            table: ResourceTable::new(),
            wasi: WasiCtx::builder().build(),
            redis,
        },
    );
    let dlock = Dlock::instantiate_async(&mut store, &component, &linker)
        .await
        .unwrap();
    let api = dlock.dlock_lock_lock();
    let options = api.call_default_options(&mut store).await.unwrap();
    let client = api
        .client()
        .call_create(&mut store, &options)
        .await
        .unwrap()
        .unwrap();

    let acquired = api
        .client()
        .call_acquire(&mut store, client, "plugin-a:job", 30_000)
        .await
        .unwrap()
        .unwrap();
    let handle = acquired.handle;
    let info = api
        .lock_handle()
        .call_info(&mut store, handle)
        .await
        .unwrap();
    assert_eq!(
        info, acquired.info,
        "the info returned with the handle is the handle's"
    );
    assert_eq!(get(&mut conn, "plugin-a:job").await, Some(info.token));

    // The policy holds here as in dlock's own clients: outside the namespace, nothing runs.
    let outside = api
        .client()
        .call_acquire(&mut store, client, "plugin-b:job", 30_000)
        .await
        .unwrap();
    assert!(
        matches!(&outside, Err(LockError::Redis(RedisError::Denied(m))) if m.contains("namespace")),
        "{outside:?}"
    );
    assert_eq!(get(&mut conn, "plugin-b:job").await, None);

    api.lock_handle()
        .call_release(&mut store, handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(get(&mut conn, "plugin-a:job").await, None);
}
