//! Fencing tokens: opt-in, strictly increasing across holders, kept beside the lock in the
//! same cluster slot.

use std::time::Duration;

use dlock_host::{Deadline, Error, LockOptions, ReleaseOutcome, Runtime};
use dlock_tests::{
    blocked_clients, eventually, exists, get, key_slot, raw, redis, runtime, woken_only_by_release,
};

fn fenced() -> LockOptions {
    LockOptions::default().with_fencing(true)
}

#[tokio::test]
async fn fences_strictly_increase_across_a_hundred_acquisitions_by_different_clients() {
    let server = redis();
    let rt = runtime(&server).await;
    let clients = [
        rt.client(fenced()).await.unwrap(),
        rt.client(fenced()).await.unwrap(),
        rt.client(fenced()).await.unwrap(),
    ];
    let mut last = 0;
    for i in 0..100 {
        let lock = clients[i % 3]
            .acquire("ledger", Duration::from_secs(30))
            .await
            .unwrap();
        let fence = lock.info().fence.expect("fencing is on");
        assert!(fence > last, "fence {fence} after {last}");
        last = fence;
        lock.release().await.unwrap();
    }
    assert_eq!(last, 100);
}

#[tokio::test]
async fn the_counter_shares_the_lock_keys_slot() {
    let server = redis();
    let rt = runtime(&server).await;
    let mut conn = raw(&server).await;
    let client = rt.client(fenced()).await.unwrap();
    for (key, counter) in [
        ("ledger", "{ledger}:fence"),
        ("app:{ledger}", "app:{ledger}::fence"),
        ("{ledger}", "{ledger}::fence"),
    ] {
        let lock = client.acquire(key, Duration::from_secs(30)).await.unwrap();
        assert_eq!(lock.info().fence, Some(1));
        assert_eq!(
            get(&mut conn, counter).await.as_deref(),
            Some("1"),
            "{counter}"
        );
        assert_eq!(key_slot(key), key_slot(counter));
        lock.release().await.unwrap();
    }
}

