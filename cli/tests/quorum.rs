//! `dlock` in quorum mode (more than one `--redis`: Redlock over independent primaries),
//! against real `redis-server`s: acquire, release, status and their exit codes, with a
//! majority up, down, or with primaries that refuse or do not answer.

mod common;

use common::{dlock_bare, listed_locks, on_quorum, ran};
use dlock_tests::{RedisServer, dbsize, exists, get, raw, redis, signal_server};
use rustix::process::Signal;

#[tokio::test]
async fn status_in_quorum_mode_lists_what_a_majority_holds_and_needs_a_majority_answering() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let r = ran(on_quorum(&servers).args(["acquire", "a", "--ttl", "1m"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = r.stdout;
    // "b" on the first primary only (an acquire that did not reach a quorum), "c" on the two
    // others (taken while the first was down).
    for (server, key) in [(0, "b"), (1, "c"), (2, "c")] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(format!("token-{key}"))
            .arg("PX")
            .arg(60_000)
            .query_async(&mut raw(&servers[server]).await)
            .await
            .unwrap();
    }
    let held = vec![("a".to_owned(), a), ("c".to_owned(), "token-c".to_owned())];
    assert_eq!(listed_locks(&mut on_quorum(&servers), &[]).await, held);
    // The first primary frozen: the two others still make a majority.
    signal_server(&servers[0], Signal::STOP);
    assert_eq!(listed_locks(&mut on_quorum(&servers), &[]).await, held);
    signal_server(&servers[0], Signal::CONT);
    servers[1].stop();
    servers[2].stop();
    let r = ran(on_quorum(&servers).args(["status"])).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no quorum"), "{}", r.stderr);
}

#[tokio::test]
async fn repeated_redis_urls_are_a_quorum_and_a_majority_down_exits_3_saying_no_quorum() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let r = ran(on_quorum(&servers).args(["acquire", "job", "--ttl", "30s"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    for server in &servers {
        assert_eq!(
            get(&mut raw(server).await, "job").await.as_deref(),
            Some(r.stdout.as_str())
        );
    }
    // The same quorum as a comma list in DLOCK_REDIS_URL.
    let list: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let r2 = ran(dlock_bare()
        .env("DLOCK_REDIS_URL", list.join(","))
        .args(["release", "job", &r.stdout]))
    .await;
    assert_eq!(r2.code, 0, "{}", r2.stderr);
    assert!(!exists(&mut raw(&servers[2]).await, "job").await);

    // Fencing cannot be made safe over independent primaries.
    let r = ran(on_quorum(&servers).args(["acquire", "job", "--ttl", "30s", "--fence"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("fencing is not available"),
        "{}",
        r.stderr
    );

    // One down: still a majority. Two down: no quorum, exit 3, nothing left on the survivor.
    servers[0].stop();
    let r = ran(on_quorum(&servers).args(["acquire", "job", "--ttl", "30s"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ran(on_quorum(&servers).args(["release", "job", &r.stdout])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    servers[1].stop();
    let r = ran(on_quorum(&servers).args(["acquire", "job", "--ttl", "30s"])).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no quorum"), "{}", r.stderr);
    assert_eq!(dbsize(&mut raw(&servers[2]).await).await, 0);
}

/// A release that one primary refuses (no `DEL` for its user) and another cannot hear
/// (stopped) leaves a majority that may hold the token: exit 6, and the same release run
/// again completes once the silent one answers.
#[tokio::test]
async fn a_quorum_release_a_majority_did_not_confirm_exits_6_and_can_be_run_again() {
    let servers: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let r = ran(on_quorum(&servers).args(["acquire", "job", "--ttl", "1m"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = r.stdout;
    dlock_tests::default_user(&servers[2], &["-del"]).await;
    signal_server(&servers[1], Signal::STOP);
    let r = ran(on_quorum(&servers).args(["release", "job", &token])).await;
    signal_server(&servers[1], Signal::CONT);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("1 of 3 Redis primaries confirmed the release, 2 needed"),
        "{}",
        r.stderr
    );
    assert!(!exists(&mut raw(&servers[0]).await, "job").await);
    assert_eq!(
        get(&mut raw(&servers[2]).await, "job").await.as_deref(),
        Some(token.as_str()),
        "the refusing primary keeps the token until its TTL"
    );
    let r = ran(on_quorum(&servers).args(["release", "job", &token])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!exists(&mut raw(&servers[1]).await, "job").await);
}

/// The repro of a contended acquire over three primaries, one of which refuses every write
/// (`maxmemory 1`): it waits for the holder like the others and ends busy (exit 1) at its
/// deadline, or takes the lock once the holder releases, instead of failing at once.
#[tokio::test]
async fn a_contended_acquire_with_one_primary_out_of_memory_waits_for_the_holder() {
    let servers: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let r = ran(on_quorum(&servers).args(["acquire", "job", "--ttl", "1m"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let holder = r.stdout;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut raw(&servers[2]).await)
        .await
        .unwrap();
    let r = ran(on_quorum(&servers).args(["acquire", "job", "--ttl", "1m", "--wait", "1s"])).await;
    assert_eq!(r.code, 1, "busy, not failing: {}", r.stderr);
    let r = ran(on_quorum(&servers).args(["release", "job", &holder])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ran(on_quorum(&servers).args(["acquire", "job", "--ttl", "1m", "--wait", "5s"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    for server in &servers[..2] {
        assert_eq!(
            get(&mut raw(server).await, "job").await.as_deref(),
            Some(r.stdout.as_str())
        );
    }
}
