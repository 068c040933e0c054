//! The component really is a sandboxed wasm32-wasip2 component, the host decides what it may
//! run, and clients are independent.

use std::time::Duration;

use dlock_host::bundled::{self, BundledScript};
use dlock_host::{Error, LockComponent, LockOptions, Policy, Runtime};
use dlock_tests::{dbsize, raw, redis, runtime};

#[test]
fn the_bundled_guest_is_a_component_that_imports_only_redis_clocks_random_and_poll() {
    // The component-model binary header: magic, then version 0x0d and layer 1.
    assert_eq!(&bundled::COMPONENT[..8], b"\0asm\x0d\x00\x01\x00");
    let component = LockComponent::bundled().unwrap();
    let engine = component.engine();
    let wasm = wasmtime::component::Component::new(engine, bundled::COMPONENT).unwrap();
    let mut imports: Vec<String> = wasm
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.split('@').next().unwrap().to_owned())
        .collect();
    imports.sort();
    // `types` holds only the error type `redis` and `lock` share: no function, no capability.
    assert_eq!(
        imports,
        [
            "dlock:lock/redis",
            "dlock:lock/types",
            "wasi:clocks/monotonic-clock",
            "wasi:clocks/wall-clock",
            "wasi:io/poll",
            "wasi:random/random",
        ]
    );
}

#[tokio::test]
async fn scripts_outside_the_allowlist_are_denied_before_redis_sees_them() {
    let server = redis();
    let mut conn = raw(&server).await;
    let rt = Runtime::builder(server.url())
        .with_policy(Policy::default().without_scripts())
        .build()
        .await
        .unwrap();
    let client = rt.client(LockOptions::default()).await.unwrap();
    let err = client
        .acquire("job", Duration::from_secs(30))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("allowlist")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(dbsize(&mut conn).await, 0);
    let cached: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(BundledScript::ALL.map(BundledScript::sha1).to_vec())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(cached.iter().all(|c| !c), "no script reached Redis");
}

#[tokio::test]
async fn an_explicitly_allowed_script_runs_under_a_deny_all_policy() {
    let server = redis();
    let policy = Policy::default()
        .without_scripts()
        .with_script(BundledScript::Acquire.source());
    let rt = Runtime::builder(server.url())
        .with_policy(policy)
        .build()
        .await
        .unwrap();
    let client = rt.client(LockOptions::default()).await.unwrap();
    let lock = client
        .acquire("job", Duration::from_secs(30))
        .await
        .unwrap();
    // Release uses another script, which is still denied.
    assert!(matches!(lock.release().await, Err(Error::Denied(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_run_concurrently_on_one_runtime() {
    let server = redis();
    let rt = runtime(&server).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let rt = rt.clone();
            tokio::spawn(async move {
                let client = rt.client(LockOptions::default()).await.unwrap();
                for round in 0..10 {
                    let lock = client
                        .acquire(&format!("key-{i}-{round}"), Duration::from_secs(30))
                        .await
                        .unwrap();
                    lock.release().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut conn = raw(&server).await;
    assert_eq!(dbsize(&mut conn).await, 0);
}

#[tokio::test]
async fn the_pool_bounds_live_clients_and_frees_slots_on_drop() {
    let server = redis();
    let component = LockComponent::from_bytes(
        bundled::COMPONENT,
        dlock_host::Allocation::Pooling { max_clients: 2 },
    )
    .unwrap();
    let rt = Runtime::builder(server.url())
        .with_component(component)
        .build()
        .await
        .unwrap();
    let a = rt.client(LockOptions::default()).await.unwrap();
    let b = rt.client(LockOptions::default()).await.unwrap();
    let err = rt.client(LockOptions::default()).await.err().unwrap();
    assert!(matches!(err, Error::Component(_)), "{err:?}");
    drop(a);
    let c = rt.client(LockOptions::default()).await.unwrap();
    assert!(!c.is_locked("job").await.unwrap());
    drop(b);
}
