//! Hostile components (built from `tests/hostile/`) against the host's enforcement. Each test
//! asserts the error the caller sees and that Redis was not touched; each fails if the
//! enforcement it names is removed. Compute, memory, stack, randomness and time are in
//! `hostile/resources.rs`.

use std::time::Duration;

use dlock_host::{
    Allocation, Client, Deadline, Error, LockComponent, LockOptions, Policy, Runtime,
};
use dlock_tests::components::{HOSTILE, HOSTILE_START, HUGE_REPLY_SCRIPT};
use dlock_tests::{RedisServer, dbsize, get, raw, redis};
use redis::aio::MultiplexedConnection;

const TTL: Duration = Duration::from_secs(30);

mod resources;

async fn hostile_runtime(server: &RedisServer, policy: Policy) -> Runtime {
    let component = LockComponent::from_file(HOSTILE, Allocation::default()).unwrap();
    Runtime::builder(server.url())
        .with_component(component)
        .with_policy(policy)
        .build()
        .await
        .unwrap()
}

async fn hostile(runtime: &Runtime, mode: &str) -> Client {
    let options = LockOptions::default().with_key_prefix(mode);
    runtime.client(options).await.unwrap()
}

/// Calls of `command` Redis has served without an error (so an EVALSHA answered NOSCRIPT and
/// then retried counts once), from `INFO commandstats`.
async fn calls(conn: &mut MultiplexedConnection, command: &str) -> u64 {
    let [calls, rejected, failed] = command_stats(conn, command).await;
    calls - rejected - failed
}

/// `calls`, `rejected_calls` and `failed_calls` of `command` in `INFO commandstats`.
async fn command_stats(conn: &mut MultiplexedConnection, command: &str) -> [u64; 3] {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:");
    let Some(stats) = info.lines().find_map(|line| line.strip_prefix(&prefix)) else {
        return [0; 3];
    };
    let field = |name: &str| {
        stats
            .split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };
    [
        field("calls"),
        field("rejected_calls"),
        field("failed_calls"),
    ]
}

/// A victim key, and a check that it and the rest of Redis are as they were, and that no
/// script reached Redis.
async fn plant_victim(conn: &mut MultiplexedConnection) {
    let () = redis::cmd("SET")
        .arg("other:secret")
        .arg("crown-jewels")
        .query_async(conn)
        .await
        .unwrap();
}

async fn assert_untouched(conn: &mut MultiplexedConnection) {
    assert_eq!(
        get(conn, "other:secret").await.as_deref(),
        Some("crown-jewels")
    );
    assert_eq!(dbsize(conn).await, 1);
    for command in [
        "evalsha",
        "eval",
        "script|load",
        "flushall",
        "config|set",
        "shutdown",
    ] {
        let [served, _, _] = command_stats(conn, command).await;
        assert_eq!(served, 0, "{command} reached Redis");
    }
}

async fn hang_guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the host did not contain the guest in time")
}

#[tokio::test]
async fn scripts_outside_the_allowlist_never_reach_redis() {
    let server = redis();
    let mut conn = raw(&server).await;
    plant_victim(&mut conn).await;
    let runtime = hostile_runtime(&server, Policy::default()).await;
    for mode in ["flushall", "config-set", "shutdown", "tampered"] {
        let err = hostile(&runtime, mode)
            .await
            .acquire("app:job", TTL)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, Error::Denied(m) if m.contains("allowlist")),
            "{mode}: {err:?}"
        );
    }
    assert_untouched(&mut conn).await;
}

#[tokio::test]
async fn keys_outside_the_namespace_or_malformed_never_reach_redis() {
    let server = redis();
    let mut conn = raw(&server).await;
    plant_victim(&mut conn).await;
    let runtime = hostile_runtime(&server, Policy::default().with_key_namespace("app:")).await;
    let client = hostile(&runtime, "foreign-key").await;
    for key in [
        "other:secret",
        "*",
        "app:a\nb",
        "app:a\0b",
        "",
        "{other:secret}:fence",
        "{app:secret",
        "{app:job}:other",
    ] {
        let err = client.acquire(key, TTL).await.err().unwrap();
        assert!(matches!(err, Error::Denied(_)), "{key:?}: {err:?}");
    }
    let long = format!("app:{}", "k".repeat(2000));
    assert!(matches!(
        client.acquire(&long, TTL).await,
        Err(Error::Denied(_))
    ));
    assert_untouched(&mut conn).await;
    // Inside the namespace, the same allowed script does run.
    client.acquire("app:job", TTL).await.unwrap();
    // The first run of a script is EVALSHA (NOSCRIPT), then EVAL of the allowed source.
    assert_eq!(
        calls(&mut conn, "evalsha").await + calls(&mut conn, "eval").await,
        1
    );
}

