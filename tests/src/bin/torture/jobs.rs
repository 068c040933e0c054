//! `dlock run` workers: processes that run `dlock run` (the CLI beside this binary) over and
//! over on one key, with a job whose processes check, every 50 ms, that the lock key still
//! holds their own token (`DLOCK_TOKEN`). A job process that finds another value reports it on
//! the resources' Redis ([`VIOLATIONS`]): some process of a job ran while its lock was gone
//! (J1). The job's processes are what `dlock run` must stop before it releases: a child of
//! the shell (the shell does not `exec`), a grandchild that ignores SIGTERM, and a double-forked
//! one in a session of its own; the shell itself exits after a random time, leaving them.
//! `dlock run` gets `--max-hold` on some runs, and the nemesis sends SIGTERM or SIGINT to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dlock_tests::stats::XorShift;
use dlock_tests::tool::{EXIT_INTERNAL, Failure, ToolResult};
use tokio::process::Command;

use super::rig::{Rig, fail};

/// The key the jobs contend for.
pub const JOB_KEY: &str = "dlock-torture:job";
/// The list on the resources' Redis where job processes report running without their lock.
pub const VIOLATIONS: &str = "dlock-torture:job-violations";
/// The lease of a job's lock.
const JOB_TTL: Duration = Duration::from_secs(3);

/// The observer every job process runs: `observer.sh NAME`, with `DLOCK_TOKEN` from
/// `dlock run`, `TORTURE_LOCK` (the lock's Redis, straight) and `TORTURE_RESOURCE`.
const OBSERVER: &str = r#"#!/bin/sh
while :; do
  v=$(redis-cli -u "$TORTURE_LOCK" --raw GET dlock-torture:job 2>/dev/null) || { sleep 0.05; continue; }
  # An error reply (LOADING after a restart, ...) has a space; a token never does.
  case "$v" in *" "*) sleep 0.05; continue ;; esac
  if [ "$v" != "$DLOCK_TOKEN" ]; then
    redis-cli -u "$TORTURE_RESOURCE" RPUSH dlock-torture:job-violations \
      "$1 of the job of $DLOCK_TOKEN ran while the key held '$v'" >/dev/null 2>&1
    exit 0
  fi
  sleep 0.05
done
"#;

/// The job: three observers that outlive the shell (a child, a grandchild ignoring SIGTERM, a
/// double-forked one in its own session), then the shell works `$1` seconds and exits.
const JOB: &str = r#"#!/bin/sh
obs="$(dirname "$0")/observer.sh"
"$obs" child &
sh -c 'trap "" TERM; exec "$0" term-ignoring-grandchild' "$obs" &
setsid sh -c '"$0" detached-descendant &' "$obs" &
sleep "$1"
"#;

/// What job workers share: the scripts, the CLI and the counts.
pub struct Jobs {
    dir: tempfile::TempDir,
    dlock: PathBuf,
    /// `dlock run` processes running now (for the nemesis's signals).
    pub pids: std::sync::Mutex<Vec<u32>>,
    /// Jobs that ran, and runs that ended 76 (lock lost, or --max-hold).
    pub ran: AtomicU32,
    pub stopped: AtomicU32,
}

impl Jobs {
    /// Writes the scripts and finds the `dlock` binary beside this one.
    pub fn new() -> ToolResult<Jobs> {
        let exe = std::env::current_exe().map_err(fail)?;
        let dlock = exe.with_file_name("dlock");
        if !dlock.exists() {
            return Err(Failure::new(
                EXIT_INTERNAL,
                format!(
                    "{} is missing: build it (cargo build -p dlock)",
                    dlock.display()
                ),
            ));
        }
        let dir = tempfile::tempdir().map_err(fail)?;
        for (name, text) in [("observer.sh", OBSERVER), ("job.sh", JOB)] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).map_err(fail)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(fail)?;
        }
        Ok(Jobs {
            dir,
            dlock,
            pids: std::sync::Mutex::new(Vec::new()),
            ran: AtomicU32::new(0),
            stopped: AtomicU32::new(0),
        })
    }
}

/// Runs `dlock run` over and over until the run stops.
pub async fn worker(rig: Arc<Rig>, jobs: Arc<Jobs>, seed: u64) -> ToolResult<()> {
    let mut rng = XorShift::new(seed ^ 0x10b5);
    let lock_direct = rig.lock.direct_url(0);
    while !rig.stopping() {
        let work = format!("{:.2}", 0.2 + rng.below(2000) as f64 / 1000.0);
        let mut cmd = Command::new(&jobs.dlock);
        cmd.arg("--redis")
            .arg(&rig.lock.url)
            .args(["run", JOB_KEY, "--ttl"])
            .arg(format!("{}ms", JOB_TTL.as_millis()))
            .args(["--wait", "10s", "--kill-after", "1s"]);
        if rng.below(4) == 0 {
            cmd.args(["--max-hold", "1s"]);
        }
        cmd.arg("--")
            .arg(jobs.dir.path().join("job.sh"))
            .arg(&work)
            .env_remove("DLOCK_REDIS_URL")
            .env("TORTURE_LOCK", &lock_direct)
            .env("TORTURE_RESOURCE", &rig.resource_url)
            .env("DLOCK_CACHE_DIR", jobs.dir.path().join("cache"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(fail)?;
        let pid = child.id().unwrap_or(0);
        jobs.pids.lock().unwrap().push(pid);
        let status = tokio::time::timeout(Duration::from_secs(120), child.wait()).await;
        jobs.pids.lock().unwrap().retain(|&p| p != pid);
        match status {
            Ok(Ok(status)) => {
                jobs.ran
                    .fetch_add(u32::from(status.code() != Some(75)), Ordering::Relaxed);
                jobs.stopped
                    .fetch_add(u32::from(status.code() == Some(76)), Ordering::Relaxed);
            }
            _ => {
                return Err(Failure::new(
                    EXIT_INTERNAL,
                    "a dlock run did not end within two minutes",
                ));
            }
        }
    }
    Ok(())
}

/// What job processes reported: each a J1 violation.
pub async fn violations(rig: &Rig) -> ToolResult<Vec<String>> {
    let mut conn = redis::Client::open(rig.resource_url.as_str())
        .map_err(fail)?
        .get_multiplexed_async_connection()
        .await
        .map_err(fail)?;
    redis::cmd("LRANGE")
        .arg(VIOLATIONS)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .map_err(fail)
}
