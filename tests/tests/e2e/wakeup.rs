//! Push wake-up, cancellation and the watchdog against a real Redis: a release wakes a waiter
//! blocked on the key's signal list; polling leaves no waiter state; cancelled waits leave the
//! client usable and Redis clean; a kept-alive lock outlives its TTL and signals its loss.

use std::time::Duration;

use dlock_host::{
    Deadline, Error, KeepAliveOptions, LockOptions, Lost, ReleaseOutcome, WakeOnRelease,
};
use dlock_tests::{
    blocked_clients, client, dbsize, eventually, exists, get, raw, redis, release_wakes_the_waiter,
    woken_only_by_release,
};

const TTL: Duration = Duration::from_secs(60);
/// Hang guard for events that must happen (never a timing assertion).
const GUARD: Duration = Duration::from_secs(30);

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

/// 1000 waits given up at every stage (by the cancel future after a varying number of
/// yields, or by dropping the future) never poison the client: it then acquires, and once
/// the waiters' marks have run out nothing of the waits is left in Redis.
#[tokio::test]
async fn a_thousand_cancelled_waits_leave_the_client_usable_and_redis_clean() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = holder.acquire("job", TTL).await.unwrap();
    let waiter = rt.client(LockOptions::default()).await.unwrap();
    for i in 0..1000u32 {
        let yields = i % 50;
        let cancel = async move {
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
        };
        if i % 2 == 0 {
            let err = waiter
                .wait_for_lock_or_cancel("job", TTL, Deadline::after(GUARD), cancel)
                .await
                .err()
                .unwrap();
            assert!(matches!(err, Error::Cancelled), "wait {i}: {err:?}");
        } else {
            tokio::select! {
                got = waiter.wait_for_lock("job", TTL, Deadline::after(GUARD)) => {
                    panic!("wait {i} ended on its own: {:?}", got.err())
                }
                () = cancel => {}
            }
        }
    }
    assert_eq!(get(&mut conn, "job").await, Some(lock.info().token));
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Released);
    let mine = waiter.acquire("job", TTL).await.unwrap();
    assert_eq!(mine.release().await.unwrap(), ReleaseOutcome::Released);
    eventually("the waiters' marks and signals to run out", GUARD, || {
        let mut c = conn.clone();
        async move { dbsize(&mut c).await == 0 && blocked_clients(&mut c).await == 0 }
    })
    .await;
}

/// A kept-alive lock is extended past its TTL; taking the key over fires the lost-lock signal
/// with `TakenOver`, and deleting it fires `Expired`.
#[tokio::test]
async fn keep_alive_extends_the_lock_and_signals_its_loss() {
    let server = redis();
    let (_rt, c) = client(&server).await;
    let mut conn = raw(&server).await;
    let ttl = Duration::from_millis(600);
    let kept = c
        .acquire("job", ttl)
        .await
        .unwrap()
        .keep_alive(KeepAliveOptions::new(ttl));
    let first = kept.handle().info().valid_until;
    // Extended past the first lease's end: the lock lives on beyond its TTL.
    eventually("an extend past the first lease", GUARD, || {
        let later = kept.handle().info().valid_until > first + ttl;
        async move { later }
    })
    .await;
    assert_eq!(
        get(&mut conn, "job").await,
        Some(kept.handle().info().token)
    );
    assert_eq!(kept.lost_signal().get(), None);

    let () = redis::cmd("SET")
        .arg("job")
        .arg("7c9e6679-7425-40de-944b-e07fc1f90ae7")
        .query_async(&mut conn)
        .await
        .unwrap();
    let lost = tokio::time::timeout(GUARD, kept.lost()).await.unwrap();
    assert_eq!(lost, Lost::TakenOver);
    assert_eq!(kept.release().await.unwrap(), ReleaseOutcome::TakenOver);
    assert_eq!(
        get(&mut conn, "job").await.as_deref(),
        Some("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
        "the new owner's key is untouched"
    );

    let kept = c
        .acquire("other", ttl)
        .await
        .unwrap()
        .keep_alive(KeepAliveOptions::new(ttl));
    let () = redis::cmd("DEL")
        .arg("other")
        .query_async::<i64>(&mut conn)
        .await
        .map(|_| ())
        .unwrap();
    let lost = tokio::time::timeout(GUARD, kept.lost()).await.unwrap();
    assert_eq!(lost, Lost::Expired);
}

/// `with_lock` returns the work's output and releases; when the lock is lost mid-work, the
/// work is stopped and the result is `LockLost`.
#[tokio::test]
async fn with_lock_runs_the_work_under_the_lock_and_stops_it_when_the_lock_is_lost() {
    let server = redis();
    let (_rt, c) = client(&server).await;
    let mut conn = raw(&server).await;
    let options = KeepAliveOptions::new(Duration::from_secs(10));
    let out = c
        .with_lock("job", options.clone(), |_lost| async { 42 })
        .await
        .unwrap();
    assert_eq!(out, 42);
    assert!(!exists(&mut conn, "job").await, "released after the work");

    let mut admin = conn.clone();
    let err = c
        .with_lock("job", options, |_lost| async move {
            // The work itself has the lock taken from under it, then would run forever.
            let () = redis::cmd("SET")
                .arg("job")
                .arg("7c9e6679-7425-40de-944b-e07fc1f90ae7")
                .query_async(&mut admin)
                .await
                .unwrap();
            std::future::pending::<()>().await
        })
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::LockLost(Lost::TakenOver)), "{err:?}");
}

#[test]
fn the_readme_shows_the_watchdog_example_as_it_is() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("host/examples/watchdog.rs")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md must show host/examples/watchdog.rs verbatim"
    );
}
