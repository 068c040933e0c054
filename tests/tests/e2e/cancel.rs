//! Cancellation against a real Redis: waits given up at every stage leave the client usable
//! and Redis clean; a wait cancelled in the instant of its grant gives that lock back before
//! the client's next call runs, whether it is dropped on a tokio runtime or outside one; a
//! cancelled wait frees its blocking connection at once.

use std::time::Duration;

use dlock_host::{Deadline, Error, LockOptions, Policy, ReleaseOutcome, Runtime};
use dlock_tests::proxy::{Fault, Proxy};
use dlock_tests::{
    RedisServer, blocked_clients, client, dbsize, eventually, exists, get, raw, redis,
    woken_only_by_release,
};

const SECOND: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(60);
/// Hang guard for events that must happen (never a timing assertion).
const GUARD: Duration = Duration::from_secs(30);

async fn until_absent(conn: &redis::aio::MultiplexedConnection, key: &str, what: &str) {
    eventually(what, GUARD, || {
        let mut c = conn.clone();
        async move { !exists(&mut c, key).await }
    })
    .await;
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

/// A wait granted while its reply is still on the way, then cancelled: the grant is given
/// back.
#[tokio::test]
async fn a_wait_cancelled_mid_flight_leaves_no_lock_behind() {
    let server = redis();
    let conn = raw(&server).await;
    let (proxy, _holder, held, waiter) = grant_in_flight_setup(&server, 2 * SECOND).await;
    let mut waiting = tokio::spawn(async move {
        let _ = waiter
            .wait_for_lock("job", 30 * SECOND, Deadline::after(30 * SECOND))
            .await;
    });
    until_granted_in_flight(&conn, &proxy, held, &mut waiting, 2 * SECOND).await;
    waiting.abort();
    let outcome = waiting.await;
    assert!(
        outcome.as_ref().is_err_and(|e| e.is_cancelled()),
        "the wait finished before it was cancelled: the scenario did not happen"
    );
    proxy.set_fault(Fault::None);
    until_absent(&conn, "job", "the cancelled waiter's lock to be released").await;
}

/// A holder of `job` on `server` (its own runtime), a waiter's runtime through a proxy with a
/// command timeout long enough for `latency` each way and more, and a waiter client on it.
async fn grant_in_flight_setup(
    server: &RedisServer,
    latency: Duration,
) -> (Proxy, Runtime, dlock_host::LockHandle, dlock_host::Client) {
    let (proxy, runtime) = dlock_tests::via_proxy(server, 3 * latency).await;
    let holder = Runtime::connect(&server.url()).await.unwrap();
    let held = holder
        .client(LockOptions::default())
        .await
        .unwrap()
        .acquire("job", 15 * latency)
        .await
        .unwrap();
    let waiter = runtime.client(LockOptions::default()).await.unwrap();
    (proxy, holder, held, waiter)
}

/// Drives `waiting` (a wait for `job`) until Redis has granted it `job` while the grant's
/// reply is still on its way (`latency` each way), then returns with `waiting` pending.
async fn until_granted_in_flight<F: std::future::Future + Unpin>(
    conn: &redis::aio::MultiplexedConnection,
    proxy: &Proxy,
    held: dlock_host::LockHandle,
    waiting: &mut F,
    latency: Duration,
) {
    let token = held.info().token;
    tokio::select! {
        _ = waiting => panic!("the wait ended before its grant was in flight"),
        () = async {
            eventually("the waiter to mark the key", GUARD, || {
                let mut c = conn.clone();
                async move { exists(&mut c, "{job}:waiters").await }
            })
            .await;
            proxy.set_fault(Fault::Latency(latency));
            held.release().await.unwrap();
            eventually("the waiter's grant", GUARD, || {
                let mut c = conn.clone();
                let token = token.clone();
                async move { get(&mut c, "job").await.is_some_and(|t| t != token) }
            })
            .await;
        } => {}
    }
}

/// `timeout(wait_for_lock(k))` whose wait was granted in that instant, then `wait_for_lock(k)`
/// on the same client: the second call finds the key free, because the first call's lock is
/// given back before the client runs anything else (it used to wait behind the second call,
/// which then waited on that lock until its deadline).
#[tokio::test]
async fn a_wait_cancelled_in_the_instant_of_its_grant_gives_it_back_before_the_next_call() {
    let server = redis();
    let conn = raw(&server).await;
    let (proxy, _holder, held, waiter) = grant_in_flight_setup(&server, 2 * SECOND).await;
    let mut waiting = Box::pin(waiter.wait_for_lock("job", TTL, Deadline::after(GUARD)));
    until_granted_in_flight(&conn, &proxy, held, &mut waiting, 2 * SECOND).await;
    drop(waiting);
    proxy.set_fault(Fault::None);
    let next = waiter
        .wait_for_lock("job", TTL, Deadline::after(20 * SECOND))
        .await
        .expect("the next call waited on the cancelled call's lock");
    assert_eq!(get(&mut conn.clone(), "job").await, Some(next.info().token));
    assert_eq!(next.release().await.unwrap(), ReleaseOutcome::Released);
}

/// A cancelled call whose give back Redis does not hear: it is tried again once Redis
/// answers, still before the client's next call runs (one attempt used to leave the lock to
/// its lease, and the next call gave up). 4 s of latency each way: the grant's reply arrives
/// 4 s after Redis granted, and the give back, the next request the client sends, is held 4 s
/// more; the proxy drops it (blackhole), then lets traffic through again.
#[tokio::test]
async fn a_give_back_that_redis_does_not_hear_is_tried_again_before_the_next_call() {
    let server = redis();
    let conn = raw(&server).await;
    let (proxy, _holder, held, waiter) = grant_in_flight_setup(&server, 4 * SECOND).await;
    let mut waiting = Box::pin(waiter.wait_for_lock("job", TTL, Deadline::after(2 * GUARD)));
    until_granted_in_flight(&conn, &proxy, held, &mut waiting, 4 * SECOND).await;
    let cancelled_token = get(&mut conn.clone(), "job").await;
    let sent = proxy.requests();
    drop(waiting);
    let next = tokio::spawn(async move {
        let got = waiter
            .wait_for_lock("job", TTL, Deadline::after(GUARD + 10 * SECOND))
            .await;
        (waiter, got)
    });
    eventually("the give back to reach the proxy", GUARD, || async {
        proxy.requests() > sent
    })
    .await;
    let dropped = proxy.requests_dropped();
    proxy.set_fault(Fault::Blackhole);
    eventually("the proxy to drop the give back", GUARD, || async {
        proxy.requests_dropped() > dropped
    })
    .await;
    proxy.set_fault(Fault::None);
    proxy.reset_all();
    let (_waiter, got) = tokio::time::timeout(2 * GUARD, next)
        .await
        .unwrap()
        .unwrap();
    let got = got.expect("the next call waited on the cancelled call's lock");
    assert_ne!(Some(got.info().token.clone()), cancelled_token);
    assert_eq!(get(&mut conn.clone(), "job").await, Some(got.info().token));
}

/// The same, with the cancelled call's future dropped outside any tokio runtime's context
/// (the runtime still runs): the call winds down on a thread of its own, gives its lock back,
/// and leaves the client usable (it used to be torn down: the client poisoned, the lock left
/// to its TTL).
#[test]
fn a_wait_dropped_outside_a_runtime_gives_its_grant_back_and_leaves_the_client_usable() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = redis();
    let (conn, proxy, _holder, waiter, waiting) = rt.block_on(async {
        let conn = raw(&server).await;
        let (proxy, holder, held, waiter) = grant_in_flight_setup(&server, 2 * SECOND).await;
        let waiter = std::sync::Arc::new(waiter);
        let mut waiting = Box::pin({
            let waiter = waiter.clone();
            async move {
                waiter
                    .wait_for_lock("job", TTL, Deadline::after(GUARD))
                    .await
            }
        });
        until_granted_in_flight(&conn, &proxy, held, &mut waiting, 2 * SECOND).await;
        (conn, proxy, holder, waiter, waiting)
    });
    assert!(tokio::runtime::Handle::try_current().is_err());
    drop(waiting);
    proxy.set_fault(Fault::None);
    rt.block_on(async {
        let next = waiter
            .wait_for_lock("job", TTL, Deadline::after(20 * SECOND))
            .await
            .expect("the client is usable and the cancelled call's lock was given back");
        assert_eq!(get(&mut conn.clone(), "job").await, Some(next.info().token));
        next.release().await.unwrap();
    });
}

