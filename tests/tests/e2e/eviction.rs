//! Eviction, a documented way to break the lock: a server whose `maxmemory-policy` evicts keys
//! with a TTL drops a held lock under memory pressure and lets a second holder in. The
//! runtime names the setting (`Runtime::weaknesses`), as it does every other server setting
//! that weakens the guarantees.

use std::time::Duration;

use dlock_host::{LockOptions, Runtime};
use dlock_tests::{exists, raw, redis, runtime};

#[tokio::test]
async fn an_evicting_server_drops_a_held_lock_and_the_runtime_warns_of_it() {
    let server = dlock_testing::RedisServer::start_with(&[
        "--maxmemory",
        "4mb",
        "--maxmemory-policy",
        "volatile-ttl",
    ])
    .unwrap();
    let rt = Runtime::connect(&server.url()).await.unwrap();
    let found = rt.weaknesses().await;
    let eviction = found
        .iter()
        .find(|w| w.setting == "maxmemory-policy")
        .unwrap_or_else(|| panic!("{found:?}"));
    assert_eq!(eviction.value, "volatile-ttl");
    assert!(eviction.fix.contains("noeviction"), "{eviction:?}");

    let fenced = LockOptions::default().with_fencing(true);
    let first = rt.client(fenced.clone()).await.unwrap();
    let lock = first.acquire("job", Duration::from_secs(30)).await.unwrap();
    assert_eq!(lock.info().fence, Some(1));
    // Other data with longer TTLs fills memory: volatile-ttl evicts the soonest to expire
    // first, the lock.
    let mut conn = raw(&server).await;
    let filler = "x".repeat(16 * 1024);
    let mut i = 0;
    while exists(&mut conn, "job").await {
        assert!(i < 100_000, "the lock was never evicted");
        let _: Option<String> = redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(&filler)
            .arg("EX")
            .arg(3600)
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        i += 1;
    }
    assert!(lock.is_held(), "the first holder still counts on its lease");
    let second = rt.client(fenced).await.unwrap();
    let stolen = second
        .try_acquire("job", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the evicted lock is free for a second holder");
    assert!(stolen.info().fence >= Some(2), "the counter survived here");
}

#[tokio::test]
async fn a_durable_server_has_no_weakness_and_a_volatile_one_names_each() {
    let durable =
        dlock_testing::RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
            .unwrap();
    let rt = Runtime::connect(&durable.url()).await.unwrap();
    assert_eq!(rt.weaknesses().await, []);

    let plain = redis();
    let rt = runtime(&plain).await;
    let found: Vec<String> = rt
        .weaknesses()
        .await
        .into_iter()
        .map(|w| w.setting)
        .collect();
    assert_eq!(found, ["appendonly"], "the test servers persist nothing");
}
