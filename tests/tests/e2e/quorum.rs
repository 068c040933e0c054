//! Quorum mode (Redlock) over 3 and 5 independent `redis-server`s on loopback: a minority
//! killed or paused does not stop the lock, a majority down is a clear "no quorum" error that
//! leaves nothing behind, and Kleppmann's restart without persistence is shown to let a
//! second holder in (the documented negative).

use std::time::Duration;

use dlock_host::{Error, LockOptions, Policy, ReleaseOutcome, Runtime, Topology};
use dlock_tests::{
    RedisServer, eventually, exists, get, quick_options, raw, redis, signal_server,
    woken_only_by_release,
};
use rustix::process::Signal;

const TTL: Duration = Duration::from_secs(10);

/// `n` servers and a runtime in quorum mode over them, with a short command timeout so that
/// a paused server costs little.
async fn quorum(n: usize) -> (Vec<RedisServer>, Runtime) {
    quorum_timing_out_after(n, Duration::from_millis(300)).await
}

/// `n` servers and a runtime in quorum mode over them whose Redis calls time out after
/// `timeout`. Scenarios where every server is up use a long one: on a loaded machine a short
/// one turns a slow answer into a missing vote.
async fn quorum_timing_out_after(n: usize, timeout: Duration) -> (Vec<RedisServer>, Runtime) {
    let servers: Vec<RedisServer> = (0..n).map(|_| redis()).collect();
    let runtime = Runtime::builder(Topology::quorum(servers.iter().map(|s| s.url())))
        .with_policy(Policy::default().with_command_timeout(timeout))
        .build()
        .await
        .unwrap();
    (servers, runtime)
}

/// The command timeout of scenarios where every server answers.
const PATIENT: Duration = Duration::from_secs(10);

/// What `key` holds on each server that is up (`None` for a stopped one).
async fn values(servers: &[RedisServer], key: &str, up: &[bool]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for (server, &up) in servers.iter().zip(up) {
        out.push(if up {
            get(&mut raw(server).await, key).await
        } else {
            None
        });
    }
    out
}

#[tokio::test]
async fn three_primaries_hold_with_one_down_and_refuse_with_two_down_leaving_nothing_behind() {
    let (mut servers, runtime) = quorum(3).await;
    assert!(runtime.redis_url().starts_with("quorum of 3 (2 needed)"));
    let client = runtime.client(quick_options(1)).await.unwrap();

    let lock = client.acquire("job", TTL).await.unwrap();
    let token = lock.info().token;
    let all = [true; 3];
    assert_eq!(
        values(&servers, "job", &all).await,
        vec![Some(token.clone()); 3]
    );
    assert!(client.is_locked("job").await.unwrap());
    lock.extend(TTL).await.unwrap();
    lock.release().await.unwrap();
    assert_eq!(values(&servers, "job", &all).await, vec![None; 3]);

    // One killed: still a majority.
    servers[0].stop();
    let up = [false, true, true];
    let lock = client.acquire("job", TTL).await.unwrap();
    let token = lock.info().token;
    assert_eq!(
        values(&servers, "job", &up).await,
        [None, Some(token.clone()), Some(token)]
    );
    lock.extend(TTL).await.unwrap();
    lock.release().await.unwrap();

    // A second one paused: no majority. The survivor is left clean.
    signal_server(&servers[1], Signal::STOP);
    let err = client.acquire("job", TTL).await.unwrap_err();
    signal_server(&servers[1], Signal::CONT);
    let text = err.to_string();
    assert!(matches!(err, Error::RedisUnavailable(_)), "{err:?}");
    assert!(
        text.contains("no quorum: 1 of 3 Redis primaries answered, 2 needed"),
        "{text}"
    );
    assert!(err.is_retryable());
    // The survivor that answered was cleaned. (The paused one may still run the commands
    // queued for it when it resumes; a grant landing that late expires with its TTL.)
    assert!(!exists(&mut raw(&servers[2]).await, "job").await);
}

#[tokio::test]
async fn five_primaries_hold_with_two_paused_and_refuse_with_three_down_leaving_nothing_behind() {
    let (mut servers, runtime) = quorum(5).await;
    let client = runtime.client(quick_options(1)).await.unwrap();
    signal_server(&servers[0], Signal::STOP);
    signal_server(&servers[1], Signal::STOP);
    let lock = client.acquire("job", TTL).await;
    let up = [false, false, true, true, true];
    let held = values(&servers, "job", &up).await;
    signal_server(&servers[0], Signal::CONT);
    signal_server(&servers[1], Signal::CONT);
    let lock = lock.unwrap();
    let token = lock.info().token;
    assert!(lock.is_held());
    assert_eq!(
        held[2..],
        [Some(token.clone()), Some(token.clone()), Some(token)]
    );
    lock.release().await.unwrap();

    for server in &mut servers[..3] {
        server.stop();
    }
    let err = client.try_acquire("job", TTL).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no quorum: 2 of 5 Redis primaries answered, 3 needed"),
        "{err}"
    );
    for server in &servers[3..] {
        assert!(!exists(&mut raw(server).await, "job").await);
    }
    // A majority unreachable at start-up: the runtime does not start.
    let err = Runtime::connect(Topology::quorum(servers.iter().map(|s| s.url())))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("2 reachable, 3 needed"), "{err}");
}

