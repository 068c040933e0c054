//! Many clients, one key: exactly one holder at a time, and no lost update.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dlock_host::{Deadline, LockOptions, Runtime};
use dlock_tests::{get, raw, redis, runtime};

const CLIENTS: usize = 16;
const ROUNDS: usize = 12;

/// Each round: take the lock, read a counter from Redis, yield, write it back plus one. Without
/// mutual exclusion two holders read the same value and an increment is lost.
async fn worker(rt: Runtime, url: String, holders: Arc<AtomicUsize>, max_seen: Arc<AtomicUsize>) {
    let options = LockOptions::default()
        .with_jitter(true)
        .with_retry_delay(Duration::from_millis(5));
    let client = rt.client(options).await.unwrap();
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for _ in 0..ROUNDS {
        let lock = client
            .wait_for_lock(
                "counter-lock",
                Duration::from_secs(10),
                Deadline::after(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
        max_seen.fetch_max(now, Ordering::SeqCst);
        let value: Option<u64> = redis::cmd("GET")
            .arg("counter")
            .query_async(&mut conn)
            .await
            .unwrap();
        tokio::task::yield_now().await;
        let () = redis::cmd("SET")
            .arg("counter")
            .arg(value.unwrap_or(0) + 1)
            .query_async(&mut conn)
            .await
            .unwrap();
        holders.fetch_sub(1, Ordering::SeqCst);
        lock.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_take_turns_and_lose_no_update() {
    let server = redis();
    let rt = runtime(&server).await;
    let holders = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(worker(
                rt.clone(),
                server.url(),
                holders.clone(),
                max_seen.clone(),
            ))
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut conn = raw(&server).await;
    assert_eq!(max_seen.load(Ordering::SeqCst), 1, "two holders at once");
    assert_eq!(
        get(&mut conn, "counter").await,
        Some((CLIENTS * ROUNDS).to_string())
    );
    assert_eq!(
        get(&mut conn, "counter-lock").await,
        None,
        "the last holder released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_simultaneous_try_acquires_exactly_one_wins() {
    let server = redis();
    let rt = runtime(&server).await;
    for round in 0..5 {
        let key = format!("race-{round}");
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let rt = rt.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let client = rt.client(LockOptions::default()).await.unwrap();
                    client
                        .try_acquire(&key, Duration::from_secs(30))
                        .await
                        .unwrap()
                        .is_some()
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        assert_eq!(winners, 1, "round {round}");
    }
}
