//! The counting semaphore's scripts (`semaphore_*.lua`), run as a host runs them (EVAL of the
//! bundled source, the component's argument shapes) against a real redis-server: never more
//! permits held than the limit, permits whose lease ended reclaimed, retries that do not take
//! twice, fences that increase across all permits, and data that is not a dlock semaphore left
//! untouched; then the same through the Rust API (`Client::semaphore`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dlock_host::bundled::BundledScript;
use dlock_host::redis_rs::{RedisError, Value, aio::MultiplexedConnection, cmd};
use dlock_host::{Deadline, Error, LockOptions, ReleaseOutcome};
use dlock_tests::{exists, raw, redis};

type Conn = MultiplexedConnection;

fn token(n: u64) -> String {
    format!("0f8fad5b-d9cb-469f-a165-{n:012x}")
}

async fn eval(
    conn: &mut Conn,
    script: BundledScript,
    keys: &[&str],
    args: &[&str],
) -> Result<Value, RedisError> {
    cmd("EVAL")
        .arg(script.source())
        .arg(keys.len())
        .arg(keys)
        .arg(args)
        .query_async(conn)
        .await
}

async fn int(conn: &mut Conn, script: BundledScript, keys: &[&str], args: &[&str]) -> i64 {
    match eval(conn, script, keys, args).await {
        Ok(Value::Int(n)) => n,
        other => panic!("{script:?} {keys:?} {args:?}: {other:?}"),
    }
}

/// `semaphore_acquire` of `permits` of `limit` for `token` with a lease of `ttl_ms`.
async fn acquire(
    conn: &mut Conn,
    key: &str,
    token: &str,
    ttl_ms: u64,
    limit: u32,
    permits: u32,
) -> i64 {
    let args = [
        token,
        &ttl_ms.to_string(),
        &limit.to_string(),
        &permits.to_string(),
    ];
    int(conn, BundledScript::SemaphoreAcquire, &[key], &args).await
}

async fn release(conn: &mut Conn, key: &str, token: &str, permits: u32) -> i64 {
    let args = [token, &permits.to_string()];
    int(conn, BundledScript::SemaphoreRelease, &[key], &args).await
}

/// `semaphore_count`: (permits held, ms until the first lease ends).
async fn count(conn: &mut Conn, key: &str) -> (i64, i64) {
    match eval(conn, BundledScript::SemaphoreCount, &[key], &[]).await {
        Ok(Value::Array(items)) => match items.as_slice() {
            [Value::Int(held), Value::Int(ms)] => (*held, *ms),
            other => panic!("semaphore_count: {other:?}"),
        },
        other => panic!("semaphore_count: {other:?}"),
    }
}

async fn zcard(conn: &mut Conn, key: &str) -> i64 {
    cmd("ZCARD").arg(key).query_async(conn).await.unwrap()
}

async fn members(conn: &mut Conn, key: &str) -> Vec<(String, String)> {
    cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .unwrap()
}

