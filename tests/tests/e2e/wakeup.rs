//! Push wake-up against a real Redis: a release wakes a waiter blocked on the key's signal
//! list; polling leaves no waiter state.

use std::time::Duration;

use dlock_host::{Deadline, Error, LockOptions, ReleaseOutcome, WakeOnRelease};
use dlock_tests::{
    client, dbsize, exists, raw, redis, release_wakes_the_waiter, woken_only_by_release,
};

const TTL: Duration = Duration::from_secs(60);

/// The release is the only way the waiter can get the lock in time: the holder's key has no
/// expiry (so no wait is cut at the holder's expiry) and the waiter's one retry comes after a
/// backoff of ten minutes. Polling would fail the test at the hang guard; the wake-up passes
/// it, and the waiter consumed the one signal the release pushed.
#[tokio::test]
async fn a_release_wakes_a_waiter_blocked_on_the_signal_list() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    let waiter = rt
        .client(woken_only_by_release(LockOptions::default()))
        .await
        .unwrap();
    release_wakes_the_waiter(&mut raw(&server).await, "job", &holder, waiter, "job").await;
}

/// With `WakeOnRelease::Never` a waiter polls: it marks nothing and blocks on nothing, so a
/// release signals no one.
#[tokio::test]
async fn a_polling_waiter_leaves_no_waiter_state() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = holder.acquire("job", TTL).await.unwrap();
    let poller = rt
        .client(LockOptions::default().with_wake_on_release(WakeOnRelease::Never))
        .await
        .unwrap();
    let err = poller
        .wait_for_lock("job", TTL, Deadline::after(Duration::from_millis(300)))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotAcquired), "{err:?}");
    assert_eq!(dbsize(&mut conn).await, 1, "only the holder's key");
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Released);
    assert_eq!(dbsize(&mut conn).await, 0, "no signal pushed");

    // The default (wait-for-lock) marks the key while it waits.
    let lock = holder.acquire("job", TTL).await.unwrap();
    let listener = rt.client(LockOptions::default()).await.unwrap();
    let err = listener
        .wait_for_lock("job", TTL, Deadline::after(Duration::from_millis(300)))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotAcquired), "{err:?}");
    assert!(exists(&mut conn, "{job}:waiters").await);
    lock.release().await.unwrap();
}