#[tokio::test]
async fn a_busy_key_on_a_majority_is_not_acquired_and_the_minority_grant_is_given_back() {
    let (servers, runtime) = quorum(3).await;
    for server in &servers[..2] {
        let () = redis::cmd("SET")
            .arg("job")
            .arg("someone-else")
            .query_async(&mut raw(server).await)
            .await
            .unwrap();
    }
    let client = runtime.client(quick_options(0)).await.unwrap();
    assert!(client.try_acquire("job", TTL).await.unwrap().is_none());
    assert!(!exists(&mut raw(&servers[2]).await, "job").await);
    assert_eq!(
        values(&servers[..2], "job", &[true; 2]).await,
        [Some("someone-else".into()), Some("someone-else".into())]
    );
}

#[tokio::test]
async fn fencing_and_leases_within_the_drift_allowance_are_refused_over_a_quorum() {
    let (servers, runtime) = quorum(3).await;
    let err = runtime
        .client(LockOptions::default().with_fencing(true))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("fencing is not available")),
        "{err:?}"
    );
    let client = runtime.client(LockOptions::default()).await.unwrap();
    let err = client
        .acquire("job", Duration::from_millis(2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    for server in &servers {
        assert_eq!(dlock_tests::dbsize(&mut raw(server).await).await, 0);
    }
}

/// Kleppmann, "How to do distributed locking" (2016): a primary that restarts without
/// persistence forgets the locks it granted, and with it a second majority can form while
/// the first holder's lease is still valid. Redlock does not survive it; `appendfsync
/// always` on every primary (or a restarted primary kept out for one TTL) is the remedy.
#[tokio::test]
async fn a_restart_without_persistence_lets_a_second_holder_in_over_a_quorum() {
    let (mut servers, runtime) = quorum(3).await;
    let a = runtime.client(quick_options(0)).await.unwrap();
    let b = runtime.client(quick_options(5)).await.unwrap();
    // A's majority is primaries 0 and 1: 2 is down, and comes back empty.
    servers[2].stop();
    let first = a.acquire("job", TTL).await.unwrap();
    servers[2].restart().unwrap();
    // Primary 0 restarts without persistence: 0 and 2 now form a majority for B.
    servers[0].restart().unwrap();
    let second = b.acquire("job", TTL).await.unwrap();
    assert!(
        first.is_held() && second.is_held(),
        "the documented unsafety: two valid holders of one lock"
    );
    assert_ne!(first.info().token, second.info().token);
    assert_eq!(
        get(&mut raw(&servers[1]).await, "job").await,
        Some(first.info().token)
    );
}

/// Outcomes over a quorum are the majority's: a key another token holds on a majority is
/// taken over (extend fails, release reports it and leaves their keys alone); a key gone from
/// a majority has expired.
#[tokio::test]
async fn release_and_extend_outcomes_over_a_quorum_follow_the_majority() {
    let (servers, runtime) = quorum(3).await;
    let client = runtime.client(LockOptions::default()).await.unwrap();
    let other = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    let lock = client.acquire("job", TTL).await.unwrap();
    for server in &servers[..2] {
        let () = redis::cmd("SET")
            .arg("job")
            .arg(other)
            .query_async(&mut raw(server).await)
            .await
            .unwrap();
    }
    assert!(matches!(lock.extend(TTL).await, Err(Error::TakenOver)));
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::TakenOver);
    let all = [true; 3];
    assert_eq!(
        values(&servers, "job", &all).await[..2],
        [Some(other.to_owned()), Some(other.to_owned())]
    );

    let lock = client.acquire("gone", TTL).await.unwrap();
    for server in &servers[1..] {
        let () = redis::cmd("DEL")
            .arg("gone")
            .query_async::<i64>(&mut raw(server).await)
            .await
            .map(|_| ())
            .unwrap();
    }
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Expired);
}

/// Hang guard for events that must happen (never a timing assertion).
const GUARD: Duration = Duration::from_secs(30);

