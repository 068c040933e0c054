//! Faults injected, histories checked. Lock clients run as separate `dlock worker` processes
//! (real host, real component) that the tests pause, kill or cut off; every operation is
//! recorded and the history is judged by `dlock_tests::history` (I1 mutual exclusion, I2
//! fencing, I3 ownership, I4 lost updates, T1 timeouts, C1 cleanup). Where a scenario is
//! documented as unsafe, the test asserts that the checker does see the damage.

use std::path::Path;
use std::time::Duration;

use dlock_host::{Error, HandleStatus, LockOptions, Runtime};
use dlock_tests::driver::Driven;
use dlock_tests::history::{Check, FinalState, Recorder, Report};
use dlock_tests::proxy::{Fault, Proxy};
use dlock_tests::workers::{Outcome, Worker};
use dlock_tests::{RedisServer, eventually, exists, get, raw, redis, signal_server};
use rustix::process::Signal;

const SECOND: Duration = Duration::from_secs(1);
/// The bound on one worker call in these scenarios (default command timeout 2 s, retries).
const CALL_BOUND: Duration = Duration::from_secs(30);

pub(crate) fn worker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_worker"))
}

async fn spawn(url: &str, resource_url: &str, id: u32, recorder: &Recorder) -> Driven {
    Driven::new(
        Worker::spawn(worker(), url, resource_url).await.unwrap(),
        id,
        recorder,
    )
}

