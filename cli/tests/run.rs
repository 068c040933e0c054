//! `dlock run`, driven as users drive it, against real `redis-server`s.
//!
//! Proves: `run`'s status and release, its watchdog, lost-lock termination, `--max-hold`,
//! signal forwarding and release; a CMD that ignores SIGTERM killed before its lease ends;
//! mutual exclusion across processes. From a terminal: `run_terminal.rs`; CMD's descendants:
//! `run_tree.rs`.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{acquire, closed_pipe, dlock, dlock_bare, exit_code, ran, until_locked, until_ready};
use dlock_tests::{eventually, exists, get, pttl, raw, redis};
use redis::aio::MultiplexedConnection;

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

#[tokio::test]
async fn a_lock_lost_mid_run_terminates_cmd_and_exits_76() {
    lose_the_lock_mid_run(Stdio::inherit()).await;
}

/// Runs a signal recorder under `dlock run` with `stderr`, deletes the lock mid-run, and checks
/// that CMD got SIGTERM and dlock exited 76.
async fn lose_the_lock_mid_run(stderr: impl Into<Stdio>) {
    let server = redis();
    let mut conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("signal");
    let mut child = dlock(&server)
        .args(["run", "job", "--ttl", "900ms", "--kill-after", "5s", "--"])
        .args(signal_recorder(&got))
        .stderr(stderr)
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

#[tokio::test]
async fn run_with_stderr_closed_still_terminates_cmd_when_the_lock_is_lost() {
    lose_the_lock_mid_run(closed_pipe()).await;
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

/// `--slots 3`: eight runs started together, each waiting for a slot. Each CMD counts the
/// CMDs running beside it (a file each, made before counting, removed before it exits) and
/// holds its slot a moment: no count is over three, and all eight ran.
#[tokio::test]
async fn run_with_slots_runs_at_most_that_many_at_once_and_runs_them_all() {
    let server = redis();
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running");
    std::fs::create_dir(&running).unwrap();
    let log = dir.path().join("log");
    let script = format!(
        "touch {r}/$$; ls {r} | wc -l >> {log}; sleep 0.2; rm {r}/$$",
        r = running.display(),
        log = log.display()
    );
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = dlock(&server);
            cmd.args([
                "run", "pool", "--slots", "3", "--ttl", "30s", "--wait", "2m", "--", "sh", "-c",
                &script,
            ]);
            tokio::spawn(async move { ran(&mut cmd).await })
        })
        .collect();
    for run in runs {
        let r = run.await.unwrap();
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let counts: Vec<u32> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 8, "every run ran: {counts:?}");
    assert!(counts.iter().all(|&n| (1..=3).contains(&n)), "{counts:?}");
    let mut conn = raw(&server).await;
    assert!(!exists(&mut conn, "pool").await, "every slot given back");
}

#[tokio::test]
async fn run_with_slots_exits_75_when_every_slot_is_taken_and_refuses_bad_counts() {
    let server = redis();
    let dir = tempfile::tempdir().unwrap();
    let holder = dir.path().join("holder");
    let mut first = dlock(&server);
    let hold = format!(
        "touch {}; exec sleep 60",
        holder.with_extension("ready").display()
    );
    first.args([
        "run", "pool", "--slots", "1", "--ttl", "30s", "--", "sh", "-c", &hold,
    ]);
    let mut first = first.spawn().unwrap();
    until_ready(&holder).await;
    let r = ran(dlock(&server).args(["run", "pool", "--slots", "1", "--ttl", "10s", "--", "true"]))
        .await;
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("all 1 slots are taken"), "{}", r.stderr);
    let r = ran(dlock(&server).args(["status", "pool", "--slots", "2"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("1 of 2 slots taken, 1 free; the first ends in "),
        "{}",
        r.stdout
    );
    let r = ran(dlock(&server).args(["--json", "status", "pool", "--slots", "2"])).await;
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (json["taken"].as_u64(), json["free"].as_u64()),
        (Some(1), Some(1)),
        "{json}"
    );
    let r = ran(dlock(&server).args(["run", "pool", "--ttl", "10s", "--", "true"])).await;
    assert_ne!(r.code, 0, "a semaphore's key is no lock: {}", r.stderr);
    for bad in ["0", "1001", "x"] {
        let r =
            ran(dlock(&server).args(["run", "other", "--slots", bad, "--ttl", "1s", "--", "true"]))
                .await;
        assert_eq!(r.code, 2, "--slots {bad}: {}", r.stderr);
    }
    first.kill().await.unwrap();
}
