//! The watchdog against a real Redis: a kept-alive lock outlives its TTL and signals its
//! loss; `with_lock` stops the work when the lock is lost; an extend whose outcome is unknown
//! shortens what the watchdog counts on.

use std::time::Duration;

use dlock_host::{Error, KeepAliveOptions, LockOptions, Lost, ReleaseOutcome};
use dlock_tests::proxy::Fault;
use dlock_tests::{client, eventually, exists, get, pttl, raw, redis};

/// Hang guard for events that must happen (never a timing assertion).
const GUARD: Duration = Duration::from_secs(30);

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
fn the_rust_guide_shows_the_watchdog_example_as_it_is() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("docs/RUST.md")).unwrap();
    let example = std::fs::read_to_string(root.join("host/examples/watchdog.rs")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "docs/RUST.md must show host/examples/watchdog.rs verbatim"
    );
}

/// `acquire(k, 10 min).keep_alive(9 s)`: the first extend runs in Redis (the key now expires
/// 9 s after it) but its reply is cut, and every later extend goes unanswered. The watchdog
/// gives the lock up before that 9 s lease ends, as the handle counts it after the unknown
/// outcome; it used to keep counting on the 10-minute lease and fire only near its end.
#[tokio::test]
async fn an_extend_lost_in_flight_shortens_what_the_watchdog_counts_on() {
    let server = redis();
    let (proxy, runtime) = dlock_tests::via_proxy(&server, Duration::from_secs(2)).await;
    let conn = raw(&server).await;
    let c = runtime.client(LockOptions::default()).await.unwrap();
    let lock = c.acquire("job", Duration::from_secs(600)).await.unwrap();
    // The extend script loaded, so that the first extend under the fault is the script
    // itself (a cut NOSCRIPT reply would never reach Redis's PEXPIRE).
    lock.extend(Duration::from_secs(600)).await.unwrap();
    let ttl = Duration::from_secs(9);
    proxy.set_fault(Fault::ResetMidReply);
    let kept = lock.keep_alive(KeepAliveOptions::new(ttl));
    eventually("the first extend to run in Redis", GUARD, || {
        let mut c = conn.clone();
        async move { (0..=9_000).contains(&pttl(&mut c, "job").await) }
    })
    .await;
    proxy.set_fault(Fault::Blackhole);
    let lost = tokio::time::timeout(Duration::from_secs(120), kept.lost())
        .await
        .expect("the watchdog still counted on the 10-minute lease");
    assert!(
        matches!(lost, Lost::NotKept(_) | Lost::RunningOut),
        "{lost:?}"
    );
    assert!(
        kept.valid_until() <= std::time::Instant::now() + ttl,
        "the handle counts on the shorter lease"
    );
}
