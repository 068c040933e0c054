//! Push wake-up against a real Redis: a release wakes a waiter blocked on the key's signal
//! list; polling leaves no waiter state.

use std::time::Duration;

use dlock_host::{Deadline, Error, LockOptions, ReleaseOutcome, WakeOnRelease};
use dlock_tests::{
    blocked_clients, client, dbsize, eventually, exists, get, raw, redis, release_wakes_the_waiter,
    woken_only_by_release,
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

/// Hang guard for events that must happen (never a timing assertion).
const GUARD: Duration = Duration::from_secs(30);

type Waiting = tokio::task::JoinHandle<dlock_host::Result<dlock_host::LockHandle>>;

/// A waiter of `runtime` (woken only by a release) waiting for `job` in a task of its own,
/// once it blocks on the signal list as the `blocked`-th blocked client of `conn`'s server.
async fn blocked_waiter(
    conn: &redis::aio::MultiplexedConnection,
    runtime: &dlock_host::Runtime,
    blocked: u64,
) -> Waiting {
    let waiter = runtime
        .client(woken_only_by_release(LockOptions::default()))
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { waiter.acquire("job", TTL).await });
    eventually("the waiter to block", GUARD, || {
        let mut c = conn.clone();
        async move { blocked_clients(&mut c).await == blocked }
    })
    .await;
    waiting
}

/// The lock `waiting` got once a release woke it, checked to be the one in Redis.
async fn woken(
    conn: &mut redis::aio::MultiplexedConnection,
    waiting: Waiting,
) -> dlock_host::LockHandle {
    let got = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("the waiter was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(get(conn, "job").await, Some(got.info().token));
    got
}

/// Takes `job`'s expiry away: only a release frees it within a test.
async fn persist(conn: &mut redis::aio::MultiplexedConnection) {
    let () = redis::cmd("PERSIST")
        .arg("job")
        .query_async::<i64>(conn)
        .await
        .map(|_| ())
        .unwrap();
}

/// Redis hands a release's one signal to the waiter that blocked first: two waiters blocked
/// on `job`, one release, and exactly one of them holds the lock while the other still waits
/// (a release wakes at most one blocked waiter); the next release wakes the other.
#[tokio::test]
async fn a_release_wakes_one_of_two_blocked_waiters_and_the_other_waits_on() {
    let server = redis();
    let (rt, holder) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = holder.acquire("job", TTL).await.unwrap();
    persist(&mut conn).await;
    let first = blocked_waiter(&conn, &rt, 1).await;
    let second = blocked_waiter(&conn, &rt, 2).await;
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Released);
    let first = woken(&mut conn, first).await;
    assert_eq!(blocked_clients(&mut conn).await, 1, "the other still waits");
    assert!(!second.is_finished());
    persist(&mut conn).await;
    assert_eq!(first.release().await.unwrap(), ReleaseOutcome::Released);
    woken(&mut conn, second).await;
}

/// Each policy bounds its own blocking connections: with one allowed, a runtime's waiter and a
/// `under_policy` runtime's waiter (another plugin's) each block on the signal list.
#[tokio::test]
async fn the_blocking_connection_bound_is_per_policy() {
    let server = redis();
    let mut conn = raw(&server).await;
    let one = dlock_host::Policy::default().with_max_blocking_connections(1);
    let rt = dlock_host::Runtime::builder(server.url())
        .with_policy(one.clone())
        .build()
        .await
        .unwrap();
    let plugin = rt.under_policy(one);
    let lock = rt
        .client(LockOptions::default())
        .await
        .unwrap()
        .acquire("job", TTL)
        .await
        .unwrap();
    let first = blocked_waiter(&conn, &rt, 1).await;
    let second = blocked_waiter(&conn, &plugin, 2).await;
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Released);
    let first = woken(&mut conn, first).await;
    first.release().await.unwrap();
    woken(&mut conn, second).await;
}

/// The release script names the signal list and the waiters' mark itself, from the lock key
/// alone; it must name them as `dlock_contract::companion_key` does (which the acquire script's
/// waiters are marked at and the host's waits block on), with and without a hash tag, and
/// touch no companion of a key that can have none.
#[tokio::test]
async fn the_release_script_signals_the_companions_the_contract_names() {
    use dlock_host::bundled::BundledScript;
    use dlock_host::contract::{Companion, companion_key};

    let server = redis();
    let mut conn = raw(&server).await;
    let token = "00000000-0000-4000-8000-000000000001";
    for key in ["job", "app:{job}", "{job}", "a{}b", "a}b", "{x}}y"] {
        let waiters = companion_key(key, Companion::Waiters);
        let signal = companion_key(key, Companion::Signal);
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Ok(waiters) = &waiters {
            let _: () = redis::cmd("SET")
                .arg(waiters)
                .arg("1")
                .arg("PX")
                .arg(60_000)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let released: i64 = redis::cmd("EVAL")
            .arg(BundledScript::Release.source())
            .arg(1)
            .arg(key)
            .arg(token)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(released, 1, "{key}");
        match (&signal, &waiters) {
            (Ok(signal), Ok(_)) => {
                let len: i64 = redis::cmd("LLEN")
                    .arg(signal)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(len, 1, "{key}: one signal on {signal}");
                assert_eq!(
                    dbsize(&mut conn).await,
                    2,
                    "{key}: the mark and the signal only"
                );
            }
            _ => assert_eq!(dbsize(&mut conn).await, 0, "{key}: no companion written"),
        }
    }
}