#[tokio::test]
async fn a_reply_over_the_cap_is_an_error_not_a_delivery() {
    let server = redis();
    let mut conn = raw(&server).await;
    plant_victim(&mut conn).await;
    // Redis takes a while to build and send 16 MiB on a busy machine: a timeout would hide
    // the cap under test.
    let policy = Policy::default()
        .with_script(HUGE_REPLY_SCRIPT)
        .with_command_timeout(Duration::from_secs(120));
    let runtime = hostile_runtime(&server, policy).await;
    let err = hostile(&runtime, "huge-reply")
        .await
        .acquire("app:job", TTL)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("reply larger")),
        "{err:?}"
    );
    assert_eq!(
        get(&mut conn, "other:secret").await.as_deref(),
        Some("crown-jewels")
    );
}

#[tokio::test]
async fn requests_over_the_caps_are_refused_with_their_size_and_the_next_call_passes() {
    let server = redis();
    let runtime = hostile_runtime(&server, Policy::default()).await;
    for (mode, reason) in [
        ("many-keys", "20 keys in one call; the limit is 8"),
        (
            "huge-args",
            "5000007 bytes of keys and arguments; the limit is 4096",
        ),
    ] {
        let client = hostile(&runtime, mode).await;
        for _ in 0..2 {
            let err = client.acquire("app:job", TTL).await.err().unwrap();
            assert!(
                matches!(&err, Error::InvalidArgument(m) if m.contains(reason)),
                "{mode}: {err:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_flood_of_redis_calls_is_cut_off() {
    let server = redis();
    let mut conn = raw(&server).await;
    let runtime = hostile_runtime(&server, Policy::default().with_max_evals_per_second(100)).await;
    let flooder = hostile(&runtime, "flood").await;
    let started = std::time::Instant::now();
    let err = hang_guard(flooder.acquire("app:job", TTL))
        .await
        .err()
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("Redis calls")),
        "{err:?}"
    );
    let ran = calls(&mut conn, "evalsha").await + calls(&mut conn, "eval").await;
    // A bucket of 100 calls, refilled at 100 per second while the burst lasts.
    let bound = 100 + (100.0 * elapsed).ceil() as u64;
    assert!((100..=bound).contains(&ran), "{ran} calls, bound {bound}");
}

#[tokio::test]
async fn a_forged_token_cannot_release_another_clients_lock() {
    let server = redis();
    let mut conn = raw(&server).await;
    let honest = Runtime::connect(&server.url()).await.unwrap();
    let lock = honest
        .client(LockOptions::default())
        .await
        .unwrap()
        .acquire("app:job", TTL)
        .await
        .unwrap();
    let token = lock.info().token;
    let runtime = hostile_runtime(&server, Policy::default()).await;
    let err = hostile(&runtime, "forged-release")
        .await
        .acquire("app:job", TTL)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotHeld), "{err:?}");
    assert_eq!(get(&mut conn, "app:job").await, Some(token));
    lock.release().await.unwrap();
}

#[tokio::test]
async fn allowed_scripts_are_no_oracle_for_guessed_values_and_no_deleter_of_fence_counters() {
    let server = redis();
    let mut conn = raw(&server).await;
    plant_victim(&mut conn).await;
    let honest = Runtime::connect(&server.url()).await.unwrap();
    let fenced = LockOptions::default().with_fencing(true);
    honest
        .client(fenced)
        .await
        .unwrap()
        .acquire("job", TTL)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let runtime = hostile_runtime(&server, Policy::default()).await;

    // The acquire script with the victim's value as its "token" would renew the victim's
    // lease and answer 1: a read oracle that also writes.
    let err = hostile(&runtime, "oracle")
        .await
        .acquire("other:secret", TTL)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("token")),
        "{err:?}"
    );
    // The release script with the counter's value as its "token" would delete the counter.
    let err = hostile(&runtime, "delete-fence")
        .await
        .acquire("{job}:fence", TTL)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("fence counter")),
        "{err:?}"
    );

    assert_eq!(
        get(&mut conn, "other:secret").await.as_deref(),
        Some("crown-jewels")
    );
    assert_eq!(dlock_tests::pttl(&mut conn, "other:secret").await, -1);
    assert_eq!(get(&mut conn, "{job}:fence").await.as_deref(), Some("1"));
}

/// `used_memory` of the server, in bytes.
async fn used_memory(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_write_flood_is_held_to_the_byte_rate_and_other_clients_keep_working() {
    let server = redis();
    let mut conn = raw(&server).await;
    let rate: u64 = 64 * 1024;
    let runtime = hostile_runtime(&server, Policy::default().with_max_bytes_per_second(rate)).await;
    let flooder = hostile(&runtime, "flood-write").await;
    let honest_rt = Runtime::connect(&server.url()).await.unwrap();
    let honest = honest_rt.client(LockOptions::default()).await.unwrap();
    let memory_before = used_memory(&mut conn).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bystander = tokio::spawn({
        let stop = stop.clone();
        // Every call of the bystander must succeed while the flood goes on.
        async move {
            loop {
                let lock = honest.try_acquire("honest", TTL).await.unwrap().unwrap();
                lock.release().await.unwrap();
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
            }
        }
    });
    let started = std::time::Instant::now();
    let reached = match flooder.acquire("f:", TTL).await {
        Err(Error::InvalidArgument(n)) => n.parse::<u64>().unwrap(),
        other => panic!("{:?}", other.map(|_| ())),
    };
    let elapsed = started.elapsed().as_secs_f64();

    // Each write sends a 1000-byte key, a 36-byte token and a 13-digit TTL: the bucket (full
    // at the start, refilled at `rate`) lets at most this many through.
    let per_write = 1000 + 36 + 13;
    let bound = ((rate as f64 * (1.0 + elapsed)) / per_write as f64).ceil() as u64;
    assert!(
        reached > 0 && reached <= bound,
        "{reached} writes, bound {bound}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bystander.await.unwrap();
    assert_eq!(dbsize(&mut conn).await, reached);
    let grown = used_memory(&mut conn).await.saturating_sub(memory_before);
    assert!(
        grown <= bound * 2048 + (1 << 20),
        "Redis grew by {grown} bytes for {reached} writes"
    );
}

#[tokio::test]
async fn a_script_longer_than_any_allowed_one_is_refused_unhashed() {
    let server = redis();
    let runtime = hostile_runtime(&server, Policy::default()).await;
    let err = hostile(&runtime, "huge-script")
        .await
        .acquire("app:job", TTL)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("longer than any allowed script")),
        "{err:?}"
    );
}

