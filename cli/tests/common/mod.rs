//! Helpers shared by the `dlock` CLI's integration tests: the binary run against a given
//! Redis (or a quorum of them), what it printed and its exit code.

#![allow(dead_code, reason = "each test binary uses a subset of the helpers")]

use std::process::Stdio;
use std::time::Duration;

use dlock_tests::{RedisServer, eventually, exists};
use redis::aio::MultiplexedConnection;
use tokio::process::Command;

/// `dlock --redis URL ...`, with no URL inherited from the environment.
pub fn dlock(server: &RedisServer) -> Command {
    let mut cmd = dlock_bare();
    cmd.arg("--redis").arg(server.url());
    cmd
}

pub fn dlock_bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlock"));
    cmd.env_remove("DLOCK_REDIS_URL").kill_on_drop(true);
    cmd
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub async fn ran(cmd: &mut Command) -> Ran {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    ran_as_set_up(cmd).await
}

/// Runs `cmd` with the stdin, stdout and stderr it was given (unlike `Command::output`, which
/// pipes stdout and stderr whatever was set) and collects what was piped.
pub async fn ran_as_set_up(cmd: &mut Command) -> Ran {
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

pub async fn acquire(server: &RedisServer, key: &str, ttl: &str) -> String {
    let r = ran(dlock(server).args(["acquire", key, "--ttl", ttl])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
}

/// Waits until `key` exists (a `dlock run` started in the background took the lock).
pub async fn until_locked(conn: &MultiplexedConnection, key: &str) {
    eventually("the lock to be taken", Duration::from_secs(20), || {
        let mut c = conn.clone();
        async move { exists(&mut c, key).await }
    })
    .await;
}

/// Waits until the command writing to `file` has created `file.ready` (its signal handlers are
/// in place).
pub async fn until_ready(file: &std::path::Path) {
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

pub async fn exit_code(child: &mut tokio::process::Child) -> Option<i32> {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("dlock hung")
        .unwrap();
    status.code()
}

/// The write end of a pipe whose read end is already closed: every write to it fails (EPIPE).
pub fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

/// `dlock` with each of `servers` as a `--redis`: quorum mode.
pub fn on_quorum(servers: &[RedisServer]) -> Command {
    let mut cmd = dlock_bare();
    for server in servers {
        cmd.arg("--redis").arg(server.url());
    }
    cmd
}

/// The (key, token) pairs `dlock --json status` lists, `cmd` given its Redis and `extra`
/// arguments added after `status`.
pub async fn listed_locks(cmd: &mut Command, extra: &[&str]) -> Vec<(String, String)> {
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

/// The process id written to `file` (by a job that writes it whole: to a temporary name, then
/// renamed), once the file exists.
pub async fn pid_in(file: &std::path::Path) -> rustix::process::Pid {
    eventually(
        &format!("{} to be written", file.display()),
        Duration::from_secs(20),
        || {
            let exists = file.exists();
            async move { exists }
        },
    )
    .await;
    let pid = std::fs::read_to_string(file).unwrap();
    rustix::process::Pid::from_raw(pid.trim().parse().unwrap()).unwrap()
}

/// Whether process `pid` is running: it exists and is not a zombie (a process whose parent
/// died is reaped by PID 1, which in a container may never do so).
pub fn running(pid: rustix::process::Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) else {
        return false;
    };
    // "pid (comm) state ...": comm may hold spaces and parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}
