//! Redis Sentinel on loopback: 3 Sentinels, a primary and a replica. Clients given a
//! `redis+sentinel://` URL follow the new primary when the old one is killed under
//! contention; and a lock the primary granted but had not replicated is lost by the failover
//! (the classic case, the documented negative), with fencing refusing the stale holder.
//! Waiters block on the primary's signal list, and on the new primary's after a failover.

use std::time::Duration;

use dlock_host::{LockOptions, Runtime};
use dlock_tests::driver::Driven;
use dlock_tests::history::Recorder;
use dlock_tests::sentinel::Sentinels;
use dlock_tests::workers::Worker;
use dlock_tests::{
    eventually, raw, redis, release_wakes_the_waiter, signal_server, woken_only_by_release,
};
use rustix::process::Signal;

use crate::reliability::{assert_rounds_clean, round, set_contents, until_rounds, worker};

const TTL: Duration = Duration::from_secs(30);
/// Hang guard for events that must happen (never a timing assertion).
const GUARD: Duration = Duration::from_secs(30);
const FENCED_WRITE: &str = include_str!("../../../examples/fenced-write.lua");

/// The replication offsets of a server (`INFO replication`): (master_repl_offset, and the
/// replica's acknowledged offset if one is connected).
async fn caught_up(primary: &dlock_tests::RedisServer) -> bool {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut raw(primary).await)
        .await
        .unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let master = field("master_repl_offset:");
    let replica = field("slave0:").and_then(|v| {
        v.split(',')
            .find_map(|kv| kv.strip_prefix("offset="))
            .map(str::to_owned)
    });
    master.is_some() && master == replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_the_new_primary_when_the_old_one_is_killed_under_contention() {
    let mut set = Sentinels::start().await.unwrap();
    let resource = redis();
    let recorder = Recorder::new();
    let url = set.url();
    let mut tasks = Vec::new();
    for id in 0..4 {
        let worker = Worker::spawn(worker(), &url, &resource.url())
            .await
            .unwrap();
        let mut client = Driven::new(worker, id, &recorder);
        tasks.push(tokio::spawn(async move {
            for r in 0..25u64 {
                round(&mut client, "hot", &format!("w{id}r{r}"), Duration::ZERO).await;
            }
        }));
    }
    let conn = raw(&resource).await;
    until_rounds(&conn, "rounds before the kill", 10).await;
    // Writes are held back until the replica has everything, so no write the primary
    // acknowledged is lost with it (that case is the next test's); then the primary dies.
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(10_000)
        .arg("WRITE")
        .query_async(&mut raw(&set.primary).await)
        .await
        .unwrap();
    eventually("the replica caught up", Duration::from_secs(10), || {
        caught_up(&set.primary)
    })
    .await;
    set.primary.stop();
    set.until_failed_over().await;
    let at_failover = set_contents(&mut conn.clone(), "set").await.len();
    until_rounds(&conn, "rounds on the new primary", at_failover + 10).await;
    for task in tasks {
        task.await.unwrap();
    }
    // The Sentinels disconnect the promoted replica's clients while they reconfigure it.
    let hot_left = dlock_tests::query_retrying(&set.replica, |mut c| async move {
        redis::cmd("EXISTS")
            .arg("hot")
            .query_async::<bool>(&mut c)
            .await
    })
    .await;
    assert_rounds_clean(&recorder, &conn, hot_left.then_some("hot")).await;
}

#[tokio::test]
async fn a_lock_the_primary_had_not_replicated_is_lost_by_the_failover_and_fencing_holds() {
    let mut set = Sentinels::start().await.unwrap();
    let resource = redis();
    let runtime = Runtime::connect(set.url()).await.unwrap();
    let options = LockOptions::default().with_fencing(true);
    let a = runtime.client(options.clone()).await.unwrap();
    let b = runtime.client(options).await.unwrap();
    let fenced_write = |fence: u64, value: &'static str| {
        let resource = &resource;
        async move {
            let accepted: i64 = redis::Script::new(FENCED_WRITE)
                .key("resource")
                .key("resource:max-fence")
                .arg(fence)
                .arg(value)
                .invoke_async(&mut raw(resource).await)
                .await
                .unwrap();
            accepted == 1
        }
    };

    // The replica is cut off (frozen, its replication link closed) when A takes the lock, so
    // only the primary has it; then the primary dies and the replica is promoted.
    signal_server(&set.replica, Signal::STOP);
    let () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async::<i64>(&mut raw(&set.primary).await)
        .await
        .map(|_| ())
        .unwrap();
    let first = a.acquire("job", TTL).await.unwrap();
    let fence_a = first.info().fence.unwrap();
    assert!(fenced_write(fence_a, "from-a").await);
    set.primary.stop();
    signal_server(&set.replica, Signal::CONT);
    set.until_failed_over().await;

    // The new primary never saw A's lock nor its fence: B gets the lock, with a fence that is
    // not new, while A's lease is still valid.
    let second = b
        .wait_for_lock("job", TTL, dlock_host::Deadline::after(TTL))
        .await
        .unwrap();
    assert!(
        first.is_held() && second.is_held(),
        "the documented unsafety: two valid holders across a failover"
    );
    let fence_b = second.info().fence.unwrap();
    assert!(fence_b <= fence_a);
    // The fenced resource refuses both the stale holder and B (safe, not live).
    assert!(!fenced_write(fence_a, "again-from-a").await);
    assert!(!fenced_write(fence_b, "from-b").await);
}

#[tokio::test]
async fn waiters_block_on_the_primarys_signal_list_and_follow_it_across_a_failover() {
    let mut set = Sentinels::start().await.unwrap();
    let runtime = Runtime::connect(set.url()).await.unwrap();
    let holder = runtime.client(LockOptions::default()).await.unwrap();
    let waiter = runtime
        .client(woken_only_by_release(LockOptions::default()))
        .await
        .unwrap();
    let primary = &mut raw(&set.primary).await;
    let (waiter, got) = release_wakes_the_waiter(primary, "job", &holder, waiter, "job").await;
    got.release().await.unwrap();

    set.primary.stop();
    set.until_failed_over().await;
    eventually("the clients to reach the new primary", GUARD, || async {
        holder.is_locked("job").await.is_ok()
    })
    .await;
    // Another key: the first one's release signalled its waiter's mark, which outlives it.
    let promoted = &mut raw(&set.replica).await;
    release_wakes_the_waiter(promoted, "next", &holder, waiter, "next").await;
}
