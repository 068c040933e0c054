//! A Redis Cluster of 3 primaries and 3 replicas on loopback: locks on keys of every slot
//! range, fencing per key, and a coordinated failover (`CLUSTER FAILOVER`) of the hot key's
//! primary under contention, with the history checked.

use std::time::Duration;

use dlock_host::{Deadline, KeyState, LockOptions, ReleaseOutcome, Runtime, Topology};
use dlock_tests::cluster::Cluster;
use dlock_tests::driver::Driven;
use dlock_tests::history::Recorder;
use dlock_tests::workers::Worker;
use dlock_tests::{eventually, key_slot, redis};

use crate::reliability::{assert_rounds_clean, round, set_contents, until_rounds, worker};

const TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn keys_in_every_slot_range_acquire_extend_and_release_and_fences_grow_per_key() {
    let cluster = Cluster::start(3, 1).await;
    let runtime = Runtime::connect(Topology::cluster(cluster.seeds()))
        .await
        .unwrap();
    assert!(
        runtime
            .redis_url()
            .starts_with("cluster redis://127.0.0.1:")
    );
    let client = runtime
        .client(LockOptions::default().with_fencing(true))
        .await
        .unwrap();
    let keys: Vec<String> = (0..48).map(|i| format!("job:{i}")).collect();
    // The keys fall in each of the three primaries' slot ranges.
    for third in 0..3 {
        let range = (third * 5462)..((third + 1) * 5462);
        assert!(keys.iter().any(|k| range.contains(&key_slot(k))));
    }
    let mut conn = runtime.connection();
    for key in &keys {
        let lock = client.acquire(key, TTL).await.unwrap();
        assert_eq!(lock.info().fence, Some(1));
        let held: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(held, Some(lock.info().token));
        assert!(matches!(
            client.key_state(key).await.unwrap(),
            KeyState::Expiring(_)
        ));
        lock.extend(TTL).await.unwrap();
        lock.release().await.unwrap();
        assert!(!client.is_locked(key).await.unwrap());
    }
    for key in &keys[..4] {
        let lock = client.acquire(key, TTL).await.unwrap();
        assert_eq!(lock.info().fence, Some(2), "{key}");
        lock.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_the_hot_keys_primary_under_contention_keeps_every_invariant() {
    let cluster = Cluster::start(3, 1).await;
    let resource = redis();
    let recorder = Recorder::new();
    let seeds = cluster.seeds();
    let mut tasks = Vec::new();
    for id in 0..6 {
        let worker = Worker::spawn_cluster(worker(), &seeds, &resource.url())
            .await
            .unwrap();
        let mut client = Driven::new(worker, id, &recorder);
        tasks.push(tokio::spawn(async move {
            for r in 0..30u64 {
                round(&mut client, "hot", &format!("w{id}r{r}"), Duration::ZERO).await;
            }
        }));
    }
    let conn = dlock_tests::raw(&resource).await;
    until_rounds(&conn, "rounds before the failover", 10).await;
    let primary = cluster.primary_of("hot").await;
    let replica = cluster.replica_of(primary).await;
    cluster.failover(replica).await;
    let at_failover = set_contents(&mut conn.clone(), "set").await.len();
    let cluster_ref = &cluster;
    eventually(
        "the old primary stepping down",
        Duration::from_secs(30),
        || async move { cluster_ref.primary_of("hot").await == replica },
    )
    .await;
    until_rounds(&conn, "rounds after the failover", at_failover + 10).await;
    for task in tasks {
        task.await.unwrap();
    }
    let runtime = Runtime::connect(Topology::cluster(seeds)).await.unwrap();
    let mut cluster_conn = runtime.connection();
    let hot_left: bool = redis::cmd("EXISTS")
        .arg("hot")
        .query_async(&mut cluster_conn)
        .await
        .unwrap();
    assert_rounds_clean(&recorder, &conn, hot_left.then_some("hot")).await;
}

/// In a Cluster the companion keys share the lock's slot (the acquire script marks the
/// waiter, the release script signals, both on the key's primary), but no waiter blocks on
/// the signal list: waits poll, and a waiter still gets the lock once it is released.
#[tokio::test]
async fn waits_poll_in_a_cluster_and_get_the_lock_after_a_release() {
    let cluster = Cluster::start(3, 0).await;
    let runtime = Runtime::connect(Topology::cluster(cluster.seeds()))
        .await
        .unwrap();
    let holder = runtime.client(LockOptions::default()).await.unwrap();
    let lock = holder.acquire("job", TTL).await.unwrap();
    let waiter = runtime.client(LockOptions::default()).await.unwrap();
    let waiting = tokio::spawn(async move {
        waiter
            .wait_for_lock("job", TTL, Deadline::after(Duration::from_secs(30)))
            .await
    });
    let mut conn = runtime.connection();
    eventually(
        "the waiter to mark the key",
        Duration::from_secs(30),
        || {
            let mut c = conn.clone();
            async move {
                redis::cmd("EXISTS")
                    .arg("{job}:waiters")
                    .query_async::<i64>(&mut c)
                    .await
                    .unwrap()
                    == 1
            }
        },
    )
    .await;
    // A waiter that marked the key is pausing, not blocked on any primary.
    let info: std::collections::HashMap<String, String> = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(info.len(), 3);
    assert!(
        info.values().all(|i| i.contains("blocked_clients:0")),
        "{info:?}"
    );
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Released);
    let got = waiting.await.unwrap().unwrap();
    assert!(got.is_held());
}
