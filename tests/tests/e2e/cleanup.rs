//! What the host gives back when a call into the component fails (cancelled, trapped), and what
//! it must leave alone: only grants the failed call itself may have produced are released;
//! locks whose handles earlier calls returned stay in Redis.

use std::time::Duration;

use dlock_host::{Allocation, Deadline, Error, LockComponent, LockOptions, Policy, Runtime};
use dlock_tests::components::HOSTILE;
use dlock_tests::proxy::Fault;
use dlock_tests::{client, eventually, exists, get, raw, redis, via_proxy};

const SECOND: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(30);

async fn until_absent(conn: &redis::aio::MultiplexedConnection, key: &str, what: &str) {
    eventually(what, 10 * SECOND, || {
        let mut c = conn.clone();
        async move { !exists(&mut c, key).await }
    })
    .await;
}

/// The reported scenario: a wait on a busy key, cancelled by the caller's timeout, must not
/// release another lock the same client holds. (Nothing is released at all here, so there is
/// no event to wait for: `a` is watched for half a second, far longer than the background
/// release took before the fix.)
#[tokio::test]
async fn a_cancelled_wait_leaves_the_clients_earlier_locks_in_place() {
    let server = redis();
    let (rt, c) = client(&server).await;
    let mut conn = raw(&server).await;
    let a = c.acquire("a", TTL).await.unwrap();
    let token = a.info().token;
    let _b = rt
        .client(LockOptions::default())
        .await
        .unwrap()
        .acquire("b", TTL)
        .await
        .unwrap();

    let waited = tokio::time::timeout(
        Duration::from_millis(50),
        c.wait_for_lock("b", TTL, Deadline::after(10 * SECOND)),
    )
    .await;
    assert!(waited.is_err(), "the wait was meant to be cut short");
    // A cancelled wait does not poison the client.
    assert!(c.is_locked("a").await.unwrap());
    for _ in 0..50 {
        assert_eq!(get(&mut conn, "a").await.as_ref(), Some(&token));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The same with an event to wait for: the cancelled call's own grant is given back, and by
/// then the earlier lock would have been released too (the host releases in the order it
/// noted the grants).
#[tokio::test]
async fn a_cancelled_acquire_gives_back_its_own_grant_and_nothing_else() {
    let server = redis();
    let (proxy, runtime) = via_proxy(&server, 2 * SECOND).await;
    let c = std::sync::Arc::new(runtime.client(LockOptions::default()).await.unwrap());
    let conn = raw(&server).await;
    let a = c.acquire("a", TTL).await.unwrap();
    let token = a.info().token;

    // The acquire of `b` is granted in Redis while its reply is still on the way; cancel it.
    proxy.set_fault(Fault::Latency(Duration::from_millis(800)));
    let pending = tokio::spawn({
        let c = c.clone();
        async move { c.acquire("b", TTL).await.map(|_| ()) }
    });
    eventually("the grant of b", 10 * SECOND, || {
        let mut c = conn.clone();
        async move { exists(&mut c, "b").await }
    })
    .await;
    pending.abort();
    assert!(
        pending.await.is_err_and(|e| e.is_cancelled()),
        "the acquire finished before it was cancelled: the scenario did not happen"
    );
    proxy.set_fault(Fault::None);
    until_absent(&conn, "b", "the cancelled call's grant to be given back").await;
    let mut c2 = conn.clone();
    assert_eq!(get(&mut c2, "a").await, Some(token));
}

/// A client of the hostile component in its `grant-then-trap` mode: it takes what it is asked
/// for (a lock, permits) with a UUID-shaped token, then traps when the key contains `trap`.
async fn grant_then_trap(server: &dlock_tests::RedisServer) -> (Runtime, dlock_host::Client) {
    let component = LockComponent::from_file(HOSTILE, Allocation::default()).unwrap();
    let runtime = Runtime::builder(server.url())
        .with_component(component)
        .with_policy(Policy::default())
        .build()
        .await
        .unwrap();
    let options = LockOptions::default().with_key_prefix("grant-then-trap");
    let client = runtime.client(options).await.unwrap();
    (runtime, client)
}

/// A component that takes a lock and then traps: the host gives back that call's lock, and
/// the lock an earlier call of the same client took stays.
#[tokio::test]
async fn a_trapped_call_gives_back_its_own_grant_and_nothing_else() {
    let server = redis();
    let conn = raw(&server).await;
    let (_runtime, c) = grant_then_trap(&server).await;
    c.acquire("kept", TTL).await.unwrap();
    let mut c2 = conn.clone();
    let kept = get(&mut c2, "kept").await.expect("the first call's lock");

    let err = c.acquire("trap-b", TTL).await.err().unwrap();
    assert!(matches!(err, Error::Trap(_)), "{err:?}");
    until_absent(&conn, "trap-b", "the trapped call's grant to be given back").await;
    assert_eq!(get(&mut c2, "kept").await, Some(kept));
    assert!(matches!(c.acquire("x", TTL).await, Err(Error::Poisoned)));
}

/// The same for permits of a counting semaphore: a component that takes permits and then
/// traps has them given back by the host (with the semaphore's release script, which removes
/// that token's permits only), and the permits an earlier call took stay.
#[tokio::test]
async fn a_trapped_call_gives_back_its_own_permits_and_nothing_else() {
    let server = redis();
    let mut conn = raw(&server).await;
    let (_runtime, c) = grant_then_trap(&server).await;
    c.semaphore("pool", 5).acquire(1, TTL).await.unwrap();
    let kept: Vec<String> = redis::cmd("ZRANGE")
        .arg("pool")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "the first call's permit");

    let err = c
        .semaphore("trap-pool", 5)
        .acquire(2, TTL)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Trap(_)), "{err:?}");
    until_absent(
        &conn,
        "trap-pool",
        "the trapped call's permits to be given back",
    )
    .await;
    let now: Vec<String> = redis::cmd("ZRANGE")
        .arg("pool")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(now, kept);
}