/// `redis-eval-all` is policed as `redis-eval` is, on every primary of a quorum, and a
/// quorum host refuses `redis-eval` (one primary of several holds no lock).
#[tokio::test]
async fn in_quorum_mode_redis_eval_is_refused_and_redis_eval_all_is_policed() {
    let servers: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let component = LockComponent::from_file(HOSTILE, Allocation::default()).unwrap();
    let runtime = Runtime::builder(dlock_host::Topology::quorum(
        servers.iter().map(RedisServer::url),
    ))
    .with_component(component)
    .with_policy(
        Policy::default()
            .with_key_namespace("app:")
            .with_max_evals_per_second(99),
    )
    .build()
    .await
    .unwrap();
    let mut conns = Vec::new();
    for server in &servers {
        let mut conn = raw(server).await;
        let () = redis::cmd("SET")
            .arg("{app:job}:fence")
            .arg("1")
            .query_async(&mut conn)
            .await
            .unwrap();
        conns.push(conn);
    }
    let denied = |mode: &'static str, key: &'static str| {
        let runtime = &runtime;
        async move {
            let err = hostile(runtime, mode)
                .await
                .acquire(key, TTL)
                .await
                .err()
                .unwrap();
            match err {
                Error::Denied(reason) => reason,
                other => panic!("{mode}: {other:?}"),
            }
        }
    };
    let reason = denied("foreign-key", "app:job").await;
    assert!(reason.contains("quorum mode"), "{reason}");
    let reason = denied("all-foreign-key", "other:secret").await;
    assert!(reason.contains("outside the namespace"), "{reason}");
    let reason = denied("all-delete-fence", "{app:job}:fence").await;
    assert!(reason.contains("fence counter"), "{reason}");
    // A bucket of 99 calls refilled at 99 per second while the burst lasts, and each round
    // takes 3 (one per primary).
    let started = std::time::Instant::now();
    let reason = denied("all-flood", "app:job").await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(reason.contains("Redis calls"), "{reason}");
    let bound = ((99.0 + 99.0 * elapsed) / 3.0).ceil() as u64;
    for conn in &mut conns {
        let ran = calls(conn, "evalsha").await + calls(conn, "eval").await;
        assert!(
            (33..=bound).contains(&ran),
            "{ran} calls reached one primary, bound {bound}"
        );
        assert_eq!(get(conn, "{app:job}:fence").await.as_deref(), Some("1"));
    }
}

/// `wait-for-release` is policed like `redis-eval`: the key's namespace and form (no
/// companion key), and the call rate; a flood of waits is cut off.
#[tokio::test]
async fn a_hostile_wait_for_release_is_policed() {
    let server = redis();
    let mut conn = raw(&server).await;
    let policy = Policy::default()
        .with_key_namespace("app:")
        .with_max_evals_per_second(100);
    let runtime = hostile_runtime(&server, policy).await;
    let waited = |mode: &'static str, key: &'static str| {
        let runtime = &runtime;
        async move {
            let err = hostile(runtime, mode)
                .await
                .wait_for_lock(key, TTL, Deadline::after(Duration::from_millis(50)))
                .await
                .err()
                .unwrap();
            match err {
                Error::InvalidArgument(answer) => answer,
                other => panic!("{mode} {key}: {other:?}"),
            }
        }
    };
    let answer = waited("wait", "other:secret").await;
    assert!(
        answer.contains("Denied") && answer.contains("namespace"),
        "{answer}"
    );
    let answer = waited("wait", "{app:job}:signal").await;
    assert!(
        answer.contains("Denied") && answer.contains("signal list"),
        "{answer}"
    );
    let started = std::time::Instant::now();
    let answered: u64 = waited("wait-flood", "app:job").await.parse().unwrap();
    let bound = 100 + (100.0 * started.elapsed().as_secs_f64()).ceil() as u64;
    assert!(
        (100..=bound).contains(&answered),
        "{answered}, bound {bound}"
    );
    assert_eq!(dbsize(&mut conn).await, 0, "a wait writes nothing");
}
