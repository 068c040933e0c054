//! The `dlock` binary, driven as users drive it, against real `redis-server`s.
//!
//! Proves: every command of the CLI contract and every exit code; `run`'s watchdog, lost-lock
//! termination, signal forwarding and release; bad input writing nothing; an unreachable Redis
//! answered with exit 3; mutual exclusion across processes; interop with plain SET NX PX locks.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dlock_tests::cluster::Cluster;
use dlock_tests::{
    RedisServer, dbsize, eventually, exists, get, key_slot, pttl, raw, redis, signal_server,
};
use redis::aio::MultiplexedConnection;
use rustix::process::Signal;
use tokio::process::Command;

/// `dlock --redis URL ...`, with no URL inherited from the environment.
fn dlock(server: &RedisServer) -> Command {
    let mut cmd = dlock_bare();
    cmd.arg("--redis").arg(server.url());
    cmd
}

fn dlock_bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlock"));
    cmd.env_remove("DLOCK_REDIS_URL").kill_on_drop(true);
    cmd
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn ran(cmd: &mut Command) -> Ran {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    ran_as_set_up(cmd).await
}

/// Runs `cmd` with the stdin, stdout and stderr it was given (unlike `Command::output`, which
/// pipes stdout and stderr whatever was set) and collects what was piped.
async fn ran_as_set_up(cmd: &mut Command) -> Ran {
    let child = cmd.spawn().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("dlock hung")
        .unwrap();
    Ran {
        code: out.status.code().expect("dlock exited by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    }
}

async fn acquire(server: &RedisServer, key: &str, ttl: &str) -> String {
    let r = ran(dlock(server).args(["acquire", key, "--ttl", ttl])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
}

/// Waits until `key` exists (a `dlock run` started in the background took the lock).
async fn until_locked(conn: &MultiplexedConnection, key: &str) {
    eventually("the lock to be taken", Duration::from_secs(20), || {
        let mut c = conn.clone();
        async move { exists(&mut c, key).await }
    })
    .await;
}

async fn exit_code(child: &mut tokio::process::Child) -> Option<i32> {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("dlock hung")
        .unwrap();
    status.code()
}

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

#[tokio::test]
async fn status_on_a_cluster_lists_the_locks_of_every_primary() {
    let cluster = Cluster::start(3, 0).await;
    let on_cluster = || {
        let mut cmd = dlock_bare();
        for seed in cluster.seeds() {
            cmd.arg("--redis").arg(seed);
        }
        cmd.arg("--cluster");
        cmd
    };
    let keys: Vec<String> = (0..12).map(|i| format!("job:{i}")).collect();
    for third in 0..3 {
        let range = (third * 5462)..((third + 1) * 5462);
        assert!(keys.iter().any(|k| range.contains(&key_slot(k))));
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

#[tokio::test]
async fn status_in_quorum_mode_lists_what_a_majority_holds_and_needs_a_majority_answering() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let quorum = |servers: &[RedisServer]| {
        let mut cmd = dlock_bare();
        for server in servers {
            cmd.arg("--redis").arg(server.url());
        }
        cmd
    };
    let r = ran(quorum(&servers).args(["acquire", "a", "--ttl", "1m"])).await;
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
    assert_eq!(listed_locks(&mut quorum(&servers), &[]).await, held);
    // The first primary frozen: the two others still make a majority.
    signal_server(&servers[0], Signal::STOP);
    assert_eq!(listed_locks(&mut quorum(&servers), &[]).await, held);
    signal_server(&servers[0], Signal::CONT);
    servers[1].stop();
    servers[2].stop();
    let r = ran(quorum(&servers).args(["status"])).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no quorum"), "{}", r.stderr);
}

/// The (key, token) pairs `dlock --json status` lists, `cmd` given its Redis and `extra`
/// arguments added after `status`.
async fn listed_locks(cmd: &mut Command, extra: &[&str]) -> Vec<(String, String)> {
    let r = ran(cmd.args(["--json", "status"]).args(extra)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let field = |name: &str| l[name].as_str().unwrap().to_owned();
            (field("key"), field("token"))
        })
        .collect()
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
async fn bad_input_exits_2_with_a_message_and_writes_nothing() {
    let server = redis();
    let mut conn = raw(&server).await;
    let cases: &[&[&str]] = &[
        &["acquire", "", "--ttl", "1s"],
        &["acquire", "job", "--ttl", "0"],
        &["acquire", "job", "--ttl", "-5s"],
        &["acquire", "job", "--ttl", "soon"],
        &["acquire", "job", "--ttl", "NaN"],
        &["acquire", "job", "--ttl", "18446744073709551616"],
        &["acquire", "job", "--ttl", "100000y"],
        &["acquire", "job"],
        &["acquire", "job", "--ttl", "1s", "--wait", "0"],
        &["acquire", "line\nbreak", "--ttl", "1s"],
        &["extend", "job", "token", "--ttl", "0ms"],
        &["release", "job"],
        &["run", "job", "--ttl", "1s"],
        &["run", "job", "--ttl", "0", "--", "true"],
        &["status", "--interval", "0s"],
        &["frobnicate"],
    ];
    for args in cases {
        let r = ran(dlock(&server).args(*args)).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty(), "{args:?} gave no message");
    }
    assert_eq!(dbsize(&mut conn).await, 0);
}

#[tokio::test]
async fn an_unreachable_redis_exits_3_naming_the_url_but_not_the_password() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url().replace("redis://", "redis://:sekrit@");
    server.stop();
    for args in [
        vec!["status", "job"],
        vec!["acquire", "job", "--ttl", "1s"],
        vec!["release", "job", "t"],
        vec!["extend", "job", "t", "--ttl", "1s"],
        vec!["run", "job", "--ttl", "1s", "--", "true"],
    ] {
        let r = ran(dlock_bare().arg("--redis").arg(&url).args(&args)).await;
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
        let shown = format!("redis://:***@127.0.0.1:{}", server.port());
        assert!(r.stderr.contains(&shown), "{}", r.stderr);
        assert!(!r.stderr.contains("sekrit"), "{}", r.stderr);
    }
}

#[tokio::test]
async fn bad_keys_tokens_and_prefixes_are_exit_2_even_with_redis_unreachable() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    server.stop();
    let long_key = "k".repeat(513);
    let cases: Vec<Vec<&str>> = vec![
        vec!["status", "tab\there"],
        vec!["acquire", &long_key, "--ttl", "1s"],
        vec!["release", "job", "bad\u{7f}token"],
        vec!["--prefix", "a\nb", "status", "job"],
        vec!["run", "esc\u{1b}key", "--ttl", "1s", "--", "true"],
    ];
    for args in cases {
        let r = ran(dlock_bare().arg("--redis").arg(&url).args(&args)).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("the "), "{args:?}: {}", r.stderr);
    }
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
async fn run_passes_the_lock_to_cmd_returns_its_status_and_releases() {
    let server = redis();
    let mut conn = raw(&server).await;
    let script = "echo \"$DLOCK_KEY $DLOCK_TOKEN $DLOCK_FENCE\"; exit 7";
    let r = ran(dlock(&server).args([
        "run", "job", "--ttl", "10s", "--fence", "--", "sh", "-c", script,
    ]))
    .await;
    assert_eq!(r.code, 7, "{}", r.stderr);
    let parts: Vec<&str> = r.stdout.split(' ').collect();
    assert_eq!(parts[0], "job");
    assert_eq!(parts[1].len(), 36);
    assert_eq!(parts[2], "1");
    assert!(!exists(&mut conn, "job").await, "released after CMD");
}

#[tokio::test]
async fn run_exits_75_without_running_cmd_when_busy() {
    let server = redis();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    acquire(&server, "job", "1m").await;
    let touch = format!("touch {}", marker.display());
    let r =
        ran(dlock(&server).args(["run", "job", "--ttl", "10s", "--", "sh", "-c", &touch])).await;
    assert_eq!(r.code, 75);
    assert!(!marker.exists(), "CMD must not run");
    let r = ran(dlock(&server).args([
        "run",
        "job",
        "--ttl",
        "10s",
        "--wait",
        "100ms",
        "--conflict-exit-code",
        "9",
        "--",
        "sh",
        "-c",
        &touch,
    ]))
    .await;
    assert_eq!(r.code, 9);
    assert!(!marker.exists());
}

#[tokio::test]
async fn run_maps_signals_and_missing_commands_like_a_shell() {
    let server = redis();
    let mut conn = raw(&server).await;
    let kill_self = [
        "run",
        "job",
        "--ttl",
        "10s",
        "--",
        "sh",
        "-c",
        "kill -KILL $$",
    ];
    let r = ran(dlock(&server).args(kill_self)).await;
    assert_eq!(r.code, 128 + 9);
    assert!(
        !exists(&mut conn, "job").await,
        "released even when CMD is killed"
    );
    let r =
        ran(dlock(&server).args(["run", "job", "--ttl", "10s", "--", "/nonexistent/cmd"])).await;
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(
        !exists(&mut conn, "job").await,
        "released when CMD cannot start"
    );
}

#[tokio::test]
async fn the_watchdog_keeps_a_short_lock_through_a_longer_command() {
    let server = redis();
    let mut conn = raw(&server).await;
    let mut child = dlock(&server)
        .args(["run", "job", "--ttl", "2s", "--", "sleep", "7"])
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    let token = get(&mut conn, "job").await.unwrap();
    // While CMD runs, the lock never lapses: every look finds the same token and another
    // client never gets in, while the watchdog's extends show as the key's TTL going back up;
    // three of them carry the lock past its first 2 s lease.
    let (mut extends, mut last_ttl) = (0, pttl(&mut conn, "job").await);
    while tokio::time::timeout(Duration::from_millis(50), child.wait())
        .await
        .is_err()
    {
        let Some(now) = get(&mut conn, "job").await else {
            break;
        };
        assert_eq!(now, token, "someone else holds the lock during the command");
        let ttl = pttl(&mut conn, "job").await;
        if ttl > last_ttl {
            extends += 1;
        }
        last_ttl = ttl;
        // A look that gets the lock can only come after `run` released it: had the lock
        // lapsed mid-run instead, `run` would notice at its next extend and exit 76, not 0.
        let r = ran(dlock(&server).args(["acquire", "job", "--ttl", "1s"])).await;
        if r.code == 0 {
            break;
        }
        assert_eq!(r.code, 1, "{}", r.stderr);
    }
    assert_eq!(exit_code(&mut child).await, Some(0));
    assert!(extends >= 3, "saw only {extends} extends");
}

/// A command that records the signal that ends it (`TERM` or `INT`) into `file` and exits 3,
/// or exits 0 after 30 s if none comes; it creates `file.ready` once its handlers are in
/// place. Python rather than `sh`: a shell cannot trap a signal it inherited as ignored (as
/// SIGINT is under a non-interactive shell's background job), Python can.
fn signal_recorder(file: &Path) -> Vec<String> {
    let script = "import signal, sys, time\n\
        f = sys.argv[1]\n\
        def record(sig, _frame):\n    open(f, 'w').write(signal.Signals(sig).name[3:])\n    sys.exit(3)\n\
        signal.signal(signal.SIGTERM, record)\n\
        signal.signal(signal.SIGINT, record)\n\
        open(f + '.ready', 'w').close()\n\
        time.sleep(30)\n";
    vec![
        "python3".into(),
        "-c".into(),
        script.into(),
        file.display().to_string(),
    ]
}

/// Waits until the recorder writing to `file` has its handlers installed.
async fn until_ready(file: &Path) {
    let ready = file.with_extension("ready");
    eventually(
        "CMD to install its handlers",
        Duration::from_secs(20),
        || {
            let ready = ready.clone();
            async move { ready.exists() }
        },
    )
    .await;
}

#[tokio::test]
async fn a_lock_lost_mid_run_terminates_cmd_and_exits_76() {
    let server = redis();
    let mut conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("signal");
    let mut child = dlock(&server)
        .args(["run", "job", "--ttl", "900ms", "--kill-after", "5s", "--"])
        .args(signal_recorder(&got))
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    until_ready(&got).await;
    let () = redis::cmd("DEL")
        .arg("job")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exit_code(&mut child).await, Some(76));
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "TERM");
}