/// Many clients taking one or two permits of five and giving them back: the permits the
/// clients believe they hold never add up to more than the limit, and every client gets its
/// turns. A client counts its permits after the grant and uncounts them before the release
/// is sent, so a sum over the limit can only mean two grants overlapped in Redis.
#[tokio::test]
async fn the_permits_held_never_exceed_the_limit() {
    const LIMIT: u32 = 5;
    const CLIENTS: u64 = 12;
    const TURNS: u32 = 40;
    let server = redis();
    let held = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut conn = raw(&server).await;
        let (held, most) = (held.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            let mut turns = 0;
            let mut n = 0;
            while turns < TURNS {
                n += 1;
                let token = token(c << 32 | n);
                let permits = 1 + (c % 2) as u32;
                if acquire(&mut conn, "pool", &token, 60_000, LIMIT, permits).await == 0 {
                    tokio::task::yield_now().await;
                    continue;
                }
                let now = held.fetch_add(permits.into(), Ordering::SeqCst) + i64::from(permits);
                most.fetch_max(now, Ordering::SeqCst);
                assert!(zcard(&mut conn, "pool").await <= LIMIT.into());
                held.fetch_sub(permits.into(), Ordering::SeqCst);
                assert_eq!(release(&mut conn, "pool", &token, permits).await, 1);
                turns += 1;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= LIMIT.into(),
        "{most} permits held at once, over {LIMIT}"
    );
    let mut conn = raw(&server).await;
    assert!(!exists(&mut conn, "pool").await, "the empty set is deleted");
}

#[tokio::test]
async fn a_semaphore_grants_up_to_its_limit_and_a_release_frees_permits() {
    let server = redis();
    let mut conn = raw(&server).await;
    let (a, b, c) = (token(1), token(2), token(3));
    assert_eq!(acquire(&mut conn, "s", &a, 60_000, 3, 2).await, 1);
    assert_eq!(
        acquire(&mut conn, "s", &b, 60_000, 3, 2).await,
        0,
        "2 + 2 > 3"
    );
    assert_eq!(acquire(&mut conn, "s", &c, 60_000, 3, 1).await, 1);
    let (held, first_ends) = count(&mut conn, "s").await;
    assert_eq!(held, 3);
    assert!((1..=60_000).contains(&first_ends), "{first_ends}");
    assert_eq!(release(&mut conn, "s", &a, 2).await, 1);
    assert_eq!(release(&mut conn, "s", &a, 2).await, 0, "released already");
    assert_eq!(acquire(&mut conn, "s", &b, 60_000, 3, 2).await, 1);
    assert_eq!(count(&mut conn, "s").await.0, 3);
}

/// A retry of an acquisition whose reply was lost renews it and reports it again: it never
/// takes a second set of permits nor a second fence.
#[tokio::test]
async fn a_retried_acquisition_takes_nothing_twice() {
    let server = redis();
    let mut conn = raw(&server).await;
    let keys = ["r", "{r}:fence"];
    let t = token(7);
    let args = [t.as_str(), "60000", "4", "2"];
    let first = int(&mut conn, BundledScript::SemaphoreAcquire, &keys, &args).await;
    let again = int(&mut conn, BundledScript::SemaphoreAcquire, &keys, &args).await;
    assert_eq!((first, again), (1, 1));
    assert_eq!(zcard(&mut conn, "r").await, 2);
    let more = [t.as_str(), "60000", "1000", "5"];
    let renewed = int(&mut conn, BundledScript::SemaphoreAcquire, &keys, &more).await;
    assert_eq!(renewed, 1);
    assert_eq!(
        zcard(&mut conn, "r").await,
        2,
        "a retry asking more renews what it took"
    );
    let other = token(8);
    let args = [other.as_str(), "60000", "4", "2"];
    assert_eq!(
        int(&mut conn, BundledScript::SemaphoreAcquire, &keys, &args).await,
        2
    );
}

#[tokio::test]
async fn fences_increase_across_every_permit_of_a_semaphore() {
    let server = redis();
    let mut conn = raw(&server).await;
    let keys = ["f", "{f}:fence"];
    let mut last = 0;
    for n in 0..6 {
        let t = token(n);
        let args = [t.as_str(), "60000", "4", "1"];
        let fence = int(&mut conn, BundledScript::SemaphoreAcquire, &keys, &args).await;
        assert!(fence > last, "fence {fence} after {last}");
        last = fence;
        if n % 2 == 1 {
            assert_eq!(release(&mut conn, "f", &t, 1).await, 1);
        }
    }
}

/// A permit whose lease has ended (its score, Redis's time at the lease's end, is past) no
/// longer counts: the next acquisition removes it, and its holder's release and extend find
/// it gone.
#[tokio::test]
async fn permits_whose_lease_ended_are_reclaimed() {
    let server = redis();
    let mut conn = raw(&server).await;
    let stale = token(1);
    let _: i64 = cmd("ZADD")
        .arg("e")
        .arg(1)
        .arg(format!("{stale}:1"))
        .arg(1)
        .arg(format!("{stale}:2"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count(&mut conn, "e").await, (0, -1));
    assert_eq!(acquire(&mut conn, "e", &token(2), 60_000, 2, 2).await, 1);
    let left: Vec<String> = members(&mut conn, "e")
        .await
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(left, [format!("{}:1", token(2)), format!("{}:2", token(2))]);
    let args = [stale.as_str(), "1000", "2"];
    assert_eq!(
        int(&mut conn, BundledScript::SemaphoreExtend, &["e"], &args).await,
        0
    );
    assert_eq!(release(&mut conn, "e", &stale, 2).await, 0);
    assert_eq!(count(&mut conn, "e").await.0, 2);
}

/// The set expires when its longest lease ends, and no sooner however the leases change: a
/// longer lease pushes its expiry out, a shorter one leaves it. A set whose expiry was taken
/// away gets its longest lease's end back at the next acquisition.
#[tokio::test]
async fn the_set_expires_no_sooner_than_its_longest_lease() {
    let server = redis();
    let mut conn = raw(&server).await;
    let (short, long) = (token(1), token(2));
    assert_eq!(acquire(&mut conn, "x", &short, 10_000, 3, 1).await, 1);
    assert_eq!(acquire(&mut conn, "x", &long, 600_000, 3, 1).await, 1);
    let score = |conn: &mut Conn, t: String| {
        let mut conn = conn.clone();
        async move {
            let s: f64 = cmd("ZSCORE")
                .arg("x")
                .arg(format!("{t}:1"))
                .query_async(&mut conn)
                .await
                .unwrap();
            s
        }
    };
    let expires_at = |conn: &mut Conn| {
        let mut conn = conn.clone();
        async move {
            let at: f64 = cmd("PEXPIRETIME")
                .arg("x")
                .query_async(&mut conn)
                .await
                .unwrap();
            at
        }
    };
    assert_eq!(
        expires_at(&mut conn).await,
        score(&mut conn, long.clone()).await
    );
    let args = [long.as_str(), "20000", "1"];
    assert_eq!(
        int(&mut conn, BundledScript::SemaphoreExtend, &["x"], &args).await,
        1
    );
    let pttl = dlock_tests::pttl(&mut conn, "x").await;
    assert!(pttl > 500_000, "a shorter lease leaves the expiry: {pttl}");
    let args = [short.as_str(), "900000", "1"];
    assert_eq!(
        int(&mut conn, BundledScript::SemaphoreExtend, &["x"], &args).await,
        1
    );
    assert_eq!(
        expires_at(&mut conn).await,
        score(&mut conn, short.clone()).await
    );
    let _: () = cmd("PERSIST")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acquire(&mut conn, "x", &token(3), 1000, 3, 1).await, 1);
    assert_eq!(expires_at(&mut conn).await, score(&mut conn, short).await);
}

/// Values that are not a dlock semaphore, under a key given to the semaphore scripts: another
/// type, or a sorted set of another library (redis-semaphore keeps holders scored by when
/// they acquired, which would look like ended leases). Every script refuses or finds
/// nothing, and nothing is changed. The mutex's scripts leave a semaphore alone the same way.
#[tokio::test]
async fn data_that_is_no_dlock_semaphore_is_left_untouched() {
    let server = redis();
    let mut conn = raw(&server).await;
    let t = token(1);
    let _: () = cmd("SET")
        .arg("string")
        .arg(&t)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = cmd("HSET")
        .arg("hash")
        .arg("f")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = cmd("ZADD")
        .arg("theirs")
        .arg(1_700_000_000_000_u64)
        .arg("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in ["string", "hash"] {
        assert_eq!(acquire(&mut conn, key, &t, 1000, 2, 1).await, -1, "{key}");
        assert_eq!(release(&mut conn, key, &t, 1).await, -1, "{key}");
        let args = [t.as_str(), "1000", "1"];
        assert_eq!(
            int(&mut conn, BundledScript::SemaphoreExtend, &[key], &args).await,
            -1
        );
        assert_eq!(
            int(&mut conn, BundledScript::SemaphoreCount, &[key], &[]).await,
            -1
        );
    }
    assert_eq!(acquire(&mut conn, "theirs", &t, 1000, 2, 1).await, -1);
    assert_eq!(release(&mut conn, "theirs", &t, 1).await, 0);
    assert_eq!(
        members(&mut conn, "theirs").await,
        [(
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_owned(),
            "1700000000000".to_owned()
        )]
    );
    assert_eq!(dlock_tests::get(&mut conn, "string").await, Some(t.clone()));

    assert_eq!(acquire(&mut conn, "sem", &t, 60_000, 2, 1).await, 1);
    let lock = int(
        &mut conn,
        BundledScript::Acquire,
        &["sem"],
        &[&token(2), "1000"],
    )
    .await;
    assert_eq!(lock, -1, "the mutex's acquire finds no lock there");
    assert_eq!(
        int(&mut conn, BundledScript::Release, &["sem"], &[&t]).await,
        -1
    );
    assert_eq!(
        int(&mut conn, BundledScript::Extend, &["sem"], &[&t, "5"]).await,
        -1
    );
    assert_eq!(zcard(&mut conn, "sem").await, 1);
}

#[tokio::test]
async fn asking_more_permits_than_the_limit_is_an_error_that_writes_nothing() {
    let server = redis();
    let mut conn = raw(&server).await;
    let t = token(1);
    let args = [t.as_str(), "1000", "2", "3"];
    let err = eval(
        &mut conn,
        BundledScript::SemaphoreAcquire,
        &["big", "{big}:fence"],
        &args,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("3 permits asked of a semaphore of 2"),
        "{err}"
    );
    assert_eq!(dlock_tests::dbsize(&mut conn).await, 0);
}

/// Through the Rust API: a client's semaphore grants up to its limit, its handles give back
/// and renew their permits, and the state counts them.
#[tokio::test]
async fn a_clients_semaphore_grants_up_to_its_limit() {
    let server = redis();
    let (_rt, client) = dlock_tests::client(&server).await;
    let pool = client.semaphore("pool", 3);
    let ttl = Duration::from_secs(60);
    let two = pool.try_acquire(2, ttl).await.unwrap().expect("3 free");
    let one = pool.try_acquire(1, ttl).await.unwrap().expect("1 free");
    assert!(
        pool.try_acquire(1, ttl).await.unwrap().is_none(),
        "none free"
    );
    let state = pool.state().await.unwrap();
    assert_eq!(state.held, 3);
    assert!(state.first_ends_in.is_some_and(|d| d <= ttl), "{state:?}");
    assert_eq!(two.release().await.unwrap(), ReleaseOutcome::Released);
    assert_eq!(
        two.release().await.unwrap_err().to_string(),
        Error::NotHeld.to_string()
    );
    let again = pool.acquire(2, ttl).await.unwrap();
    assert!(again.is_held() && one.is_held());
    assert_ne!(again.info().token, two.info().token);

    let mut conn = raw(&server).await;
    let _: () = cmd("PEXPIRE")
        .arg("pool")
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    one.extend(Duration::from_secs(600)).await.unwrap();
    let pttl = dlock_tests::pttl(&mut conn, "pool").await;
    assert!(
        pttl > 500_000,
        "the set lasts as long as the renewed permit: {pttl}"
    );
    assert_eq!(one.release().await.unwrap(), ReleaseOutcome::Released);
    assert_eq!(again.release().await.unwrap(), ReleaseOutcome::Released);
    assert_eq!(pool.state().await.unwrap().held, 0);
    assert!(!exists(&mut conn, "pool").await);
}

/// Eight clients each waiting for one of three permits, holding it a moment: never more than
/// three holders at once (counted by the holders themselves, before their release is sent),
/// and every one of them gets its turn.
#[tokio::test]
async fn waiting_clients_share_the_permits_and_all_get_a_turn() {
    const LIMIT: u32 = 3;
    let server = redis();
    let rt = dlock_tests::runtime(&server).await;
    let held = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = rt.client(dlock_tests::quick_options(0)).await.unwrap();
        let (held, most) = (held.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            let pool = client.semaphore("pool", LIMIT);
            for _ in 0..5 {
                let permit = pool
                    .wait(
                        1,
                        Duration::from_secs(60),
                        Deadline::after(Duration::from_secs(60)),
                    )
                    .await
                    .unwrap();
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                held.fetch_sub(1, Ordering::SeqCst);
                assert_eq!(permit.release().await.unwrap(), ReleaseOutcome::Released);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=i64::from(LIMIT)).contains(&most),
        "{most} holders at once"
    );
}

#[tokio::test]
async fn a_fenced_semaphores_permits_get_increasing_fences() {
    let server = redis();
    let rt = dlock_tests::runtime(&server).await;
    let client = rt
        .client(LockOptions::default().with_fencing(true))
        .await
        .unwrap();
    let pool = client.semaphore("{jobs}", 2);
    let ttl = Duration::from_secs(60);
    let a = pool.acquire(1, ttl).await.unwrap();
    let b = pool.acquire(1, ttl).await.unwrap();
    assert_eq!((a.info().fence, b.info().fence), (Some(1), Some(2)));
    a.release().await.unwrap();
    let c = pool.acquire(1, ttl).await.unwrap();
    assert_eq!(c.info().fence, Some(3));
}

/// Bad limits and counts are refused before Redis sees them; a key holding other data is not
/// a semaphore, and stays as it was.
#[tokio::test]
async fn bad_requests_are_refused_and_other_data_is_left_alone() {
    let server = redis();
    let (_rt, client) = dlock_tests::client(&server).await;
    let ttl = Duration::from_secs(1);
    for (limit, count) in [(0, 1), (1001, 1), (2, 0), (2, 3)] {
        let err = client
            .semaphore("pool", limit)
            .try_acquire(count, ttl)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{limit} {count}: {err}"
        );
    }
    let mut conn = raw(&server).await;
    assert_eq!(dlock_tests::dbsize(&mut conn).await, 0);
    let _: () = cmd("SET")
        .arg("job")
        .arg("data")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = client
        .semaphore("job", 2)
        .acquire(1, ttl)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotALock), "{err}");
    assert!(matches!(
        client.semaphore("job", 2).state().await,
        Err(Error::NotALock)
    ));
    assert_eq!(
        dlock_tests::get(&mut conn, "job").await.as_deref(),
        Some("data")
    );
    let lock = client.acquire("locked", ttl).await.unwrap();
    let err = client
        .semaphore("locked", 2)
        .try_acquire(1, ttl)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotALock),
        "a lock is no semaphore: {err}"
    );
    assert!(lock.is_held());
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Released);
}

#[test]
fn the_rust_guide_shows_the_semaphore_example_as_it_is() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/RUST.md")).unwrap();
    let example = std::fs::read_to_string(root.join("host/examples/semaphore.rs")).unwrap();
    assert!(
        guide.contains(&format!("```rust\n{example}```")),
        "docs/RUST.md must show host/examples/semaphore.rs verbatim"
    );
}
