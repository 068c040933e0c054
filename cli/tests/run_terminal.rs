//! `dlock run` started from a shell on a pseudo-terminal (`script(1)`), against real
//! `redis-server`s.
//!
//! Proves: CMD's process group is the terminal's foreground while dlock's group has it: a
//! Ctrl-C reaches CMD once, CMD reads the terminal, and the shell reads it after dlock (with
//! and without job control); a Ctrl-Z stops the job as the shell sees it, and `fg` continues
//! it; a `kill -INT` aimed at dlock is forwarded when dlock has a terminal but is not its
//! foreground.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{exit_code, until_locked, until_ready};
use dlock_tests::{RedisServer, eventually, exists, pttl, raw, redis};
use redis::aio::MultiplexedConnection;
use tokio::process::Command;

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

/// Types `text` into the terminal of `pty` (a `PtyRun::spawn`).
async fn type_into(pty: &mut tokio::process::Child, text: &str) {
    let stdin = pty.stdin.as_mut().unwrap();
    tokio::io::AsyncWriteExt::write_all(stdin, text.as_bytes())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::flush(stdin).await.unwrap();
}

/// Waits until `file` holds the line `line`.
async fn until_written(file: &std::path::Path, line: &str) {
    eventually(
        &format!("{line:?} in {}", file.display()),
        Duration::from_secs(20),
        || {
            let got = std::fs::read_to_string(file).unwrap_or_default();
            async move { got.trim_end() == line }
        },
    )
    .await;
}

#[tokio::test]
async fn an_interactive_cmd_reads_the_terminal_and_the_shell_reads_it_after_dlock() {
    let server = redis();
    let conn = raw(&server).await;
    // A script run from a terminal, without and with job control: dlock's CMD reads a line
    // from the terminal, then the script itself reads the next one.
    for job_control in ["", "set -m\n"] {
        let dir = tempfile::tempdir().unwrap();
        let dlock = dlock_run_line(&server, "read a && echo \"$a\" > cmd.txt");
        let mut pty = in_a_terminal(
            dir.path(),
            &format!("{job_control}{dlock}\necho $? > code.txt\nread b\necho \"$b\" > after.txt\n"),
        );
        until_locked(&conn, "job").await;
        type_into(&mut pty, "one\n").await;
        until_written(&dir.path().join("cmd.txt"), "one").await;
        type_into(&mut pty, "two\n").await;
        until_written(&dir.path().join("after.txt"), "two").await;
        assert_eq!(exit_code(&mut pty).await, Some(0), "{job_control:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("code.txt")).unwrap(),
            "0\n",
            "dlock's status, {job_control:?}"
        );
    }
}

#[tokio::test]
async fn ctrl_z_stops_the_job_for_the_shell_and_fg_continues_it() {
    let server = redis();
    let conn = raw(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let dlock = dlock_run_line(
        &server,
        "echo $$ > cmd.tmp && mv cmd.tmp cmd.pid && read a && echo \"$a\" > cmd.txt",
    );
    // A shell with job control: the stopped job's status (128 + SIGTSTP), then `fg`'s.
    let mut pty = in_a_terminal(
        dir.path(),
        &format!("set -m\n{dlock}\necho $? > stopped.txt\nfg\necho $? > code.txt\n"),
    );
    until_locked(&conn, "job").await;
    let cmd = common::pid_in(&dir.path().join("cmd.pid")).await;
    eventually(
        "CMD's group to be the terminal's foreground",
        Duration::from_secs(20),
        || {
            let foreground = terminal_foreground(cmd);
            async move { foreground == Some(cmd.as_raw_nonzero().get()) }
        },
    )
    .await;
    type_into(&mut pty, "\x1a").await;
    until_written(&dir.path().join("stopped.txt"), "148").await;
    type_into(&mut pty, "one\n").await;
    until_written(&dir.path().join("cmd.txt"), "one").await;
    until_written(&dir.path().join("code.txt"), "0").await;
    assert_eq!(exit_code(&mut pty).await, Some(0));
}

/// The foreground process group of the controlling terminal of process `pid` (`tpgid` in
/// `/proc/PID/stat`).
fn terminal_foreground(pid: rustix::process::Pid) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    // "pid (comm) state ppid pgrp session tty_nr tpgid ...".
    stat.rsplit_once(')')?
        .1
        .split_ascii_whitespace()
        .nth(5)?
        .parse()
        .ok()
}

/// The shell line that runs `cmd` (a `sh -c` script) under `dlock run job --ttl 10s`.
fn dlock_run_line(server: &dlock_tests::RedisServer, cmd: &str) -> String {
    [
        env!("CARGO_BIN_EXE_dlock"),
        "--redis",
        &server.url(),
        "run",
        "job",
        "--ttl",
        "10s",
        "--",
        "sh",
        "-c",
        cmd,
    ]
    .map(sh_quoted)
    .join(" ")
}

/// `script` as `run.sh` in `dir`, run by `sh` in a terminal of its own (script(1)), whose
/// keyboard is the child's stdin.
fn in_a_terminal(dir: &std::path::Path, script: &str) -> tokio::process::Child {
    std::fs::write(dir.join("run.sh"), script).unwrap();
    Command::new("script")
        .args(["-qfec", "sh run.sh", "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env_remove("DLOCK_REDIS_URL")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("script(1) from util-linux")
}