#[tokio::test]
async fn a_lock_taken_over_mid_run_is_lost_and_the_new_owner_keeps_it() {
    let server = redis();
    let mut conn = raw(&server).await;
    let mut child = dlock(&server)
        .args([
            "run",
            "job",
            "--ttl",
            "900ms",
            "--kill-after",
            "1s",
            "--",
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    let () = redis::cmd("SET")
        .arg("job")
        .arg("usurper")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exit_code(&mut child).await, Some(76));
    assert_eq!(get(&mut conn, "job").await.as_deref(), Some("usurper"));
}

#[tokio::test]
async fn sigterm_and_sigint_are_forwarded_to_cmd_and_the_lock_released() {
    use rustix::process::{Pid, Signal, kill_process};
    for (signal, name) in [(Signal::TERM, "TERM"), (Signal::INT, "INT")] {
        let server = redis();
        let mut conn = raw(&server).await;
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("signal");
        let mut child = dlock(&server)
            .args(["run", "job", "--ttl", "10s", "--"])
            .args(signal_recorder(&got))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        until_locked(&conn, "job").await;
        until_ready(&got).await;
        let pid = child.id().unwrap();
        kill_process(Pid::from_raw(pid as i32).unwrap(), signal).unwrap();
        assert_eq!(
            exit_code(&mut child).await,
            Some(3),
            "CMD's status after {name}"
        );
        assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), name);
        assert!(!exists(&mut conn, "job").await, "released after {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_runs_lose_no_update_to_a_shared_file() {
    let server = redis();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counter");
    std::fs::write(&file, "0\n").unwrap();
    let script = format!(
        "n=$(cat {f}); sleep 0.05; echo $((n + 1)) > {f}",
        f = file.display()
    );
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = dlock(&server);
            cmd.args([
                "run", "counter", "--ttl", "5s", "--wait", "60s", "--", "sh", "-c", &script,
            ]);
            tokio::spawn(async move { ran(&mut cmd).await })
        })
        .collect();
    for run in runs {
        let r = run.await.unwrap();
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "8");
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

