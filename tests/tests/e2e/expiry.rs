//! Leases run out: a lock that is not extended frees after its TTL, and its old handle can
//! then neither release nor extend what someone else holds.

use std::time::Duration;

use dlock_host::{Error, LockOptions, ReleaseOutcome};
use dlock_tests::{client, eventually, exists, get, raw, redis};

#[tokio::test]
async fn an_unextended_lock_frees_after_its_ttl_and_the_old_handle_is_then_powerless() {
    let server = redis();
    let (rt, first) = client(&server).await;
    let mut conn = raw(&server).await;
    let old = first
        .acquire("job", Duration::from_millis(200))
        .await
        .unwrap();

    let mut probe = conn.clone();
    eventually("the lock key to expire", Duration::from_secs(10), || {
        let mut c = probe.clone();
        async move { !exists(&mut c, "job").await }
    })
    .await;
    assert!(!old.is_held(), "validity ended with the lease");

    let second = rt.client(LockOptions::default()).await.unwrap();
    let new = second
        .acquire("job", Duration::from_secs(30))
        .await
        .unwrap();
    let token = new.info().token;

    // Its own validity ran out: refused without asking Redis.
    assert!(matches!(
        old.extend(Duration::from_secs(30)).await,
        Err(Error::Expired)
    ));
    // A release still asks, and finds another owner's token.
    assert_eq!(old.release().await.unwrap(), ReleaseOutcome::TakenOver);
    assert_eq!(get(&mut conn, "job").await, Some(token));
    new.release().await.unwrap();
    assert!(!exists(&mut probe, "job").await);
}

#[tokio::test]
async fn releasing_after_expiry_fails_even_when_nobody_took_the_lock() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let conn = raw(&server).await;
    let lock = client
        .acquire("job", Duration::from_millis(100))
        .await
        .unwrap();
    eventually("the lock key to expire", Duration::from_secs(10), || {
        let mut c = conn.clone();
        async move { !exists(&mut c, "job").await }
    })
    .await;
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Expired);
}

#[tokio::test]
async fn extending_keeps_the_lock_past_its_first_ttl() {
    let server = redis();
    let (rt, client) = client(&server).await;
    let lease = Duration::from_secs(2);
    let lock = client.acquire("job", lease).await.unwrap();
    let contender = rt.client(LockOptions::default()).await.unwrap();
    // Extend every 250 ms for 3 s in all: past the first lease, and the lock is never free. A
    // round may take up to the whole lease on a loaded machine before the test goes wrong.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        lock.extend(lease).await.unwrap();
        assert!(contender.try_acquire("job", lease).await.unwrap().is_none());
    }
    lock.release().await.unwrap();
}
