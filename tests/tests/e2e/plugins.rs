//! Plugins of a plugin host (the reference host, `plugin-host`) get the lock API
//! host-provided or composed, and each plugin is confined: it can neither see, take, release
//! nor extend another plugin's locks, reach Redis other than through the lock API's policed
//! scripts, hold more lock clients than allowed, or stall the other plugins by spinning,
//! trapping or flooding.

use std::time::Duration;

use dlock_plugin_host::{JOB_PLUGIN, Path, Plugin, PluginHost};
use dlock_tests::components::{HOSTILE_PLUGIN, HOSTILE_REDIS_PLUGIN};
use dlock_tests::{get, pttl, raw, redis};

const PATHS: [Path; 2] = [Path::HostProvided, Path::Composed];

/// Hang guard for events that must happen (never a timing assertion).
const GUARD: Duration = Duration::from_secs(60);

fn hostile(host: &PluginHost, path: Path, namespace: &str) -> Plugin {
    let bytes = std::fs::read(HOSTILE_PLUGIN).unwrap();
    host.load(&bytes, path, namespace).unwrap()
}

/// Runs the hostile plugin's `mode` on `key` with `arg`: the plugin's answer, or the host's
/// error (a trap, the budget).
async fn run(
    host: &PluginHost,
    plugin: &Plugin,
    mode: &str,
    key: &str,
    arg: &str,
) -> anyhow::Result<Result<String, String>> {
    let args = (mode.to_owned(), key.to_owned(), arg.to_owned());
    let (outcome,): (Result<String, String>,) = host.call(plugin, "run", args).await?;
    Ok(outcome)
}

#[tokio::test]
async fn a_plugin_can_neither_see_take_release_nor_extend_another_plugins_locks() {
    let server = redis();
    let mut conn = raw(&server).await;
    let host = PluginHost::connect(&server.url()).await.unwrap();
    for path in PATHS {
        let owner = hostile(&host, path, "b:");
        let intruder = hostile(&host, path, "a:");
        let token = run(&host, &owner, "take", "b:job", "")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(get(&mut conn, "b:job").await.as_ref(), Some(&token));
        for mode in ["look", "take", "release", "extend"] {
            let answer = run(&host, &intruder, mode, "b:job", &token).await.unwrap();
            assert!(
                matches!(&answer, Err(e) if e.contains("Denied") && e.contains("namespace")),
                "{path:?} {mode}: {answer:?}"
            );
        }
        assert_eq!(get(&mut conn, "b:job").await, Some(token.clone()));
        assert!(
            pttl(&mut conn, "b:job").await <= 30_000,
            "extended by the intruder"
        );
        // Its own lock, the owner can release.
        let answer = run(&host, &owner, "release", "b:job", &token)
            .await
            .unwrap();
        assert_eq!(answer, Ok("released".to_owned()), "{path:?}");
    }
}

#[tokio::test]
async fn plugins_reach_redis_only_through_the_lock_apis_policed_scripts() {
    let server = redis();
    let mut conn = raw(&server).await;
    let () = redis::cmd("SET")
        .arg("a:victim")
        .arg("kept")
        .query_async(&mut conn)
        .await
        .unwrap();
    let host = PluginHost::connect(&server.url()).await.unwrap();
    let bytes = std::fs::read(HOSTILE_REDIS_PLUGIN).unwrap();

    // Host-provided: the plugin's linker has no Redis at all, so it cannot even start.
    let plugin = host.load(&bytes, Path::HostProvided, "a:").unwrap();
    let err = run(&host, &plugin, "redis-flushall", "a:x", "")
        .await
        .expect_err("instantiated without Redis in its linker");
    assert!(format!("{err:#}").contains("dlock:lock/redis"), "{err:#}");

    // Composed: it shares the lock component's Redis import, and the policy refuses the script.
    let plugin = host.load(&bytes, Path::Composed, "a:").unwrap();
    let answer = run(&host, &plugin, "redis-flushall", "a:x", "")
        .await
        .unwrap();
    assert!(
        matches!(&answer, Err(e) if e.contains("allowlist")),
        "{answer:?}"
    );
    assert_eq!(get(&mut conn, "a:victim").await.as_deref(), Some("kept"));
}

