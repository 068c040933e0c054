//! Each behaviour of the seed API, through the component, on a real Redis.

use std::time::{Duration, SystemTime};

use dlock_host::{Deadline, Error, HandleStatus, KeyState, LockOptions, ReleaseOutcome};
use dlock_tests::{client, dbsize, get, pttl, quick_options, raw, redis, runtime};

const TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn acquire_sets_the_token_with_a_px_expiry_and_release_deletes_it() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;

    let lock = client.acquire("job", TTL).await.unwrap();
    let info = lock.info();
    assert_eq!(
        get(&mut conn, "job").await.as_deref(),
        Some(info.token.as_str())
    );
    let ttl = pttl(&mut conn, "job").await;
    assert!(ttl > 25_000 && ttl <= 30_000, "PTTL {ttl}");
    assert!(lock.is_held());

    lock.release().await.unwrap();
    assert_eq!(get(&mut conn, "job").await, None);
    assert!(!lock.is_held());
}

#[tokio::test]
async fn info_describes_the_acquisition() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let before = SystemTime::now() - Duration::from_secs(1);
    let invoked = std::time::Instant::now();
    let lock = client.acquire("report", TTL).await.unwrap();
    let completed = std::time::Instant::now();
    let info = lock.info();
    // Validity counts from when the acquire was sent: after invocation, before completion.
    assert!(info.valid_until >= invoked + TTL, "{info:?}");
    assert!(info.valid_until <= completed + TTL, "{info:?}");
    assert_eq!(info.key, "report");
    assert_eq!(info.fence, None);
    assert_eq!(info.status, HandleStatus::Held);
    assert!(info.acquired_at >= before, "{info:?}");
    assert_eq!(
        info.expires_at.duration_since(info.acquired_at).unwrap(),
        TTL
    );
    // A UUID v4: 8-4-4-4-12 lowercase hex, version nibble 4, variant 8..b.
    let t = info.token.as_bytes();
    assert_eq!(info.token.len(), 36, "{}", info.token);
    assert_eq!(
        (t[8], t[13], t[14], t[18], t[23]),
        (b'-', b'-', b'4', b'-', b'-')
    );
    assert!(matches!(t[19], b'8' | b'9' | b'a' | b'b'), "{}", info.token);
}

#[tokio::test]
async fn every_acquisition_gets_a_fresh_token() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..50 {
        let lock = client.acquire("job", TTL).await.unwrap();
        assert!(tokens.insert(lock.info().token));
        lock.release().await.unwrap();
    }
}

#[tokio::test]
async fn try_acquire_is_none_while_held_and_some_once_free() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    let other = rt.client(LockOptions::default()).await.unwrap();
    let lock = holder
        .try_acquire("job", TTL)
        .await
        .unwrap()
        .expect("free lock");
    assert!(other.try_acquire("job", TTL).await.unwrap().is_none());
    lock.release().await.unwrap();
    assert!(other.try_acquire("job", TTL).await.unwrap().is_some());
}

#[tokio::test]
async fn acquire_gives_up_after_its_retries_and_leaves_the_holder_alone() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = holder.acquire("job", TTL).await.unwrap();
    let token = lock.info().token;

    let contender = rt.client(quick_options(3)).await.unwrap();
    let err = contender.acquire("job", TTL).await.err().unwrap();
    assert!(matches!(err, Error::NotAcquired), "{err:?}");
    assert_eq!(get(&mut conn, "job").await, Some(token));
}

#[tokio::test]
async fn acquire_retries_until_the_holder_lets_go() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    holder
        .acquire("job", Duration::from_millis(150))
        .await
        .unwrap();
    // 20 retries of up to 50 ms outlast the holder's 150 ms lease.
    let contender = rt.client(quick_options(20)).await.unwrap();
    let lock = contender.acquire("job", TTL).await.unwrap();
    assert!(lock.is_held());
}

