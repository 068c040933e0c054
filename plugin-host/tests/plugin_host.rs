//! The reference plugin host end to end: eight copies of the job plugin, each making two
//! hundred read-modify-writes of one counter under one lock, lose no update whether they get
//! the lock from the host, composed with the dlock component, or half each way at once (the
//! two paths exclude each other on the same key). Only `dlock_host`'s public API is used,
//! through the example host.

use std::sync::Arc;

use dlock_plugin_host::{JOB_PLUGIN, Path, PluginHost};
use dlock_testing::RedisServer;

const PLUGINS: u32 = 8;
const INCREMENTS: u32 = 200;

/// Runs the job plugin `PLUGINS` times at once, the `i`-th through `paths[i % paths.len()]`,
/// and returns the counter.
async fn run(paths: &[Path]) -> i64 {
    let server = RedisServer::start().unwrap();
    let host = Arc::new(PluginHost::connect(&server.url()).await.unwrap());
    let plugins: Vec<_> = paths
        .iter()
        .map(|&path| host.load(JOB_PLUGIN, path, "jobs:").unwrap())
        .collect();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..PLUGINS {
        let (host, plugin) = (host.clone(), plugins[i as usize % plugins.len()].clone());
        runs.spawn(async move {
            host.run_jobs(&plugin, "jobs:lock", "jobs:counter", INCREMENTS)
                .await
        });
    }
    while let Some(done) = runs.join_next().await {
        assert_eq!(done.unwrap().unwrap(), INCREMENTS);
    }
    host.counter("jobs:counter").await.unwrap()
}

const EXPECTED: i64 = PLUGINS as i64 * INCREMENTS as i64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_provided_plugins_lose_no_update() {
    assert_eq!(run(&[Path::HostProvided]).await, EXPECTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composed_plugins_lose_no_update() {
    assert_eq!(run(&[Path::Composed]).await, EXPECTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_provided_and_composed_plugins_exclude_each_other_on_one_lock() {
    assert_eq!(run(&[Path::HostProvided, Path::Composed]).await, EXPECTED);
}

#[test]
fn the_composed_plugin_imports_redis_instead_of_the_lock_api() {
    let composed = dlock_host::compose(JOB_PLUGIN).unwrap();
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, &composed).unwrap();
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(
        imports.iter().any(|i| i.starts_with("dlock:lock/redis@")),
        "{imports:?}"
    );
    assert!(
        !imports.iter().any(|i| i.starts_with("dlock:lock/lock@")),
        "{imports:?}"
    );
    // Besides the plugin's own (its counter, and the WASI of Rust's std), what the lock
    // component brings: Redis, its type-only `types`, and WASI clocks, poll and random.
    let dlock: Vec<&String> = imports.iter().filter(|i| i.starts_with("dlock:")).collect();
    assert_eq!(dlock.len(), 2, "{imports:?}");
    assert!(matches!(
        dlock_host::compose(b"\0asm\x01\0\0\0"),
        Err(dlock_host::Error::Compose(_))
    ));
}

#[test]
fn the_embedding_guide_shows_the_minimal_and_composed_hosts_as_they_are() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/EMBEDDING.md")).unwrap();
    for example in ["minimal", "composed"] {
        let path = format!("plugin-host/examples/{example}.rs");
        let host = std::fs::read_to_string(root.join(&path)).unwrap();
        assert!(
            guide.contains(&format!("```rust\n{host}```")),
            "docs/EMBEDDING.md must show {path} verbatim"
        );
    }
}

/// A counting semaphore from a plugin, both ways: a plugin asking eight times for one of three
/// permits gets three, and gives them back.
#[tokio::test]
async fn plugins_take_at_most_a_semaphores_permits_either_way() {
    let server = RedisServer::start().unwrap();
    let host = PluginHost::connect(&server.url()).await.unwrap();
    for path in [Path::HostProvided, Path::Composed] {
        let plugin = host.load(JOB_PLUGIN, path, "jobs:").unwrap();
        let (got,): (Result<u32, String>,) = host
            .call(
                &plugin,
                "take-slots",
                ("jobs:slots".to_owned(), 3u32, 8u32, 10_000u64),
            )
            .await
            .unwrap();
        assert_eq!(got, Ok(3), "{path:?}");
    }
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let left: i64 = redis::cmd("EXISTS")
        .arg("jobs:slots")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "every permit given back");
}