#[tokio::test]
async fn fences_keep_increasing_after_a_lock_expires_unreleased() {
    let server = redis();
    let rt: Runtime = runtime(&server).await;
    let client = rt.client(fenced()).await.unwrap();
    let first = client
        .acquire("ledger", Duration::from_millis(50))
        .await
        .unwrap();
    let first_fence = first.info().fence.unwrap();
    let second = client
        .wait_for_lock(
            "ledger",
            Duration::from_secs(30),
            Deadline::after(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(second.info().fence.unwrap() > first_fence);
    // The expired holder's token no longer owns the key.
    assert_eq!(
        first.release().await.unwrap(),
        dlock_host::ReleaseOutcome::TakenOver
    );
}

#[tokio::test]
async fn unfenced_clients_report_no_fence_and_write_no_counter() {
    let server = redis();
    let rt = runtime(&server).await;
    let mut conn = raw(&server).await;
    let client = rt.client(LockOptions::default()).await.unwrap();
    let lock = client
        .acquire("ledger", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(lock.info().fence, None);
    assert_eq!(get(&mut conn, "{ledger}:fence").await, None);
}

#[tokio::test]
async fn a_key_that_cannot_share_a_slot_with_a_counter_is_refused_for_fencing() {
    let server = redis();
    let rt = runtime(&server).await;
    let mut conn = raw(&server).await;
    let client = rt.client(fenced()).await.unwrap();
    let err = client
        .acquire("odd}key", Duration::from_secs(30))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("hash tag")),
        "{err:?}"
    );
    assert_eq!(dlock_tests::dbsize(&mut conn).await, 0);
}

#[tokio::test]
async fn a_broken_fence_counter_fails_the_acquire_and_leaves_no_lock_behind() {
    let server = redis();
    let rt = runtime(&server).await;
    let mut conn = raw(&server).await;
    let _: () = redis::cmd("SET")
        .arg("{ledger}:fence")
        .arg("not a number")
        .query_async(&mut conn)
        .await
        .unwrap();
    let client = rt.client(fenced()).await.unwrap();
    let err = client
        .try_acquire("ledger", Duration::from_secs(30))
        .await
        .expect_err("a counter Redis cannot increment fails the acquire");
    assert!(matches!(err, Error::RedisRejected(_)), "{err:?}");
    assert_eq!(get(&mut conn, "ledger").await, None, "no lock left behind");
    assert_eq!(
        get(&mut conn, "{ledger}:fence").await.as_deref(),
        Some("not a number"),
        "the counter is left as it was"
    );
}

/// Fences are exact integers in every host (Lua, JavaScript and JSON numbers are doubles):
/// the last fence handed out is 9 * 10^15 (below 2^53), and past it an acquisition is
/// refused, writing nothing, rather than repeating a fence rounded by Redis's Lua.
#[tokio::test]
async fn fences_stop_at_nine_times_ten_to_the_fifteen_instead_of_repeating() {
    const MAX_FENCE: u64 = 9_000_000_000_000_000;
    let server = redis();
    let rt = runtime(&server).await;
    let mut conn = raw(&server).await;
    let client = rt.client(fenced()).await.unwrap();
    let set_counter = |value: u64| {
        redis::cmd("SET")
            .arg("{ledger}:fence")
            .arg(value)
            .to_owned()
    };
    let _: () = set_counter(MAX_FENCE - 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let lock = client
        .acquire("ledger", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(lock.info().fence, Some(MAX_FENCE));
    lock.release().await.unwrap();

    // At the cap, and past 2^53 where Lua would round INCR's reply.
    for counter in [MAX_FENCE, (1 << 53) + 1] {
        let _: () = set_counter(counter).query_async(&mut conn).await.unwrap();
        let err = client
            .try_acquire("ledger", Duration::from_secs(30))
            .await
            .expect_err("no exact fence is left");
        assert!(
            matches!(&err, Error::RedisRejected(m) if m.contains("9 * 10^15")),
            "{err:?}"
        );
        assert_eq!(get(&mut conn, "ledger").await, None, "no lock left behind");
        assert_eq!(
            get(&mut conn, "{ledger}:fence").await,
            Some(counter.to_string()),
            "the counter is left as it was"
        );
    }
}

#[tokio::test]
async fn fence_counters_cannot_be_released_extended_or_taken_as_locks() {
    let server = redis();
    let rt = runtime(&server).await;
    let mut conn = raw(&server).await;
    for (prefix, key, counter) in [
        ("", "job", "{job}:fence"),
        ("app:", "{job}", "app:{job}::fence"),
    ] {
        let options = fenced().with_key_prefix(prefix);
        let client = rt.client(options).await.unwrap();
        let lock = client.acquire(key, Duration::from_secs(30)).await.unwrap();
        assert_eq!(lock.info().fence, Some(1));
        // The counter's own name, as a lock key, under the same prefix.
        let name = counter.strip_prefix(prefix).unwrap();
        let refused = [
            client.attach(name, "1").await.err(),
            client.try_acquire(name, Duration::from_secs(1)).await.err(),
            client.is_locked(name).await.err(),
        ];
        for err in refused {
            assert!(
                matches!(&err, Some(Error::InvalidArgument(m)) if m.contains("fence counter")),
                "{counter}: {err:?}"
            );
        }
        assert_eq!(get(&mut conn, counter).await.as_deref(), Some("1"));
        lock.release().await.unwrap();
        let next = client.acquire(key, Duration::from_secs(30)).await.unwrap();
        assert_eq!(next.info().fence, Some(2), "{counter}");
    }
}

/// `job` and `{job}` are two locks (Redis hashes both by `job`, so they share a slot): each has
/// its own fence counter, and a release of one wakes only its own waiters.
#[tokio::test]
async fn a_key_and_the_same_key_in_braces_have_separate_fences_and_waiters() {
    const GUARD: Duration = Duration::from_secs(30);
    let server = redis();
    let rt = runtime(&server).await;
    let mut conn = raw(&server).await;
    let client = rt.client(fenced()).await.unwrap();
    let ttl = Duration::from_secs(60);
    for _ in 0..3 {
        client
            .acquire("job", ttl)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    let braced = client.acquire("{job}", ttl).await.unwrap();
    assert_eq!(braced.info().fence, Some(1), "its own counter, not job's");
    assert_eq!(get(&mut conn, "{job}:fence").await.as_deref(), Some("3"));
    assert_eq!(get(&mut conn, "{job}::fence").await.as_deref(), Some("1"));

    // A waiter on `{job}` (whose holder never lets its key expire in time) is not woken by a
    // release of `job`, only by `{job}`'s own.
    let () = redis::cmd("PERSIST")
        .arg("{job}")
        .query_async::<i64>(&mut conn)
        .await
        .map(|_| ())
        .unwrap();
    let waiter = rt
        .client(woken_only_by_release(LockOptions::default()))
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { waiter.acquire("{job}", ttl).await });
    eventually("the waiter to block on {job}'s signal list", GUARD, || {
        let mut c = conn.clone();
        async move { blocked_clients(&mut c).await == 1 }
    })
    .await;
    assert!(exists(&mut conn, "{job}::waiters").await);
    assert!(!exists(&mut conn, "{job}:waiters").await);
    let plain = client.acquire("job", ttl).await.unwrap();
    assert_eq!(plain.release().await.unwrap(), ReleaseOutcome::Released);
    assert!(
        !exists(&mut conn, "{job}::signal").await,
        "job's release signalled {{job}}"
    );
    assert_eq!(
        blocked_clients(&mut conn).await,
        1,
        "the waiter still waits"
    );
    assert_eq!(braced.release().await.unwrap(), ReleaseOutcome::Released);
    let got = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("{job}'s release did not wake its waiter")
        .unwrap()
        .unwrap();
    assert_eq!(get(&mut conn, "{job}").await, Some(got.info().token));
}