#[tokio::test]
async fn a_plugin_holds_no_more_lock_clients_than_allowed() {
    let server = redis();
    let host = PluginHost::connect(&server.url()).await.unwrap();
    let plugin = hostile(&host, Path::HostProvided, "a:");
    let answer = run(&host, &plugin, "clients", "a:x", "")
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with("16 ") && answer.contains("lock clients"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_trapping_or_flooding_plugins_do_not_stall_the_others() {
    let server = redis();
    let host = std::sync::Arc::new(
        PluginHost::connect(&server.url())
            .await
            .unwrap()
            .with_call_budget(Duration::from_secs(5))
            .with_lock_calls_per_second(1000),
    );
    for path in PATHS {
        let bad = hostile(&host, path, "bad:");
        let jobs = host.load(JOB_PLUGIN, path, "jobs:").unwrap();
        let counter = format!("jobs:counter:{path:?}");
        let mut runs = tokio::task::JoinSet::new();
        for mode in ["spin", "trap", "flood"] {
            let (host, bad) = (host.clone(), bad.clone());
            runs.spawn(async move {
                let outcome = run(&host, &bad, mode, "bad:flood", "20000").await;
                (mode, outcome.map_err(|e| format!("{e:#}")))
            });
        }
        for _ in 0..2 {
            let (host, jobs, counter) = (host.clone(), jobs.clone(), counter.clone());
            runs.spawn(async move {
                let outcome = host.run_jobs(&jobs, "jobs:lock", &counter, 100).await;
                (
                    "jobs",
                    outcome
                        .map(|n| Ok(n.to_string()))
                        .map_err(|e| format!("{e:#}")),
                )
            });
        }
        while let Some(done) = runs.join_next().await {
            let (mode, outcome) = done.unwrap();
            match mode {
                "spin" => assert!(
                    matches!(&outcome, Err(e) if e.contains("budget")),
                    "{path:?} spin: {outcome:?}"
                ),
                "trap" => assert!(
                    matches!(&outcome, Err(e) if e.contains("unreachable")),
                    "{path:?} trap: {outcome:?}"
                ),
                "flood" => {
                    let answer = outcome.unwrap().unwrap();
                    let refused: u32 = answer.split(' ').nth(1).unwrap().parse().unwrap();
                    assert!(
                        refused > 0,
                        "{path:?}: the flood was never held back: {answer}"
                    );
                }
                _ => assert_eq!(outcome, Ok(Ok("100".to_owned())), "{path:?}"),
            }
        }
        assert_eq!(host.counter(&counter).await.unwrap(), 200, "{path:?}");
    }
}

/// A composed plugin's store on an engine of its own, with a redis context.
struct ComposedStore {
    table: wasmtime::component::ResourceTable,
    wasi: wasmtime_wasi::WasiCtx,
    redis: dlock_host::redis::RedisCtx,
}

impl wasmtime_wasi::WasiView for ComposedStore {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl dlock_host::redis::RedisHostView for ComposedStore {
    fn redis(&mut self) -> dlock_host::redis::RedisView<'_> {
        dlock_host::redis::RedisView {
            ctx: &mut self.redis,
            table: &mut self.table,
        }
    }
}

/// An engine that runs only composed plugins compiles no dlock component, so nothing ticks its
/// epoch unless the host asks `LockComponent::tick_epochs`; with it, a spinning plugin under
/// `epoch_deadline_trap` traps (without it, the spin would never end).
///
/// `GUARD` is a hang guard: the trap comes after 100 ticks of 10 ms.
#[tokio::test(flavor = "multi_thread")]
async fn tick_epochs_bounds_a_spinning_composed_plugin_on_an_engine_of_its_own() {
    use dlock_host::{Allocation, LockComponent, Policy, TlsConfig};
    use wasmtime::component::{Component, Linker, ResourceTable};
    let server = redis();
    let engine = wasmtime::Engine::new(&LockComponent::config(Allocation::OnDemand)).unwrap();
    LockComponent::tick_epochs(&engine);
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    dlock_host::redis::add_to_linker(&mut linker).unwrap();
    let composed = dlock_host::compose(&std::fs::read(HOSTILE_PLUGIN).unwrap()).unwrap();
    let component = Component::new(&engine, composed).unwrap();
    let redis_ctx = dlock_host::redis::RedisCtx::connect(
        server.url().as_str(),
        Policy::default(),
        TlsConfig::default(),
    )
    .await
    .unwrap();
    let state = ComposedStore {
        table: ResourceTable::new(),
        wasi: wasmtime_wasi::WasiCtx::builder().build(),
        redis: redis_ctx,
    };
    let mut store = wasmtime::Store::new(&engine, state);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(100);
    let instance = linker
        .instantiate_async(&mut store, &component)
        .await
        .unwrap();
    let run = instance
        .get_typed_func::<(&str, &str, &str), (Result<String, String>,)>(&mut store, "run")
        .unwrap();
    let spin = tokio::spawn(async move { run.call_async(&mut store, ("spin", "k", "")).await });
    let Ok(trapped) = tokio::time::timeout(GUARD, spin).await else {
        // Ends the spin (its deadline is 100 ticks) so that the runtime can shut down.
        for _ in 0..200 {
            engine.increment_epoch();
        }
        panic!("the spin was never interrupted: nothing ticked the engine's epoch");
    };
    assert!(trapped.unwrap().is_err(), "the spin ended without a trap");
}
