//! The `dlock` binary, driven as users drive it, against real `redis-server`s (`dlock run` is in
//! `run.rs`).
//!
//! Proves: every command of the CLI contract but `run` and every exit code; interop with plain
//! SET NX PX locks; `status` on one server and on a Cluster (quorum mode is in `quorum.rs`).
//! Bad input, an unreachable Redis and hostile surroundings are in `input.rs`.

mod common;

use std::collections::BTreeMap;

use common::{acquire, dlock, dlock_bare, listed_locks, ran};
use dlock_tests::cluster::Cluster;
use dlock_tests::{dbsize, exists, get, key_slot, pttl, raw, redis};

#[tokio::test]
async fn acquire_prints_a_token_and_a_second_acquire_is_busy() {
    let server = redis();
    let mut conn = raw(&server).await;
    let token = acquire(&server, "job", "30s").await;
    assert_eq!(get(&mut conn, "job").await, Some(token.clone()));
    let ttl = pttl(&mut conn, "job").await;
    assert!(ttl > 25_000 && ttl <= 30_000, "{ttl}");

    let r = ran(dlock(&server).args(["acquire", "job", "--ttl", "30s"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("held by someone else"), "{}", r.stderr);
    assert_eq!(get(&mut conn, "job").await, Some(token));
}

#[tokio::test]
async fn acquire_with_wait_gets_the_lock_when_it_frees_or_exits_1_at_the_deadline() {
    let server = redis();
    acquire(&server, "job", "300ms").await;
    let r = ran(dlock(&server).args(["acquire", "job", "--ttl", "5s", "--wait", "10s"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = ran(dlock(&server).args(["acquire", "job", "--ttl", "5s", "--wait", "200ms"])).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
}

#[tokio::test]
async fn acquire_json_and_fence() {
    let server = redis();
    let r = ran(dlock(&server).args(["--json", "acquire", "job", "--ttl", "1m", "--fence"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["key"], "job");
    assert_eq!(v["fence"], 1);
    assert_eq!(v["token"].as_str().unwrap().len(), 36);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let expires = v["expires_at_ms"].as_u64().unwrap();
    assert!(
        expires > now_ms + 50_000 && expires <= now_ms + 61_000,
        "{expires} vs {now_ms}"
    );

    ran(dlock(&server).args(["release", "job", v["token"].as_str().unwrap()])).await;
    let r = ran(dlock(&server).args(["acquire", "job", "--ttl", "1m", "--fence"])).await;
    let (_token, fence) = r.stdout.split_once(' ').expect("token and fence");
    assert_eq!(fence, "2");
}

#[tokio::test]
async fn release_needs_the_token() {
    let server = redis();
    let mut conn = raw(&server).await;
    let token = acquire(&server, "job", "30s").await;
    let r = ran(dlock(&server).args(["release", "job", "not-my-token"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not held by that token"), "{}", r.stderr);
    assert_eq!(get(&mut conn, "job").await, Some(token.clone()));

    let r = ran(dlock(&server).args(["release", "job", &token])).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert!(!exists(&mut conn, "job").await);
    let r = ran(dlock(&server).args(["release", "job", &token])).await;
    assert_eq!(r.code, 5, "a second release finds the key gone: expired");
}

#[tokio::test]
async fn extend_needs_the_token_and_sets_the_ttl() {
    let server = redis();
    let mut conn = raw(&server).await;
    let token = acquire(&server, "job", "5s").await;
    let r = ran(dlock(&server).args(["extend", "job", "wrong", "--ttl", "1h"])).await;
    assert_eq!(r.code, 1);
    assert!(pttl(&mut conn, "job").await <= 5000);

    let r = ran(dlock(&server).args(["--json", "extend", "job", &token, "--ttl", "1h"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["expires_at_ms"].as_u64().is_some());
    assert!(pttl(&mut conn, "job").await > 3_500_000);

    let r = ran(dlock(&server).args(["extend", "job", &token, "--ttl", "10m"])).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert!(pttl(&mut conn, "job").await <= 600_000);
}

#[tokio::test]
async fn verbose_logs_each_operation_and_metrics_summarise_them_at_exit() {
    let server = redis();
    let r = ran(dlock(&server).args(["-v", "acquire", "job", "--ttl", "1m"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("dlock.try_acquire") && r.stderr.contains("dlock.outcome=\"acquired\""),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('\x1b'),
        "no colours into a pipe: {}",
        r.stderr
    );
    let token = r.stdout;

    let r = ran(dlock(&server).args(["--json", "--metrics", "release", "job", &token])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(
        v["metrics"]["counters"]["dlock.release{outcome=released}"],
        1
    );
    assert_eq!(
        v["metrics"]["histograms"]["db.client.operation.duration{db.system.name=redis,db.operation.name=EVALSHA,db.stored_procedure.name=release}"]
            ["count"],
        1
    );
}

#[tokio::test]
async fn the_prefix_names_the_redis_key() {
    let server = redis();
    let mut conn = raw(&server).await;
    let r = ran(dlock(&server).args(["--prefix", "cron:", "acquire", "job", "--ttl", "1m"])).await;
    assert_eq!(r.code, 0);
    assert_eq!(get(&mut conn, "cron:job").await, Some(r.stdout));
    assert!(!exists(&mut conn, "job").await);
}

#[tokio::test]
async fn the_redis_url_comes_from_the_environment_too() {
    let server = redis();
    let r = ran(dlock_bare()
        .env("DLOCK_REDIS_URL", server.url())
        .args(["status", "job"]))
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "unlocked"));
}

#[tokio::test]
async fn a_plain_set_nx_px_lock_makes_acquire_busy_and_survives_a_wrong_release() {
    let server = redis();
    let mut conn = raw(&server).await;
    let () = redis::cmd("SET")
        .arg("shared")
        .arg("redsync-token")
        .arg("NX")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = ran(dlock(&server).args(["acquire", "shared", "--ttl", "1m"])).await;
    assert_eq!(r.code, 1);
    let r = ran(dlock(&server).args(["release", "shared", "wrong-token"])).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        get(&mut conn, "shared").await.as_deref(),
        Some("redsync-token")
    );
    let r = ran(dlock(&server).args(["run", "shared", "--ttl", "1m", "--", "true"])).await;
    assert_eq!(r.code, 75);
}

#[tokio::test]
async fn help_explains_flags_defaults_and_exit_codes() {
    let r = ran(dlock_bare().arg("--help")).await;
    assert_eq!(r.code, 0);
    for needle in [
        "acquire",
        "release",
        "extend",
        "status",
        "run",
        "demo",
        "DLOCK_REDIS_URL",
        "redis://127.0.0.1:6379",
        "Exit codes",
        "75",
        "76",
    ] {
        assert!(r.stdout.contains(needle), "--help lacks {needle:?}");
    }
    for sub in ["acquire", "release", "extend", "status", "run", "demo"] {
        let r = ran(dlock_bare().args([sub, "--help"])).await;
        assert_eq!(r.code, 0);
        assert!(
            r.stdout.contains("Exit codes"),
            "{sub} --help lacks exit codes"
        );
        assert!(r.stdout.contains("--redis"), "{sub} --help lacks --redis");
    }
    let r = ran(dlock_bare().args(["run", "--help"])).await;
    for needle in [
        "--ttl",
        "--wait",
        "--conflict-exit-code",
        "--kill-after",
        "--max-hold",
        "[default: 10s]",
        "DLOCK_TOKEN",
        "DLOCK_FENCE",
        "TTL/3",
    ] {
        assert!(r.stdout.contains(needle), "run --help lacks {needle:?}");
    }
}

#[tokio::test]
async fn demo_on_a_given_redis_passes_its_checks_and_cleans_up() {
    let server = redis();
    let mut conn = raw(&server).await;
    let args = [
        "--json",
        "demo",
        "--duration",
        "1s",
        "--workers",
        "6",
        "--keys",
        "2",
    ];
    let r = ran(dlock(&server).args(args)).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["passed"], true);
    assert!(v["acquisitions"].as_u64().unwrap() > 0);
    assert_eq!(v["increments"], v["counted"]);
    assert_eq!(v["fence_violations"], 0);
    assert!(v["redis"]["origin"].as_str().unwrap().starts_with("given"));
    assert_eq!(dbsize(&mut conn).await, 0, "the demo removes what it wrote");
}

#[tokio::test]
async fn demo_starts_its_own_redis_when_none_is_given() {
    let r = ran(dlock_bare().args(["demo", "--duration", "1s", "--workers", "4"])).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("started by the demo"), "{}", r.stdout);
    assert!(r.stdout.contains("all checks passed"), "{}", r.stdout);
}

#[tokio::test]
async fn compose_writes_a_component_that_imports_redis_instead_of_the_lock_api() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("composed.wasm");
    let r = ran(dlock_bare().args([
        "compose",
        dlock_tests::components::HOSTILE_PLUGIN,
        "-o",
        out.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let composed = std::fs::read(&out).unwrap();
    assert_eq!(&composed[..8], b"\0asm\x0d\x00\x01\x00", "a component");
    let text = String::from_utf8_lossy(&composed);
    assert!(text.contains(dlock_host::contract::REDIS_INTERFACE));

    // The lock component itself does not import the lock API: nothing to compose.
    let bundled = dir.path().join("bundled.wasm");
    std::fs::write(&bundled, dlock_host::bundled::COMPONENT).unwrap();
    let r = ran(dlock_bare().args(["compose", bundled.to_str().unwrap(), "-o", "/dev/null"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("does not import dlock:lock/lock"),
        "{}",
        r.stderr
    );
    let r = ran(dlock_bare().args(["compose", "/nonexistent.wasm", "-o", "/dev/null"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot read /nonexistent.wasm"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn status_reports_locked_with_ttl_or_unlocked() {
    let server = redis();
    let r = ran(dlock(&server).args(["status", "job"])).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "unlocked"));
    let r = ran(dlock(&server).args(["--json", "status", "job"])).await;
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"key": "job", "locked": false, "ttl_ms": null})
    );

    acquire(&server, "job", "1m").await;
    let r = ran(dlock(&server).args(["status", "job"])).await;
    let ms: u64 = r
        .stdout
        .strip_prefix("locked ")
        .and_then(|s| s.strip_suffix("ms"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 50_000 && ms <= 60_000, "{}", r.stdout);
    let r = ran(dlock(&server).args(["--json", "status", "job"])).await;
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["locked"], true);
    assert!(v["ttl_ms"].as_u64().unwrap() > 50_000);
}

#[tokio::test]
async fn status_lists_the_locks_under_the_prefix_once_or_watching() {
    let server = redis();
    let r = ran(dlock(&server).args(["--json", "--prefix", "app:", "status"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["locks"], serde_json::json!([]));

    let a = ran(dlock(&server).args(["--prefix", "app:", "acquire", "a", "--ttl", "1m"])).await;
    let b =
        ran(dlock(&server).args(["--prefix", "app:", "acquire", "b", "--ttl", "1m", "--fence"]))
            .await;
    // Not under the prefix: not listed.
    acquire(&server, "other", "1m").await;
    let args = [
        "--json",
        "--prefix",
        "app:",
        "status",
        "--watch",
        "--interval",
        "10ms",
    ];
    let r = ran(dlock(&server).args(args).args(["--count", "2"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let views: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(views.len(), 2, "one JSON line per refresh");
    for v in views {
        let locks = v["locks"].as_array().unwrap();
        let keys: Vec<&str> = locks.iter().map(|l| l["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(locks[0]["token"], a.stdout.as_str());
        let (b_token, fence) = b.stdout.split_once(' ').unwrap();
        assert_eq!(locks[1]["token"], b_token);
        assert_eq!(locks[1]["fence"].to_string(), fence);
        assert!(locks[0]["ttl_ms"].as_i64().unwrap() > 50_000);
    }
}

/// Under the minimal ACL of docs/SECURITY.md every command works but the list, which needs
/// SCAN: without it the list fails saying what to allow; with `+scan` it lists.
#[tokio::test]
async fn status_lists_under_the_minimal_acl_with_scan_and_names_what_is_missing_without() {
    let server = redis();
    dlock_tests::minimal_acl_user(&server, "dlock", "s3cret").await;
    let url = server.url().replace("redis://", "redis://dlock:s3cret@");
    let confined = || {
        let mut cmd = dlock_bare();
        cmd.args(["--redis", &url, "--prefix", "app:"]);
        cmd
    };
    let r = ran(confined().args(["acquire", "job", "--ttl", "1m"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ran(confined().args(["status", "job"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("locked "), "{}", r.stdout);

    let r = ran(confined().arg("status")).await;
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(r.stderr.contains("'scan'"), "{}", r.stderr);
    assert!(r.stderr.contains("+scan"), "{}", r.stderr);

    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "dlock", "+scan"])
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    let r = ran(confined().args(["--json", "status"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["locks"][0]["key"], "job");
}

#[tokio::test]
async fn status_on_a_cluster_lists_the_locks_of_every_primary() {
    let cluster = Cluster::start(3, 0).await;
    // As a user with the minimal ACL, and what a Cluster and the list need (docs/SECURITY.md).
    for node in &cluster.nodes {
        dlock_tests::minimal_acl_user(node, "dlock", "s3cret").await;
        let () = redis::cmd("ACL")
            .arg(&["SETUSER", "dlock", "+cluster|slots", "+scan"])
            .query_async(&mut raw(node).await)
            .await
            .unwrap();
    }
    let on_cluster = || {
        let mut cmd = dlock_bare();
        for seed in cluster.seeds() {
            cmd.arg("--redis")
                .arg(seed.replace("redis://", "redis://dlock:s3cret@"));
        }
        cmd.args(["--cluster", "--prefix", "app:"]);
        cmd
    };
    let keys: Vec<String> = (0..12).map(|i| format!("job:{i}")).collect();
    for third in 0..3 {
        let range = (third * 5462)..((third + 1) * 5462);
        assert!(
            keys.iter()
                .any(|k| range.contains(&key_slot(&format!("app:{k}"))))
        );
    }
    let mut tokens = BTreeMap::new();
    for key in &keys {
        let r = ran(on_cluster().args(["acquire", key, "--ttl", "1m"])).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        tokens.insert(key.clone(), r.stdout);
    }
    let all: Vec<(String, String)> = tokens.into_iter().collect();
    assert_eq!(listed_locks(&mut on_cluster(), &[]).await, all);
    // --limit keeps the first locks by key across all primaries.
    assert_eq!(
        listed_locks(&mut on_cluster(), &["--limit", "5"]).await,
        all[..5]
    );
}
