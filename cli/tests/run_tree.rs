//! `dlock run` and the processes CMD starts, against real `redis-server`s.
//!
//! Proves: however `run` ends (the lock lost, SIGTERM or SIGINT sent to dlock, `--max-hold`,
//! CMD exiting), every process of CMD's tree is gone before dlock releases the lock and exits:
//! a shell's foreground child (the shell does not `exec` it), a grandchild that ignores
//! SIGTERM (killed after `--kill-after`), and a daemon that left CMD's process group and
//! session by a double fork.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{dlock, pid_in, running, until_locked};
use dlock_tests::{get, raw, redis};
use rustix::process::{Pid, Signal, kill_process};

/// CMD for a job tree writing to `dir`: a shell that writes its pid to `shell.pid` and
/// starts
/// - a daemon: a double fork (`( setsid ... & )`) into a session and process group of its
///   own, whose parent exits at once; `sleep` with its pid in `daemon.pid`;
/// - in the background, a Python grandchild that appends the name of every SIGTERM and SIGINT
///   it gets to `grandchild.signals` and otherwise ignores them; its pid in `grandchild.pid`,
///   written once its handlers are in place;
///
/// then, with `then_exit`, waits for both pid files and exits 5; otherwise runs `sleep` in the
/// foreground (its pid in `sleep.pid`) and then `true`, so the shell is not replaced by it.
/// Every pid file is written whole (to a temporary name, then renamed).
fn job_tree(dir: &Path, then_exit: bool) -> Vec<String> {
    let grandchild = "import os, signal, sys, time\n\
        d = sys.argv[1]\n\
        def record(sig, _frame):\n    \
            with open(d + '/grandchild.signals', 'a') as f: f.write(signal.Signals(sig).name[3:] + '\\n')\n\
        signal.signal(signal.SIGTERM, record)\n\
        signal.signal(signal.SIGINT, record)\n\
        with open(d + '/grandchild.tmp', 'w') as f: f.write(str(os.getpid()))\n\
        os.rename(d + '/grandchild.tmp', d + '/grandchild.pid')\n\
        while True: time.sleep(60)\n";
    let shell = r#"d=$1
echo $$ > "$d/shell.tmp" && mv "$d/shell.tmp" "$d/shell.pid"
(setsid sh -c 'echo $$ > "$1/daemon.tmp" && mv "$1/daemon.tmp" "$1/daemon.pid" && exec sleep 600' sh "$d" &)
python3 -c "$3" "$d" &
if [ "$2" = exit ]; then
    until [ -e "$d/daemon.pid" ] && [ -e "$d/grandchild.pid" ]; do sleep 0.01; done
    exit 5
fi
sh -c 'echo $$ > "$1/sleep.tmp" && mv "$1/sleep.tmp" "$1/sleep.pid" && exec sleep 600' sh "$d"
true
"#;
    let mode = if then_exit { "exit" } else { "wait" };
    [
        "sh",
        "-c",
        shell,
        "sh",
        &dir.display().to_string(),
        mode,
        grandchild,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The processes of a started `job_tree`, by name, once each has written its pid.
async fn tree_pids(dir: &Path, names: &[&'static str]) -> Vec<(&'static str, Pid)> {
    let mut pids = Vec::new();
    for &name in names {
        pids.push((name, pid_in(&dir.join(format!("{name}.pid"))).await));
    }
    pids
}

/// The signals the job tree's grandchild recorded.
fn grandchild_signals(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("grandchild.signals"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts that none of `pids` is running.
fn assert_all_gone(pids: &[(&str, Pid)], after: &str) {
    for &(name, pid) in pids {
        assert!(!running(pid), "{name} ({pid:?}) still runs after {after}");
    }
}

/// How `run` is made to stop the job.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// The key overwritten by another owner.
    LockTakenOver,
    /// A signal sent to dlock (not from a terminal).
    Signal(Signal),
    /// `--max-hold` reached.
    MaxHold,
}

/// Runs a `job_tree` under `dlock run`, stops it with `stop`, and checks that dlock exits
/// with `code` only once every process of the tree is gone, that the grandchild got SIGTERM
/// and the signals in `forwarded` before it was killed, and that the lock was not released while
/// any of them ran.
async fn stop_the_tree(stop: Stop, code: i32, forwarded: &[&str]) {
    let server = redis();
    let mut conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let mut run = dlock(&server);
    run.args(["run", "job", "--ttl", "3s", "--kill-after", "1s"]);
    if let Stop::MaxHold = stop {
        run.args(["--max-hold", "6s"]);
    }
    let mut run = run
        .arg("--")
        .args(job_tree(dir.path(), false))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    until_locked(&conn, "job").await;
    let token = get(&mut conn, "job").await.unwrap();
    let pids = tree_pids(dir.path(), &["shell", "sleep", "grandchild", "daemon"]).await;
    let dlock_pid = Pid::from_raw(run.id().unwrap() as i32).unwrap();
    match stop {
        Stop::LockTakenOver => {
            let () = redis::cmd("SET")
                .arg("job")
                .arg("usurper")
                .arg("PX")
                .arg(60_000)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        Stop::Signal(signal) => kill_process(dlock_pid, signal).unwrap(),
        Stop::MaxHold => {}
    }
    // Until dlock exits: whenever the lock is seen released, no process of the tree runs.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "dlock hung");
        let held = get(&mut conn, "job").await.is_some_and(|t| t == token);
        let alive: Vec<_> = pids.iter().filter(|(_, pid)| running(*pid)).collect();
        if !matches!(stop, Stop::LockTakenOver) {
            assert!(held || alive.is_empty(), "released while {alive:?} ran");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status.code(), Some(code), "{stop:?}");
    assert_all_gone(&pids, "dlock exited");
    // The forwarded signals and the stop's SIGTERM reach the grandchild in either order (one
    // can be pending while the other is delivered; Python runs the handlers of pending signals
    // by number).
    let signals = grandchild_signals(dir.path());
    let wanted = forwarded.iter().chain(&["TERM"]);
    for signal in wanted {
        assert!(
            signals.iter().any(|s| s == signal),
            "the grandchild's signals: {signals:?}"
        );
    }
    let holder = get(&mut conn, "job").await;
    match stop {
        Stop::LockTakenOver => assert_eq!(holder.as_deref(), Some("usurper")),
        _ => assert_eq!(holder, None, "the lock is released"),
    }
}

#[tokio::test]
async fn a_lost_lock_stops_every_process_of_cmd_s_tree_before_dlock_exits() {
    stop_the_tree(Stop::LockTakenOver, 76, &[]).await;
}

#[tokio::test]
async fn max_hold_stops_every_process_of_cmd_s_tree_before_the_lock_is_released() {
    stop_the_tree(Stop::MaxHold, 76, &[]).await;
}

#[tokio::test]
async fn sigterm_to_dlock_stops_every_process_of_cmd_s_tree_before_the_lock_is_released() {
    // SIGTERM reaches CMD's group (the shell and its children, 143); what is left of the
    // tree is then stopped. The grandchild may see the forwarded SIGTERM and the stop's as one
    // (a signal pending twice is delivered once).
    stop_the_tree(Stop::Signal(Signal::TERM), 128 + 15, &[]).await;
}

#[tokio::test]
async fn sigint_to_dlock_stops_every_process_of_cmd_s_tree_before_the_lock_is_released() {
    stop_the_tree(Stop::Signal(Signal::INT), 128 + 2, &["INT"]).await;
}

#[tokio::test]
async fn what_cmd_leaves_running_is_stopped_before_the_lock_is_released() {
    let server = redis();
    let mut conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let mut run = dlock(&server)
        .args(["run", "job", "--ttl", "3s", "--kill-after", "1s", "--"])
        .args(job_tree(dir.path(), true))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), run.wait())
        .await
        .expect("dlock hung")
        .unwrap();
    assert_eq!(status.code(), Some(5), "CMD's own status");
    let pids: Vec<(&str, Pid)> = tree_pids(dir.path(), &["shell", "grandchild", "daemon"]).await;
    assert_all_gone(&pids, "dlock exited");
    assert_eq!(grandchild_signals(dir.path()), ["TERM"]);
    assert_eq!(get(&mut conn, "job").await, None, "the lock is released");
}