/// A wait cancelled while blocked on the signal list frees its connection and permit at once:
/// with one blocking connection allowed, each next wait blocks on the list too (a cancelled
/// `acquire`, whose waits last up to its maximum retry delay, here ten minutes, used to keep
/// its `BLPOP` and the permit until then, and later waits polled).
#[tokio::test]
async fn a_cancelled_wait_frees_its_blocking_connection_at_once() {
    let server = redis();
    let conn = raw(&server).await;
    let runtime = Runtime::builder(server.url())
        .with_policy(Policy::default().with_max_blocking_connections(1))
        .build()
        .await
        .unwrap();
    let holder = runtime.client(LockOptions::default()).await.unwrap();
    let lock = holder.acquire("job", 10 * TTL).await.unwrap();
    let waiter = runtime
        .client(woken_only_by_release(LockOptions::default()))
        .await
        .unwrap();
    for round in 0..3 {
        tokio::select! {
            got = waiter.acquire("job", TTL) => panic!("round {round}: {:?}", got.err()),
            () = eventually("the waiter to block on the signal list", GUARD, || {
                let mut c = conn.clone();
                async move { blocked_clients(&mut c).await == 1 }
            }) => {}
        }
        eventually("the cancelled wait's BLPOP to end", GUARD, || {
            let mut c = conn.clone();
            async move { blocked_clients(&mut c).await == 0 }
        })
        .await;
    }
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Released);
}
