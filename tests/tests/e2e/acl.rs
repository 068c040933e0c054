//! Least privilege on the Redis side: the ACL documented in docs/SECURITY.md is enough for
//! every lock operation, and with it even an allowed script cannot reach keys outside the
//! namespace, whatever the host's own policy.

use std::time::Duration;

use dlock_host::{Error, LockOptions, Policy, Runtime};
use dlock_tests::{RedisServer, get, raw, redis, release_wakes_the_waiter, woken_only_by_release};

async fn confined_user(server: &RedisServer) -> String {
    dlock_tests::minimal_acl_user(server, "dlock", "s3cret").await;
    server.url().replace("redis://", "redis://dlock:s3cret@")
}

#[tokio::test]
async fn the_minimal_acl_is_enough_for_every_lock_operation() {
    let server = redis();
    let url = confined_user(&server).await;
    let rt = Runtime::connect(&url).await.unwrap();
    let options = LockOptions::default()
        .with_key_prefix("app:")
        .with_fencing(true);
    let client = rt.client(options).await.unwrap();
    let lock = client
        .acquire("job", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(lock.info().fence, Some(1));
    assert!(client.is_locked("job").await.unwrap());
    lock.extend(Duration::from_secs(60)).await.unwrap();
    lock.release().await.unwrap();
    assert!(!client.is_locked("job").await.unwrap());
}

/// Wake-up on release works under the minimal ACL: the waiter blocks on the signal list and
/// the release's signal wakes it (its only retry is ten minutes away, the holder's key never
/// expires).
#[tokio::test]
async fn the_minimal_acl_is_enough_for_wake_up_on_release() {
    let server = redis();
    let url = confined_user(&server).await;
    let mut admin = raw(&server).await;
    let rt = Runtime::connect(&url).await.unwrap();
    let options = LockOptions::default().with_key_prefix("app:");
    let holder = rt.client(options.clone()).await.unwrap();
    let waiter = rt.client(woken_only_by_release(options)).await.unwrap();
    release_wakes_the_waiter(&mut admin, "app:job", &holder, waiter, "job").await;
}

#[tokio::test]
async fn with_the_acl_an_allowed_script_cannot_touch_foreign_keys() {
    let server = redis();
    let mut admin = raw(&server).await;
    let () = redis::cmd("SET")
        .arg("other:secret")
        .arg("x")
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = confined_user(&server).await;
    // The host's policy allows any key here: Redis alone must refuse.
    let rt = Runtime::builder(&url)
        .with_policy(Policy::default())
        .build()
        .await
        .unwrap();
    let client = rt.client(LockOptions::default()).await.unwrap();
    let err = client
        .try_acquire("other:secret", Duration::from_secs(30))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::RedisRejected(m) if m.contains("NOPERM") || m.contains("permission")),
        "{err:?}"
    );
    let err = client
        .try_acquire("fresh-key", Duration::from_secs(30))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::RedisRejected(_)), "{err:?}");
    assert_eq!(get(&mut admin, "other:secret").await.as_deref(), Some("x"));
    assert_eq!(get(&mut admin, "fresh-key").await, None);

    // Nor can the user do anything else.
    let mut user = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for command in [
        vec!["FLUSHALL"],
        vec!["CONFIG", "SET", "maxmemory", "1"],
        vec!["KEYS", "*"],
    ] {
        let result: redis::RedisResult<redis::Value> = redis::cmd(command[0])
            .arg(&command[1..])
            .query_async(&mut user)
            .await;
        assert!(result.is_err(), "{command:?} was allowed");
    }
    assert_eq!(get(&mut admin, "other:secret").await.as_deref(), Some("x"));
}

/// On a Redis Cluster the minimal ACL with `+cluster|slots` (where slots are: the cluster
/// client asks, and so do waiters), given on every node, is enough for every lock operation
/// and for wake-up on release. Without it the runtime cannot connect (NOPERM).
#[tokio::test]
async fn the_minimal_acl_and_cluster_slots_on_every_node_of_a_cluster_are_enough() {
    let cluster = dlock_tests::cluster::Cluster::start(3, 0).await;
    for node in &cluster.nodes {
        dlock_tests::minimal_acl_user(node, "dlock", "s3cret").await;
        let () = redis::cmd("ACL")
            .arg(&["SETUSER", "dlock", "+cluster|slots"])
            .query_async(&mut raw(node).await)
            .await
            .unwrap();
    }
    let seeds = cluster
        .seeds()
        .iter()
        .map(|url| url.replace("redis://", "redis://dlock:s3cret@"))
        .collect::<Vec<_>>();
    let rt = Runtime::connect(dlock_host::Topology::cluster(seeds))
        .await
        .unwrap();
    let options = LockOptions::default().with_key_prefix("app:");
    let holder = rt.client(options.clone().with_fencing(true)).await.unwrap();
    let lock = holder
        .acquire("job", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(lock.info().fence, Some(1));
    lock.extend(Duration::from_secs(60)).await.unwrap();
    lock.release().await.unwrap();
    let waiter = rt.client(woken_only_by_release(options)).await.unwrap();
    let primary = &cluster.nodes[cluster.primary_of("app:job").await];
    release_wakes_the_waiter(&mut raw(primary).await, "app:job", &holder, waiter, "job").await;
}