#[test]
fn any_key_and_ttl_text_gets_a_lock_a_busy_answer_or_exit_2_and_no_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let server = redis();
    let conn = tokio.block_on(raw(&server));
    let keys = prop_oneof![
        "[^\0]{0,20}",
        "\\PC{1,20}",
        Just(String::new()),
        Just("k".repeat(600))
    ];
    let ttls = prop_oneof![
        "[^\0]{0,12}",
        "-?[0-9]{1,25}",
        Just("NaN".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("1s".to_owned()),
        Just("0".to_owned()),
    ];
    let mut runner = TestRunner::new(Config::with_cases(48));
    runner
        .run(&(keys, ttls), |(key, ttl)| {
            let r = tokio.block_on(ran(
                dlock(&server).args(["acquire", "--ttl", &ttl, "--", &key])
            ));
            // Exit 3 only for a grant that came after a TTL of a few milliseconds had run out
            // on a loaded machine: given back, and said so.
            let late = r.code == 3 && r.stderr.contains("only after its TTL had run out");
            prop_assert!(
                matches!(r.code, 0..=2) || late,
                "{key:?} {ttl:?}: exit {} {}",
                r.code,
                r.stderr
            );
            if r.code == 2 {
                prop_assert!(!r.stderr.is_empty());
                let size = tokio.block_on(dbsize(&mut conn.clone()));
                prop_assert_eq!(size, 0, "bad input wrote to Redis");
            }
            if r.code == 0 {
                let mut release = dlock(&server);
                release.args(["release", "--", &key, &r.stdout]);
                let released = tokio.block_on(ran(&mut release));
                // Exit 5: a lease of a few milliseconds ran out before the release came.
                if !matches!(released.code, 0 | 5) {
                    return Err(TestCaseError::fail(released.stderr));
                }
            }
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn max_hold_terminates_cmd_and_releases_the_lock() {
    let server = redis();
    let mut conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("signal");
    let mut child = dlock(&server)
        .args([
            "run",
            "job",
            "--ttl",
            "600ms",
            "--max-hold",
            "1s",
            "--kill-after",
            "5s",
            "--",
        ])
        .args(signal_recorder(&got))
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    until_ready(&got).await;
    // At 1 s CMD (which would run 30 s) is terminated, then the lock released.
    assert_eq!(exit_code(&mut child).await, Some(76));
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "TERM");
    assert!(!exists(&mut conn, "job").await);
}

/// Redis URLs in the forms redis-rs accepts (and near misses a user may type), each carrying
/// a password that contains `sekrit`. (`rediss://` is left out: without a rustls crypto
/// provider a TLS connect panics before any message is printed.)
fn urls_with_passwords(port: u16) -> Vec<String> {
    vec![
        "unix:///nope.sock?pass=sekrit".to_owned(),
        "unix:///nope.sock?db=1&password=sekrit".to_owned(),
        "redis+unix:///nope.sock?user=me&pass=sekrit%2F1".to_owned(),
        "unix:/nope.sock?pass=sek@rit?sekrit".to_owned(),
        format!("redis://:pa/sekrit@127.0.0.1:{port}"),
        format!("redis://me:sekrit/x@127.0.0.1:{port}/0"),
        format!("redis://me:sek@rit:sekrit?y@127.0.0.1:{port}"),
        format!("redis://:sekrit%40%2F@127.0.0.1:{port}/2"),
        format!("redis://:sekrit#frag@127.0.0.1:{port}"),
        format!("redis://:sekrit@127.0.0.1:{port}/0?protocol=3"),
        format!("redis://127.0.0.1:sekrit"),
    ]
}

#[tokio::test]
async fn no_password_reaches_stdout_or_stderr_whatever_the_url_form() {
    let mut server = RedisServer::start().unwrap();
    let port = server.port();
    server.stop();
    for url in urls_with_passwords(port) {
        for args in [
            vec!["status", "job"],
            vec!["--json", "acquire", "job", "--ttl", "1s"],
            vec!["run", "job", "--ttl", "1s", "--", "true"],
        ] {
            let r = ran(dlock_bare().arg("--redis").arg(&url).args(&args)).await;
            assert!(matches!(r.code, 2 | 3), "{url} {args:?}: {}", r.stderr);
            assert!(!r.stderr.is_empty(), "{url} {args:?}: no message");
            let shown = format!("{}\n{}", r.stdout, r.stderr);
            assert!(!shown.contains("sekrit"), "{url} {args:?}: {shown}");
        }
    }
}

#[tokio::test]
async fn a_password_in_a_unix_socket_url_or_with_an_unescaped_slash_is_not_printed() {
    let r =
        ran(dlock_bare().args(["--redis", "unix:///nope.sock?pass=sekrit", "status", "k"])).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("unix:///nope.sock"), "{}", r.stderr);
    assert!(!r.stderr.contains("sekrit"), "{}", r.stderr);

    let r = ran(dlock_bare().args(["--redis", "redis://:pa/sekrit@host", "status", "k"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("invalid Redis URL"), "{}", r.stderr);
    assert!(!r.stderr.contains("sekrit"), "{}", r.stderr);
}

/// The write end of a pipe whose read end is already closed: every write to it fails (EPIPE).
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[tokio::test]
async fn acquire_with_stdout_closed_releases_the_lock_and_exits_4_without_a_panic() {
    let server = redis();
    let mut conn = raw(&server).await;
    for json in [false, true] {
        let mut cmd = dlock(&server);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["acquire", "job", "--ttl", "30s", "--fence"])
            .stdout(closed_pipe())
            .stderr(Stdio::piped());
        let r = ran_as_set_up(&mut cmd).await;
        assert_eq!(r.code, 4, "json {json}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(r.stderr.contains("released"), "{}", r.stderr);
        assert!(
            !exists(&mut conn, "job").await,
            "the unreported lock is left"
        );
    }
    let r = ran_as_set_up(
        dlock(&server)
            .args(["status", "job"])
            .stdout(closed_pipe())
            .stderr(Stdio::piped()),
    )
    .await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[tokio::test]
async fn a_closed_stderr_changes_no_exit_code() {
    let server = redis();
    acquire(&server, "job", "30s").await;
    let cases: [(&[&str], i32); 3] = [
        (&["acquire", "job", "--ttl", "1s"], 1),
        (&["release", "job", "not-the-token"], 1),
        (&["run", "job", "--ttl", "1s", "--", "true"], 75),
    ];
    for (args, code) in cases {
        let r = ran_as_set_up(dlock(&server).args(args).stderr(closed_pipe())).await;
        assert_eq!(r.code, code, "{args:?}");
    }
}

#[tokio::test]
async fn run_with_stderr_closed_still_terminates_cmd_when_the_lock_is_lost() {
    let server = redis();
    let mut conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("signal");
    let mut child = dlock(&server)
        .args(["run", "job", "--ttl", "900ms", "--kill-after", "5s", "--"])
        .args(signal_recorder(&got))
        .stderr(closed_pipe())
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    until_ready(&got).await;
    let () = redis::cmd("DEL")
        .arg("job")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exit_code(&mut child).await, Some(76));
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "TERM");
}

/// A command that never stops on SIGTERM and watches the lock it runs under: it reads the
/// lock's key (`DLOCK_KEY`) from the Redis on 127.0.0.1:`port` in a tight loop and appends
/// `saw <value>` to `file` whenever the key does not hold its own token (`DLOCK_TOKEN`): the
/// lease ended, or someone else holds the lock, while it still runs. It creates `file.ready`
/// once it has seen its token.
fn lease_watcher(port: u16, file: &Path) -> Vec<String> {
    let script = "import os, signal, socket, sys\n\
        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
        port, out = int(sys.argv[1]), sys.argv[2]\n\
        key, token = os.environ['DLOCK_KEY'].encode(), os.environ['DLOCK_TOKEN'].encode()\n\
        conn = socket.create_connection(('127.0.0.1', port))\n\
        replies = conn.makefile('rb')\n\
        get = b'*2\\r\\n$3\\r\\nGET\\r\\n$%d\\r\\n%s\\r\\n' % (len(key), key)\n\
        ready = False\n\
        while True:\n\
        \x20   conn.sendall(get)\n\
        \x20   header = replies.readline()\n\
        \x20   value = None if header.startswith(b'$-1') else replies.read(int(header[1:]) + 2)[:-2]\n\
        \x20   if value != token:\n\
        \x20       with open(out, 'a') as f: f.write('saw %r\\n' % (value,))\n\
        \x20   elif not ready:\n\
        \x20       open(out + '.ready', 'w').close()\n\
        \x20       ready = True\n";
    vec![
        "python3".into(),
        "-c".into(),
        script.into(),
        port.to_string(),
        file.display().to_string(),
    ]
}

/// Asserts that the watcher writing to `file` never saw the lock's key without its token.
fn assert_never_outlived_its_lease(file: &Path) {
    let seen = std::fs::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = seen.lines().collect();
    assert!(
        lines.is_empty(),
        "CMD ran on while the key did not hold its token ({} reads), first: {:?}, last: {:?}",
        lines.len(),
        lines.first(),
        lines.last()
    );
}

#[tokio::test]
async fn max_hold_kills_a_cmd_that_ignores_sigterm_before_anyone_else_can_take_the_lock() {
    let server = redis();
    let conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let mut run = dlock(&server)
        .args([
            "run",
            "job",
            "--ttl",
            "3s",
            "--max-hold",
            "1s",
            "--kill-after",
            "20s",
            "--",
        ])
        .args(lease_watcher(server.port(), &seen))
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    until_ready(&seen).await;
    // Waits for the lock while CMD runs; gets it once `run` has killed CMD and released it.
    let second =
        ran(dlock(&server).args(["acquire", "job", "--ttl", "30s", "--wait", "60s"])).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(exit_code(&mut run).await, Some(76));
    assert_never_outlived_its_lease(&seen);
    assert_eq!(get(&mut conn.clone(), "job").await, Some(second.stdout));
}

#[tokio::test]
async fn a_failing_extend_kills_a_cmd_that_ignores_sigterm_before_the_lease_ends() {
    let server = redis();
    let mut conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let mut run = dlock(&server)
        .args(["run", "job", "--ttl", "3s", "--kill-after", "20s", "--"])
        .args(lease_watcher(server.port(), &seen))
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    until_ready(&seen).await;
    // Scripts are refused from now on: every extend fails at once, the key stays.
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "-eval", "-evalsha"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exit_code(&mut run).await, Some(76));
    assert_never_outlived_its_lease(&seen);
}

#[tokio::test]
async fn an_extend_that_hangs_kills_a_cmd_that_ignores_sigterm_before_the_lease_ends() {
    let server = redis();
    let conn = raw(&server).await;
    let proxy = dlock_tests::proxy::Proxy::start(([127, 0, 0, 1], server.port()).into())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    // Through the proxy, a 1.5 s lease; CMD watches Redis directly.
    let mut run = dlock_bare()
        .args(["--redis", &proxy.url()])
        .args(["run", "job", "--ttl", "1500ms", "--kill-after", "20s", "--"])
        .args(lease_watcher(server.port(), &seen))
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    until_ready(&seen).await;
    // Every extend from now on waits for its command timeout (2 s): longer than the lease.
    proxy.set_fault(dlock_tests::proxy::Fault::Blackhole);
    assert_eq!(exit_code(&mut run).await, Some(76));
    assert_never_outlived_its_lease(&seen);
}

/// `text` quoted for `sh`.
fn sh_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A `dlock run` set up to be started by a shell inside a pseudo-terminal: CMD appends the
/// name of every SIGINT and SIGTERM it gets to `signals` (and exits 3 after SIGTERM), and
/// `run.sh` writes dlock's pid to `pid` before exec'ing it.
struct PtyRun {
    dir: tempfile::TempDir,
    signals: std::path::PathBuf,
    pid: std::path::PathBuf,
}

impl PtyRun {
    /// `stdin_from_null`: dlock's stdin is /dev/null instead of the terminal.
    fn new(server: &RedisServer, stdin_from_null: bool) -> PtyRun {
        let dir = tempfile::tempdir().unwrap();
        let signals = dir.path().join("signals");
        let pid = dir.path().join("pid");
        let recorder = dir.path().join("recorder.py");
        std::fs::write(
            &recorder,
            "import signal, sys, time\n\
             f = sys.argv[1]\n\
             def record(sig, _frame):\n    \
                 with open(f, 'a') as out: out.write(signal.Signals(sig).name[3:] + '\\n')\n    \
                 if sig == signal.SIGTERM: sys.exit(3)\n\
             signal.signal(signal.SIGTERM, record)\n\
             signal.signal(signal.SIGINT, record)\n\
             open(f + '.ready', 'w').close()\n\
             while True: time.sleep(30)\n",
        )
        .unwrap();
        let dlock = [
            env!("CARGO_BIN_EXE_dlock").to_owned(),
            "--redis".into(),
            server.url(),
            "run".into(),
            "job".into(),
            "--ttl".into(),
            "600ms".into(),
            "--".into(),
            "python3".into(),
            recorder.display().to_string(),
            signals.display().to_string(),
        ]
        .map(|arg| sh_quoted(&arg))
        .join(" ");
        let stdin = if stdin_from_null { " </dev/null" } else { "" };
        let script = dir.path().join("run.sh");
        std::fs::write(
            &script,
            format!(
                "echo $$ > {}\nexec {dlock}{stdin}\n",
                sh_quoted(&pid.display().to_string())
            ),
        )
        .unwrap();
        PtyRun { dir, signals, pid }
    }

    /// `script(1)` running `command` (which starts `sh run.sh`, in its directory) on a new
    /// pseudo-terminal; what is written to its stdin is typed into that terminal. `script`
    /// exits with the status of the shell running `command`.
    fn spawn(&self, command: &str) -> tokio::process::Child {
        Command::new("script")
            .args(["-qfec", command, "/dev/null"])
            .env("SHELL", "/bin/sh")
            .env_remove("DLOCK_REDIS_URL")
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("script(1) from util-linux")
    }

    fn dlock_pid(&self) -> rustix::process::Pid {
        let pid = std::fs::read_to_string(&self.pid).unwrap();
        rustix::process::Pid::from_raw(pid.trim().parse().unwrap()).unwrap()
    }

    fn signals(&self) -> Vec<String> {
        std::fs::read_to_string(&self.signals)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    async fn until_signalled(&self) {
        eventually("CMD to record a signal", Duration::from_secs(20), || {
            let got = !self.signals().is_empty();
            async move { got }
        })
        .await;
    }

    /// Ends the run with a SIGTERM to dlock (forwarded to CMD, which records it and exits 3).
    async fn terminate(&self, pty: &mut tokio::process::Child) {
        rustix::process::kill_process(self.dlock_pid(), rustix::process::Signal::TERM).unwrap();
        assert_eq!(exit_code(pty).await, Some(3), "CMD's status through dlock");
    }
}

/// Waits until the lock's watchdog has extended `key` twice: twice a PTTL reading above the
/// one before it.
async fn two_extends(conn: &MultiplexedConnection, key: &str) {
    for _ in 0..2 {
        let last = std::cell::Cell::new(pttl(&mut conn.clone(), key).await);
        eventually(
            "the watchdog to extend the lock",
            Duration::from_secs(20),
            || {
                let mut c = conn.clone();
                let last = &last;
                async move {
                    let now = pttl(&mut c, key).await;
                    now > last.replace(now)
                }
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_ctrl_c_on_the_terminal_reaches_cmd_once_even_with_stdin_from_dev_null() {
    let server = redis();
    let conn = raw(&server).await;
    let run = PtyRun::new(&server, true);
    // exec: dlock alone (with CMD) in the terminal's foreground process group, no shell
    // waiting there that a Ctrl-C would end.
    let mut pty = run.spawn("exec sh run.sh");
    until_locked(&conn, "job").await;
    until_ready(&run.signals).await;
    let stdin = pty.stdin.as_mut().unwrap();
    tokio::io::AsyncWriteExt::write_all(stdin, b"\x03")
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::flush(stdin).await.unwrap();
    run.until_signalled().await;
    // Two watchdog rounds later dlock has long handled its own copy of the SIGINT (a forward
    // would have reached CMD before the SIGTERM below).
    two_extends(&conn, "job").await;
    run.terminate(&mut pty).await;
    assert_eq!(run.signals(), ["INT", "TERM"]);
}

#[tokio::test]
async fn kill_int_reaches_cmd_once_when_dlock_has_a_terminal_but_is_not_its_foreground() {
    let server = redis();
    let conn = raw(&server).await;
    let no_controlling_terminal = "exec setsid -w sh run.sh";
    let background_job = "set -m; sh run.sh & wait $!";
    for command in [no_controlling_terminal, background_job] {
        let run = PtyRun::new(&server, false);
        let mut pty = run.spawn(command);
        until_locked(&conn, "job").await;
        until_ready(&run.signals).await;
        rustix::process::kill_process(run.dlock_pid(), rustix::process::Signal::INT).unwrap();
        run.until_signalled().await;
        run.terminate(&mut pty).await;
        assert_eq!(run.signals(), ["INT", "TERM"], "{command}");
        eventually("the lock to be released", Duration::from_secs(20), || {
            let mut c = conn.clone();
            async move { !exists(&mut c, "job").await }
        })
        .await;
    }
}

/// How many scripts (`EVALSHA`) `conn`'s server has run.
async fn scripts_run(conn: &MultiplexedConnection) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test]
async fn a_signal_while_run_waits_for_the_lock_ends_it_like_the_default_action_without_cmd() {
    let server = redis();
    let conn = raw(&server).await;
    let token = acquire(&server, "job", "1m").await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let before = scripts_run(&conn).await;
    let mut waiting = dlock(&server)
        .args(["run", "job", "--ttl", "10s", "--wait", "1m", "--", "touch"])
        .arg(&marker)
        .spawn()
        .unwrap();
    // Its attempts reach Redis: it is waiting, its signal handlers long in place.
    eventually("run to try for the lock", Duration::from_secs(20), || {
        let conn = conn.clone();
        async move { scripts_run(&conn).await > before + 1 }
    })
    .await;
    let pid = rustix::process::Pid::from_raw(waiting.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(exit_code(&mut waiting).await, Some(128 + 15));
    assert!(!marker.exists(), "CMD must not run");
    assert_eq!(get(&mut conn.clone(), "job").await, Some(token));
}

#[tokio::test]
async fn a_key_holding_another_type_is_a_non_lock_value_exit_1_and_stays_as_it_was() {
    let server = redis();
    let mut conn = raw(&server).await;
    let () = redis::cmd("HSET")
        .arg("job")
        .arg("f")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    for args in [
        &["acquire", "job", "--ttl", "30s"][..],
        &["run", "job", "--ttl", "30s", "--", "true"][..],
    ] {
        let r = ran(dlock(&server).args(args)).await;
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("job holds a non-lock value"),
            "{}",
            r.stderr
        );
    }
    let r = ran(dlock(&server).args(["release", "job", "some-token"])).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let kind: String = redis::cmd("TYPE")
        .arg("job")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
}

#[tokio::test]
async fn fence_counters_are_refused_as_keys_with_exit_2_and_nothing_written() {
    let server = redis();
    let mut conn = raw(&server).await;
    let r = ran(dlock(&server).args(["acquire", "job", "--ttl", "30s", "--fence"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    for args in [
        &["release", "{job}:fence", "1"][..],
        &["extend", "{job}:fence", "1", "--ttl", "1ms"][..],
        &["acquire", "{job}:fence", "--ttl", "1s"][..],
        &["--prefix", "app:", "release", "{job}:fence", "1"][..],
    ] {
        let r = ran(dlock(&server).args(args)).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("fence counter"), "{}", r.stderr);
    }
    assert_eq!(get(&mut conn, "{job}:fence").await.as_deref(), Some("1"));
    assert_eq!(pttl(&mut conn, "{job}:fence").await, -1);
    // Even with Redis unreachable, it is bad input.
    let r = ran(dlock_bare().args([
        "--redis",
        "redis://127.0.0.1:1",
        "release",
        "{job}:fence",
        "1",
    ]))
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
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
    assert!(text.contains("dlock:lock/redis@0.3.0"));

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
async fn repeated_redis_urls_are_a_quorum_and_a_majority_down_exits_3_saying_no_quorum() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| redis()).collect();
    let quorum = |servers: &[RedisServer]| {
        let mut cmd = dlock_bare();
        for server in servers {
            cmd.arg("--redis").arg(server.url());
        }
        cmd
    };
    let r = ran(quorum(&servers).args(["acquire", "job", "--ttl", "30s"])).await;
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
    let r = ran(quorum(&servers).args(["acquire", "job", "--ttl", "30s", "--fence"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("fencing is not available"),
        "{}",
        r.stderr
    );

    // One down: still a majority. Two down: no quorum, exit 3, nothing left on the survivor.
    servers[0].stop();
    let r = ran(quorum(&servers).args(["acquire", "job", "--ttl", "30s"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ran(quorum(&servers).args(["release", "job", &r.stdout])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    servers[1].stop();
    let r = ran(quorum(&servers).args(["acquire", "job", "--ttl", "30s"])).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no quorum"), "{}", r.stderr);
    assert_eq!(dbsize(&mut raw(&servers[2]).await).await, 0);
}