pub(crate) async fn set_contents(
    conn: &mut redis::aio::MultiplexedConnection,
    set: &str,
) -> Vec<String> {
    get(conn, set)
        .await
        .map(|v| {
            v.split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A recorder and two workers, A and B, on `server`.
async fn pair(server: &RedisServer) -> (Recorder, Driven, Driven) {
    let recorder = Recorder::new();
    let a = spawn(&server.url(), &server.url(), 1, &recorder).await;
    let b = spawn(&server.url(), &server.url(), 2, &recorder).await;
    (recorder, a, b)
}

/// Acquires `job` for `ttl` at once, and insists it worked.
async fn take(client: &mut Driven, ttl: Duration) -> dlock_tests::workers::Reply {
    let got = client
        .acquire("job", ttl, Duration::ZERO, CALL_BOUND)
        .await
        .unwrap();
    assert_eq!(got.outcome, Outcome::Ok, "{got:?}");
    got
}

/// Waits until `key` is gone from Redis.
async fn until_absent(conn: &redis::aio::MultiplexedConnection, key: &str, what: &str) {
    eventually(what, 10 * SECOND, || {
        let mut c = conn.clone();
        async move { !exists(&mut c, key).await }
    })
    .await;
}

/// One round of the standard workload: lock, fenced write, guarded add, unlock.
pub(crate) async fn round(client: &mut Driven, key: &str, element: &str, hold: Duration) {
    let acquired = client
        .acquire(key, 5 * SECOND, 60 * SECOND, CALL_BOUND)
        .await;
    if acquired.is_none_or(|r| r.outcome != Outcome::Ok) {
        return;
    }
    client.fenced_write("fenced", element).await;
    if client
        .guarded_read("set", element)
        .await
        .is_some_and(|r| r.outcome == Outcome::Ok)
    {
        tokio::time::sleep(hold).await;
        client.guarded_write("set", element, false).await;
    }
    client.release().await;
}

async fn final_state(conn: &mut redis::aio::MultiplexedConnection, keys: &[&str]) -> FinalState {
    let mut state = FinalState::default().with_set("set", set_contents(conn, "set").await);
    for key in keys {
        if exists(conn, key).await {
            state.leftover_keys.push((*key).to_owned());
        }
    }
    state
}

/// Waits until the workers' rounds have added at least `n` elements to the shared set, and
/// returns how many it holds.
pub(crate) async fn until_rounds(
    conn: &redis::aio::MultiplexedConnection,
    what: &str,
    n: usize,
) -> usize {
    eventually(what, 60 * SECOND, || {
        let mut c = conn.clone();
        async move { set_contents(&mut c, "set").await.len() >= n }
    })
    .await;
    set_contents(&mut conn.clone(), "set").await.len()
}

/// Judges the recorded history against the shared set's final contents, with `leftover`
/// among the keys left behind when the caller found it still in Redis.
pub(crate) async fn assert_rounds_clean(
    recorder: &Recorder,
    conn: &redis::aio::MultiplexedConnection,
    leftover: Option<&str>,
) {
    let contents = set_contents(&mut conn.clone(), "set").await;
    let mut state = FinalState::default().with_set("set", contents);
    state.leftover_keys.extend(leftover.map(str::to_owned));
    let report = recorder.history().check(&state);
    println!("{}", report.summary());
    assert_clean(&report);
}

pub(crate) fn assert_clean(report: &Report) {
    assert!(report.is_ok(), "{report}");
    assert!(
        report.holds > 0,
        "nothing was checked: {}",
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_workers_on_one_hot_key_keep_every_invariant() {
    let server = redis();
    let recorder = Recorder::new();
    let mut tasks = Vec::new();
    for id in 0..16 {
        let mut client = spawn(&server.url(), &server.url(), id, &recorder).await;
        tasks.push(tokio::spawn(async move {
            for r in 0..25u64 {
                let hold = Duration::from_millis((u64::from(id) * 7 + r * 13) % 4);
                round(&mut client, "hot", &format!("w{id}r{r}"), hold).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut conn = raw(&server).await;
    let report = recorder
        .history()
        .check(&final_state(&mut conn, &["hot"]).await);
    assert_clean(&report);
    assert!(report.ops >= 16 * 25 * 4, "{}", report.summary());
}

#[tokio::test]
async fn a_killed_holders_lock_frees_within_its_ttl() {
    let server = redis();
    let (recorder, mut a, mut b) = pair(&server).await;
    let ttl = SECOND;
    take(&mut a, ttl).await;
    a.kill().await;
    // B waits no longer than the TTL plus the backoff cap: the lock must free by then.
    let got = b
        .acquire("job", ttl, ttl + 2 * SECOND, CALL_BOUND)
        .await
        .unwrap();
    assert_eq!(got.outcome, Outcome::Ok, "{got:?}");
    b.release().await;
    let mut conn = raw(&server).await;
    assert_clean(
        &recorder
            .history()
            .check(&final_state(&mut conn, &["job"]).await),
    );
}

#[tokio::test]
async fn a_paused_holder_is_fenced_off_and_the_unfenced_control_shows_the_lost_update() {
    let server = redis();
    let (recorder, mut a, mut b) = pair(&server).await;
    let ttl = SECOND;
    take(&mut a, ttl).await;
    a.guarded_read("set", "from-a").await.unwrap();

    // A is paused past its TTL; B takes the lock and writes.
    a.worker.signal(Signal::STOP);
    let got = b.acquire("job", ttl, 5 * SECOND, CALL_BOUND).await.unwrap();
    assert_eq!(got.outcome, Outcome::Ok);
    assert_eq!(
        b.fenced_write("fenced", "from-b").await.unwrap().outcome,
        Outcome::Ok
    );
    b.guarded_read("set", "from-b").await.unwrap();
    b.guarded_write("set", "from-b", false).await.unwrap();
    b.release().await;

    // A resumes believing nothing happened.
    a.worker.signal(Signal::CONT);
    assert_eq!(
        a.guarded_write("set", "from-a", false)
            .await
            .unwrap()
            .outcome,
        Outcome::Ok
    );
    let stale = a.fenced_write("fenced", "from-a").await.unwrap();
    assert_eq!(
        stale.outcome,
        Outcome::Fail,
        "the stale write must be rejected: {stale:?}"
    );
    assert_eq!(
        a.extend(ttl, CALL_BOUND).await.unwrap().outcome,
        Outcome::Fail
    );
    assert_eq!(a.release().await.unwrap().outcome, Outcome::Fail);

    let mut conn = raw(&server).await;
    let fenced: Vec<String> = redis::cmd("LRANGE")
        .arg("fenced")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fenced, ["from-b"]);
    let report = recorder
        .history()
        .check(&final_state(&mut conn, &["job"]).await);
    // The lock itself held: one holder at a time, fences in order, the stale write refused.
    for check in [
        Check::MutualExclusion,
        Check::Fencing,
        Check::Ownership,
        Check::Timeout,
        Check::Cleanup,
    ] {
        assert!(report.violations_of(check).is_empty(), "{report}");
    }
    // The unfenced control lost B's update, and the checker names it.
    let lost = report.violations_of(Check::LostUpdate);
    assert_eq!(lost.len(), 1, "{report}");
    assert!(lost[0].message.contains("from-b"), "{report}");
}

#[tokio::test]
async fn a_paused_redis_times_calls_out_within_bound_and_recovers() {
    let server = redis();
    let (recorder, mut a, mut b) = pair(&server).await;
    let ttl = SECOND;
    // Command timeout 2 s: an extend is one Redis call.
    let extend_bound = 2 * SECOND;

    // Shorter than the TTL: the call waits it out and succeeds.
    take(&mut a, ttl).await;
    signal_server(&server, Signal::STOP);
    let pause = tokio::spawn(async { tokio::time::sleep(Duration::from_millis(300)).await });
    let extended = a.extend(ttl, extend_bound);
    let (extended, _) = tokio::join!(extended, async {
        pause.await.unwrap();
        signal_server(&server, Signal::CONT);
    });
    assert_eq!(extended.unwrap().outcome, Outcome::Ok);

    // Longer than the TTL and the timeout: the call gives up in time, as unknown.
    signal_server(&server, Signal::STOP);
    let extended = a.extend(ttl, extend_bound).await.unwrap();
    signal_server(&server, Signal::CONT);
    assert_eq!(extended.outcome, Outcome::Unknown, "{extended:?}");
    // Recovery: the lock frees with its TTL and another client takes it.
    let got = b.acquire("job", ttl, 5 * SECOND, CALL_BOUND).await.unwrap();
    assert_eq!(got.outcome, Outcome::Ok);
    b.release().await;
    assert_eq!(a.release().await.unwrap().outcome, Outcome::Fail);

    let mut conn = raw(&server).await;
    assert_clean(
        &recorder
            .history()
            .check(&final_state(&mut conn, &["job"]).await),
    );
}

#[tokio::test]
async fn a_restart_without_persistence_lets_a_second_holder_in_but_fencing_holds() {
    let mut server = redis();
    let resource = redis();
    let recorder = Recorder::new();
    let mut a = spawn(&server.url(), &resource.url(), 1, &recorder).await;
    let mut b = spawn(&server.url(), &resource.url(), 2, &recorder).await;
    let ttl = 10 * SECOND;
    let got = a
        .acquire("job", ttl, Duration::ZERO, CALL_BOUND)
        .await
        .unwrap();
    assert_eq!((got.outcome, got.fence), (Outcome::Ok, Some(1)));
    assert_eq!(
        a.fenced_write("fenced", "from-a").await.unwrap().outcome,
        Outcome::Ok
    );

    server.restart().unwrap();
    // The lock and its fence counter are gone: B gets the lock while A still believes it holds.
    let mut got = None;
    for _ in 0..50 {
        got = b.acquire("job", ttl, SECOND, CALL_BOUND).await;
        if got.as_ref().is_some_and(|r| r.outcome == Outcome::Ok) {
            break;
        }
    }
    assert_eq!(got.unwrap().outcome, Outcome::Ok);
    // The fenced resource still refuses the stale holder (and, fences having restarted, B too:
    // safe, not live).
    assert_eq!(
        a.fenced_write("fenced", "again-from-a")
            .await
            .unwrap()
            .outcome,
        Outcome::Fail
    );
    let mut res = raw(&resource).await;
    let fenced: Vec<String> = redis::cmd("LRANGE")
        .arg("fenced")
        .arg(0)
        .arg(-1)
        .query_async(&mut res)
        .await
        .unwrap();
    assert_eq!(fenced, ["from-a"]);
    // And the checker sees the two holders: this is the documented unsafety.
    let report = recorder.history().check(&FinalState::default());
    assert!(
        !report.violations_of(Check::MutualExclusion).is_empty(),
        "{report}"
    );
}

#[tokio::test]
async fn with_appendfsync_always_locks_and_fences_survive_a_crash() {
    let mut server =
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).unwrap();
    let (recorder, mut a, mut b) = pair(&server).await;
    // Long enough that a restart on a loaded machine (AOF loaded before it answers) ends
    // well within the lease.
    let ttl = 10 * SECOND;
    let token = take(&mut a, ttl).await.token.unwrap();
    server.restart().unwrap();
    let mut conn = raw(&server).await;
    assert_eq!(
        get(&mut conn, "job").await,
        Some(token),
        "the lock survived"
    );
    assert_eq!(
        get(&mut conn, "{job}:fence").await.as_deref(),
        Some("1"),
        "the fence survived"
    );
    // Still locked for B until A's lease ends; then B gets the next fence, not 1 again.
    let busy = b
        .acquire("job", ttl, Duration::from_millis(300), CALL_BOUND)
        .await
        .unwrap();
    assert_eq!(busy.outcome, Outcome::Fail);
    let got = b
        .acquire("job", ttl, 3 * ttl, CALL_BOUND + 3 * ttl)
        .await
        .unwrap();
    assert_eq!((got.outcome, got.fence), (Outcome::Ok, Some(2)));
    let report = recorder.history().check(&FinalState::default());
    assert!(
        report.violations_of(Check::MutualExclusion).is_empty(),
        "{report}"
    );
}

#[tokio::test]
async fn client_pause_longer_than_the_ttl_breaks_no_invariant() {
    let server = redis();
    let (recorder, mut a, mut b) = pair(&server).await;
    let ttl = SECOND;
    take(&mut a, ttl).await;
    let mut admin = raw(&server).await;
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2500)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let extended = a.extend(ttl, 2 * SECOND).await.unwrap();
    assert_eq!(extended.outcome, Outcome::Unknown, "{extended:?}");
    let got = b
        .acquire("job", ttl, 10 * SECOND, CALL_BOUND)
        .await
        .unwrap();
    assert_eq!(got.outcome, Outcome::Ok);
    b.release().await;
    a.release().await;
    let mut conn = raw(&server).await;
    assert_clean(
        &recorder
            .history()
            .check(&final_state(&mut conn, &["job"]).await),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_under_load_is_transparent() {
    let server = redis();
    let recorder = Recorder::new();
    let mut tasks = Vec::new();
    for id in 0..8 {
        let mut client = spawn(&server.url(), &server.url(), id, &recorder).await;
        tasks.push(tokio::spawn(async move {
            for r in 0..15 {
                round(&mut client, "hot", &format!("w{id}r{r}"), Duration::ZERO).await;
            }
        }));
    }
    let mut admin = raw(&server).await;
    let flusher = tokio::spawn(async move {
        for _ in 0..100 {
            let () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut admin)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for task in tasks {
        task.await.unwrap();
    }
    flusher.abort();
    let mut conn = raw(&server).await;
    let report = recorder
        .history()
        .check(&final_state(&mut conn, &["hot"]).await);
    assert_clean(&report);
    let failed: usize = report
        .counts
        .iter()
        .filter(|((_, outcome), _)| *outcome != dlock_tests::history::Outcome::Ok)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed, 0, "{}", report.summary());
}

/// A runtime whose Redis connection runs through a proxy, with a short command timeout.
async fn via_proxy(server: &RedisServer) -> (Proxy, Runtime) {
    dlock_tests::via_proxy(server, SECOND).await
}

#[tokio::test]
async fn a_grant_slower_than_its_ttl_is_never_reported_as_a_lock() {
    let server = redis();
    let (proxy, runtime) = via_proxy(&server).await;
    let client = runtime.client(LockOptions::default()).await.unwrap();
    // Load the scripts first, so that what follows is one round trip per call.
    client
        .try_acquire("warm-up", SECOND)
        .await
        .unwrap()
        .unwrap()
        .release()
        .await
        .unwrap();
    // 150 ms each way: the grant comes back 300 ms after it was sent, past a 250 ms lease.
    proxy.set_fault(Fault::Latency(Duration::from_millis(150)));
    let got = client.try_acquire("job", Duration::from_millis(250)).await;
    assert!(
        matches!(got, Err(Error::GrantedTooLate)),
        "a lock with no validity left was reported, or reported as busy: {:?}",
        got.map(|h| h.is_some())
    );
    let conn = raw(&server).await;
    until_absent(
        &conn,
        "job",
        "the worthless grant to be given back or expire",
    )
    .await;
    proxy.set_fault(Fault::None);
    assert!(client.try_acquire("job", SECOND).await.unwrap().is_some());
}

#[tokio::test]
async fn a_blackholed_acquire_is_an_unknown_outcome_and_never_two_successes() {
    let server = redis();
    let (proxy, runtime) = via_proxy(&server).await;
    let client = runtime.client(LockOptions::default()).await.unwrap();
    proxy.set_fault(Fault::Blackhole);
    let err = client.try_acquire("job", 5 * SECOND).await.err().unwrap();
    assert!(matches!(err, Error::RedisTimeout), "{err:?}");
    assert!(err.is_retryable());
    proxy.set_fault(Fault::None);
    proxy.reset_all();
    let conn = raw(&server).await;
    eventually("the connection to recover", 10 * SECOND, || {
        let client = &client;
        async move { matches!(client.is_locked("job").await, Ok(false)) }
    })
    .await;
    let mut c = conn.clone();
    assert!(!exists(&mut c, "job").await);
}

#[tokio::test]
async fn cut_replies_give_errors_or_one_lock_never_a_false_success() {
    let server = redis();
    let (proxy, runtime) = via_proxy(&server).await;
    let mut conn = raw(&server).await;
    for (i, fault) in [Fault::ResetMidReply, Fault::Truncate, Fault::Slice]
        .into_iter()
        .enumerate()
    {
        let key = format!("job{i}");
        let client = runtime.client(LockOptions::default()).await.unwrap();
        proxy.set_fault(fault);
        let got = client.acquire(&key, 10 * SECOND).await;
        proxy.set_fault(Fault::None);
        match got {
            // Retries reuse the token: a success is the one lock, and Redis agrees.
            Ok(lock) => {
                let token = lock.info().token;
                assert_eq!(get(&mut conn, &key).await, Some(token), "{fault:?}");
            }
            // A failure leaves no lock of this client behind.
            Err(e) => {
                assert!(e.is_retryable(), "{fault:?}: {e:?}");
                until_absent(&conn, &key, "no lock left behind").await;
            }
        }
    }
}

#[tokio::test]
async fn a_lost_lease_is_reported_lost_and_refuses_further_extends() {
    let server = redis();
    let rt = Runtime::connect(&server.url()).await.unwrap();
    let options = LockOptions::default().with_safety_margin(Duration::from_millis(100));
    let client = rt.client(options).await.unwrap();
    let mut conn = raw(&server).await;
    let lock = client.acquire("job", 10 * SECOND).await.unwrap();
    let () = redis::cmd("SET")
        .arg("job")
        .arg("usurper")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        lock.extend(10 * SECOND).await,
        Err(Error::TakenOver)
    ));
    let info = lock.info();
    assert_eq!(info.status, HandleStatus::Lost);
    assert_ne!(info.status, HandleStatus::Held);
    // Lost: it fails the same way again, without calling Redis.
    assert!(matches!(
        lock.extend(10 * SECOND).await,
        Err(Error::TakenOver)
    ));
    assert_eq!(get(&mut conn, "job").await.as_deref(), Some("usurper"));

    // Within the safety margin, extend refuses without asking Redis.
    let short = client
        .acquire("short", Duration::from_millis(150))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(matches!(
        short.extend(10 * SECOND).await,
        Err(Error::Expired)
    ));
    assert_eq!(short.info().status, HandleStatus::Lost);
}