/// A waiter over a quorum of three that only a release wakes: its first attempt finds the lock
/// busy, and each later one follows a signal. A woken attempt may fall short once for each
/// primary the release has not reached yet (and is woken again by its signal there).
fn quorum_waiter(options: LockOptions) -> LockOptions {
    woken_only_by_release(options).with_retry_count(3)
}

/// Two clients of `runtime`: a holder, and a waiter made with [`quorum_waiter`].
async fn holder_and_waiter(runtime: &Runtime) -> (dlock_host::Client, dlock_host::Client) {
    let holder = runtime.client(LockOptions::default()).await.unwrap();
    let waiter = runtime
        .client(quorum_waiter(LockOptions::default()))
        .await
        .unwrap();
    (holder, waiter)
}

/// Raw connections to `servers`, with `key` made to last until released on each that holds it.
async fn persisted(servers: &[RedisServer], key: &str) -> Vec<redis::aio::MultiplexedConnection> {
    let mut conns = Vec::new();
    for server in servers {
        let mut conn = raw(server).await;
        let _: i64 = redis::cmd("PERSIST")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        conns.push(conn);
    }
    conns
}

/// Push wake-up over the quorum `servers`: `holder` takes "job" (made to last until
/// released), `waiter` (made with [`quorum_waiter`]) blocks at every primary, and the holder's
/// release wakes it. Hands back the waiter's handle and a connection to each primary.
async fn release_wakes_the_quorum_waiter(
    servers: &[RedisServer],
    holder: &dlock_host::Client,
    waiter: dlock_host::Client,
) -> (
    dlock_host::LockHandle,
    Vec<redis::aio::MultiplexedConnection>,
) {
    let held = holder
        .acquire("job", Duration::from_secs(60))
        .await
        .unwrap();
    let mut conns = persisted(servers, "job").await;
    let waiting = tokio::spawn(async move { waiter.acquire("job", Duration::from_secs(60)).await });
    eventually("the waiter to block at every primary", GUARD, || {
        let mut conns = conns.clone();
        async move {
            for conn in &mut conns {
                if dlock_tests::blocked_clients(conn).await != 1 {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert_eq!(held.release().await.unwrap(), ReleaseOutcome::Released);
    let got = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("the release did not wake the waiter")
        .unwrap()
        .unwrap();
    let mut holding = 0;
    for conn in &mut conns {
        // A primary may hold a value of another type in the key.
        let value = redis::cmd("GET").arg("job").query_async(conn).await;
        holding += usize::from(value.ok().flatten() == Some(got.info().token));
    }
    assert!(holding >= 2, "held on {holding} of 3 primaries");
    (got, conns)
}

/// Over a quorum a waiter marks the key on every primary and blocks on the signal list of each
/// at once; the holder's release signals every primary it reaches, the first signal wakes the
/// waiter, and it takes the lock on a majority.
#[tokio::test]
async fn a_waiter_over_a_quorum_blocks_at_every_primary_and_a_release_wakes_it() {
    let (servers, runtime) = quorum_timing_out_after(3, PATIENT).await;
    let (holder, waiter) = holder_and_waiter(&runtime).await;
    let (got, mut conns) = release_wakes_the_quorum_waiter(&servers, &holder, waiter).await;
    let mut marked = 0;
    for conn in &mut conns {
        marked += usize::from(exists(conn, "{job}:waiters").await);
    }
    assert_eq!(marked, 3, "marked on {marked} of 3 primaries");
    assert_eq!(got.release().await.unwrap(), ReleaseOutcome::Released);
}

/// The release script, run by hand on one primary as a holder's release reaching it.
async fn release_on(conn: &mut redis::aio::MultiplexedConnection, key: &str, token: &str) {
    use dlock_host::contract::{Companion, companion_key};
    let script = dlock_tests::repository::root().join("guest/scripts/release.lua");
    let released: i64 = redis::cmd("EVAL")
        .arg(std::fs::read_to_string(script).unwrap())
        .arg(3)
        .arg(key)
        .arg(companion_key(key, Companion::Signal).unwrap())
        .arg(companion_key(key, Companion::Waiters).unwrap())
        .arg(token)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(released, 1, "the token was on the primary");
}

/// A holder's release reaches the primaries one by one: a waiter woken by the first, whose
/// attempt finds the others still held, falls short of a majority; its attempt marked it as a
/// waiter there again, and the next primary's release wakes it (not its backoff: here ten
/// minutes), so it takes the lock. Before, it blocked at the first primary only and slept
/// through the others' signals (seen on a loaded machine, where a release's three writes
/// arrive far apart).
#[tokio::test]
async fn a_waiter_woken_before_the_release_reached_a_majority_is_woken_again_by_the_rest() {
    let (servers, runtime) = quorum_timing_out_after(3, PATIENT).await;
    let (holder, waiter) = holder_and_waiter(&runtime).await;
    let held = holder
        .acquire("job", Duration::from_secs(60))
        .await
        .unwrap();
    let token = held.info().token;
    let mut conns = persisted(&servers, "job").await;
    let waiting = tokio::spawn(async move {
        let got = waiter.acquire("job", Duration::from_secs(60)).await;
        (waiter, got)
    });
    let blocked_at_first = || {
        let mut first = conns[0].clone();
        async move { dlock_tests::blocked_clients(&mut first).await == 1 }
    };
    eventually(
        "the waiter to block at the first primary",
        GUARD,
        blocked_at_first,
    )
    .await;
    release_on(&mut conns[0], "job", &token).await;
    // Woken there, the waiter tries all three, takes only the first, gives it back and waits
    // again: blocked at the first primary once more, with the signal taken.
    eventually(
        "the woken attempt to fall short and wait again",
        GUARD,
        || {
            let mut first = conns[0].clone();
            async move {
                !exists(&mut first, "{job}:signal").await
                    && !exists(&mut first, "job").await
                    && dlock_tests::blocked_clients(&mut first).await == 1
            }
        },
    )
    .await;
    for conn in &mut conns[1..] {
        release_on(conn, "job", &token).await;
    }
    let (_waiter, got) = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("the releases on the other primaries did not wake the waiter")
        .unwrap();
    let got = got.unwrap();
    let mut holding = 0;
    for conn in &mut conns {
        holding += usize::from(get(conn, "job").await == Some(got.info().token));
    }
    assert!(holding >= 2, "held on {holding} of 3 primaries");
    assert_eq!(got.release().await.unwrap(), ReleaseOutcome::Released);
    drop(held);
}

/// A release is done only once a majority of the primaries confirmed the token gone: with one
/// primary refusing `DEL` (an ACL) and one stopped, only one confirms, so the release is
/// incomplete, the handle stays releasable, and the retry completes once the stopped one is
/// back.
#[tokio::test]
async fn a_release_one_primary_refuses_and_one_cannot_hear_is_incomplete_until_a_majority_confirms()
{
    // Long enough for a loaded machine's answers; the stopped primary costs one per call.
    let (servers, runtime) = quorum_timing_out_after(3, Duration::from_secs(2)).await;
    let client = runtime.client(LockOptions::default()).await.unwrap();
    let lock = client.acquire("job", TTL).await.unwrap();
    let token = lock.info().token;
    dlock_tests::default_user(&servers[2], &["-del"]).await;
    signal_server(&servers[1], Signal::STOP);
    let err = lock.release().await.unwrap_err();
    signal_server(&servers[1], Signal::CONT);
    assert!(
        matches!(&err, Error::ReleaseIncomplete(m) if m.contains("1 of 3")),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(lock.info().status, dlock_host::HandleStatus::Releasing);
    assert!(!lock.is_held());
    assert_eq!(
        get(&mut raw(&servers[2]).await, "job").await,
        Some(token.clone()),
        "the refusing primary still holds the token"
    );
    assert_eq!(lock.release().await.unwrap(), ReleaseOutcome::Released);
    assert!(!exists(&mut raw(&servers[1]).await, "job").await);
    assert!(matches!(lock.release().await, Err(Error::NotHeld)));
}

/// One primary that refuses writes (an ACL without `SET`, or out of memory) or holds a value
/// of another type in the key is one vote against: a contended acquire waits for the holder
/// as on three healthy primaries, and the holder's release wakes it; before, it failed at
/// once.
#[tokio::test]
async fn one_primary_out_of_memory_refusing_or_holding_another_type_does_not_stop_a_contended_acquire()
 {
    for fault in ["oom", "acl", "hash"] {
        let (servers, runtime) = quorum_timing_out_after(3, PATIENT).await;
        let mut third = raw(&servers[2]).await;
        match fault {
            "oom" => {
                let () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("maxmemory")
                    .arg("1")
                    .query_async(&mut third)
                    .await
                    .unwrap();
            }
            "acl" => dlock_tests::default_user(&servers[2], &["-set"]).await,
            _ => {
                let () = redis::cmd("HSET")
                    .arg("job")
                    .arg("field")
                    .arg("value")
                    .query_async::<i64>(&mut third)
                    .await
                    .map(|_| ())
                    .unwrap();
            }
        }
        let (holder, waiter) = holder_and_waiter(&runtime).await;
        let (got, mut conns) = release_wakes_the_quorum_waiter(&servers, &holder, waiter).await;
        assert_eq!(
            get(&mut conns[1], "job").await,
            Some(got.info().token),
            "{fault}"
        );
        assert_eq!(
            got.release().await.unwrap(),
            ReleaseOutcome::Released,
            "{fault}"
        );
    }
}