#[tokio::test]
async fn wait_for_lock_fails_at_the_deadline_without_touching_the_holder() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = holder.acquire("job", TTL).await.unwrap();
    let waiter = rt.client(LockOptions::default()).await.unwrap();
    let err = waiter
        .wait_for_lock("job", TTL, Deadline::after(Duration::from_millis(300)))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotAcquired), "{err:?}");
    assert_eq!(get(&mut conn, "job").await, Some(lock.info().token));
}

#[tokio::test]
async fn wait_for_lock_gets_the_lock_when_it_is_released() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    let lock = holder.acquire("job", TTL).await.unwrap();
    let waiter = rt.client(LockOptions::default()).await.unwrap();
    let waiting = tokio::spawn(async move {
        waiter
            .wait_for_lock("job", TTL, Deadline::after(Duration::from_secs(30)))
            .await
    });
    lock.release().await.unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert!(got.is_held());
}

#[tokio::test]
async fn is_locked_and_lock_state_report_what_redis_holds() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    assert!(!client.is_locked("job").await.unwrap());
    assert_eq!(client.key_state("job").await.unwrap(), KeyState::Unlocked);

    let lock = client.acquire("job", TTL).await.unwrap();
    assert!(client.is_locked("job").await.unwrap());
    match client.key_state("job").await.unwrap() {
        KeyState::Expiring(left) => assert!(left > Duration::from_secs(25) && left <= TTL),
        other => panic!("expected an expiring lock, got {other:?}"),
    }
    lock.release().await.unwrap();

    let () = redis::cmd("SET")
        .arg("forever")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(client.is_locked("forever").await.unwrap());
    assert_eq!(
        client.key_state("forever").await.unwrap(),
        KeyState::Persistent
    );
}

#[tokio::test]
async fn releasing_twice_fails_the_second_time_without_touching_redis() {
    let server = redis();
    let (rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = client.acquire("job", TTL).await.unwrap();
    lock.release().await.unwrap();
    // Someone else takes the key; a second release must not delete it.
    let other = rt.client(LockOptions::default()).await.unwrap();
    let theirs = other.acquire("job", TTL).await.unwrap();
    assert!(matches!(lock.release().await, Err(Error::NotHeld)));
    assert!(matches!(lock.extend(TTL).await, Err(Error::NotHeld)));
    assert_eq!(get(&mut conn, "job").await, Some(theirs.info().token));
}

#[tokio::test]
async fn extend_resets_the_ttl_and_the_expiry() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = client.acquire("job", Duration::from_secs(5)).await.unwrap();
    let before = lock.info().expires_at;
    lock.extend(Duration::from_secs(60)).await.unwrap();
    let ttl = pttl(&mut conn, "job").await;
    assert!(ttl > 55_000 && ttl <= 60_000, "PTTL {ttl}");
    let after = lock.info().expires_at;
    assert!(
        after >= before + Duration::from_secs(50),
        "{before:?} -> {after:?}"
    );
}

#[tokio::test]
async fn extend_with_zero_is_refused_and_leaves_the_lease() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = client.acquire("job", TTL).await.unwrap();
    let err = lock.extend(Duration::ZERO).await.err().unwrap();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("positive")),
        "{err:?}"
    );
    assert!(pttl(&mut conn, "job").await > 25_000);
    assert!(lock.is_held());
}

#[tokio::test]
async fn a_non_owner_can_neither_extend_nor_release() {
    let server = redis();
    let (rt, owner) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = owner.acquire("job", Duration::from_secs(10)).await.unwrap();
    let token = lock.info().token;

    let intruder = rt.client(LockOptions::default()).await.unwrap();
    let forged = intruder
        .attach("job", "0f8fad5b-d9cb-469f-a165-70867728950e")
        .await
        .unwrap();
    assert!(matches!(
        forged.extend(Duration::from_secs(600)).await,
        Err(Error::TakenOver)
    ));
    assert_eq!(forged.release().await.unwrap(), ReleaseOutcome::TakenOver);
    assert_eq!(get(&mut conn, "job").await, Some(token));
    assert!(pttl(&mut conn, "job").await <= 10_000);
}

