//! A Redis Cluster of 3 primaries and 3 replicas on loopback: locks and counting semaphores on
//! keys of every slot range, fencing per key, and a coordinated failover (`CLUSTER FAILOVER`) of the hot key's
//! primary under contention, with the history checked.

use std::time::Duration;

use dlock_host::{KeyState, LockOptions, Runtime, Topology};
use dlock_tests::cluster::Cluster;
use dlock_tests::driver::Driven;
use dlock_tests::history::Recorder;
use dlock_tests::workers::Worker;
use dlock_tests::{
    eventually, key_slot, raw, redis, release_wakes_the_waiter, woken_only_by_release,
};

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

/// Counting semaphores in a Cluster: each key's sorted set and fence counter share its slot's
/// primary; permits up to the limit, fences per semaphore, on keys of every slot range.
#[tokio::test]
async fn semaphores_in_every_slot_range_grant_up_to_their_limit_with_fences_per_key() {
    let cluster = Cluster::start(3, 1).await;
    let runtime = Runtime::connect(Topology::cluster(cluster.seeds()))
        .await
        .unwrap();
    let client = runtime
        .client(LockOptions::default().with_fencing(true))
        .await
        .unwrap();
    let keys: Vec<String> = (0..12).map(|i| format!("pool:{i}")).collect();
    for third in 0..3 {
        let range = (third * 5462)..((third + 1) * 5462);
        assert!(keys.iter().any(|k| range.contains(&key_slot(k))));
    }
    for key in &keys {
        let pool = client.semaphore(key, 2);
        let a = pool.try_acquire(1, TTL).await.unwrap().expect("2 free");
        let b = pool.try_acquire(1, TTL).await.unwrap().expect("1 free");
        assert!(pool.try_acquire(1, TTL).await.unwrap().is_none(), "{key}");
        assert_eq!(
            (a.info().fence, b.info().fence),
            (Some(1), Some(2)),
            "{key}"
        );
        assert_eq!(pool.state().await.unwrap().held, 2);
        a.extend(TTL).await.unwrap();
        a.release().await.unwrap();
        b.release().await.unwrap();
        assert_eq!(pool.state().await.unwrap().held, 0);
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

/// In a Cluster the companion keys share the lock's slot: a waiter blocks on the signal list
/// at the primary serving it, on a connection of its own to that primary, and a release there
/// wakes it; on a key of another primary, the same through another connection; after a
/// failover of the first key's primary, at the promoted replica (the waiter's first `BLPOP`
/// goes to the old primary, which answers MOVED, and the waiter asks where the slot is).
#[tokio::test]
async fn waiters_block_on_the_signal_list_at_the_slots_primary_and_follow_a_failover() {
    let cluster = Cluster::start(3, 1).await;
    let runtime = Runtime::connect(Topology::cluster(cluster.seeds()))
        .await
        .unwrap();
    let holder = runtime.client(LockOptions::default()).await.unwrap();
    let mut waiter = runtime
        .client(woken_only_by_release(LockOptions::default()))
        .await
        .unwrap();
    let first = cluster.primary_of("job").await;
    let mut other = None;
    for candidate in (0..).map(|i| format!("job{i}")) {
        if cluster.primary_of(&candidate).await != first {
            other = Some(candidate);
            break;
        }
    }
    let other = other.unwrap();
    let promoted = cluster.replica_of(first).await;
    // A key of the first one's slot with companion keys of its own: the release of the
    // first round signals them as long as the waiter's mark lasts.
    let same_slot = "{job}next";
    for (key, failover) in [("job", false), (other.as_str(), false), (same_slot, true)] {
        if failover {
            cluster.failover(promoted).await;
            let cluster = &cluster;
            eventually(
                "the old primary to know it was failed over",
                Duration::from_secs(30),
                || async move { cluster.primary_of(same_slot).await == promoted },
            )
            .await;
        }
        let primary = &cluster.nodes[cluster.primary_of(key).await];
        let (back, got) =
            release_wakes_the_waiter(&mut raw(primary).await, key, &holder, waiter, key).await;
        waiter = back;
        got.release().await.unwrap();
    }
}