#[tokio::test]
async fn attach_lets_another_process_release_with_the_token() {
    let server = redis();
    let (rt, owner) = client(&server).await;
    let mut conn = raw(&server).await;
    let token = owner.acquire("job", TTL).await.unwrap().info().token;

    let later = rt.client(LockOptions::default()).await.unwrap();
    let handle = later.attach("job", &token).await.unwrap();
    assert!(!handle.is_held(), "validity is unknown until an extend");
    handle.extend(TTL).await.unwrap();
    assert!(handle.is_held());
    handle.release().await.unwrap();
    assert_eq!(get(&mut conn, "job").await, None);
}

#[tokio::test]
async fn the_key_prefix_is_applied_in_redis_only() {
    let server = redis();
    let rt = runtime(&server).await;
    let mut conn = raw(&server).await;
    let options = LockOptions::default().with_key_prefix("app:locks:");
    let client = rt.client(options).await.unwrap();
    let lock = client.acquire("job", TTL).await.unwrap();
    assert_eq!(lock.info().key, "job");
    assert!(get(&mut conn, "app:locks:job").await.is_some());
    assert_eq!(get(&mut conn, "job").await, None);
    assert!(client.is_locked("job").await.unwrap());
}

#[tokio::test]
async fn bad_arguments_are_refused_and_nothing_is_written() {
    let server = redis();
    let (rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    let long_key = "k".repeat(513);
    let cases: Vec<(&str, Duration)> = vec![
        ("", TTL),
        ("job", Duration::ZERO),
        ("job", Duration::from_micros(999)),
        ("job", Duration::MAX),
        ("line\nbreak", TTL),
        ("nul\0byte", TTL),
        (&long_key, TTL),
    ];
    for (key, ttl) in cases {
        let err = client.acquire(key, ttl).await.err().unwrap();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{key:?} {ttl:?}: {err:?}"
        );
        let err = client.try_acquire(key, ttl).await.err().unwrap();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{key:?} {ttl:?}: {err:?}"
        );
    }
    let err = client
        .wait_for_lock("job", TTL, Deadline::after(Duration::MAX))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let bad_prefix = LockOptions::default().with_key_prefix("tab\tprefix");
    assert!(matches!(
        rt.client(bad_prefix).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(dbsize(&mut conn).await, 0);
}

#[tokio::test]
async fn host_and_component_agree_on_the_default_options() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    assert_eq!(
        client.component_default_options().await.unwrap(),
        LockOptions::default()
    );
}

#[tokio::test]
async fn dropping_a_handle_leaves_the_lock_to_its_ttl() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    let token = {
        let lock = client.acquire("job", TTL).await.unwrap();
        lock.info().token
    };
    // The next call cleans up the dropped handle's component resource, not the Redis key.
    assert!(client.is_locked("job").await.unwrap());
    assert_eq!(get(&mut conn, "job").await, Some(token));
}

#[tokio::test]
async fn a_key_of_another_type_is_not_a_lock_and_stays_as_it_was() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    let () = redis::cmd("HSET")
        .arg("job")
        .arg("field")
        .arg("value")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        client.acquire("job", TTL).await,
        Err(Error::NotALock)
    ));
    assert!(matches!(
        client.try_acquire("job", TTL).await,
        Err(Error::NotALock)
    ));
    let attached = client
        .attach("job", "0f8fad5b-d9cb-469f-a165-70867728950e")
        .await
        .unwrap();
    assert_eq!(attached.release().await.unwrap(), ReleaseOutcome::TakenOver);
    assert!(matches!(attached.extend(TTL).await, Err(Error::TakenOver)));
    let kind: String = redis::cmd("TYPE")
        .arg("job")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
    assert_eq!(pttl(&mut conn, "job").await, -1);
}
