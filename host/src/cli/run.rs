//! `dlock run`: a command under the lock, with a watchdog that keeps the lock alive.

use std::io::IsTerminal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use dlock_host::{Error, LockHandle};
use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::output::errln;
use super::{CliResult, Ctx, EXIT_INTERNAL, Failure};

/// What `run` was asked to do (its command-line arguments).
#[derive(Debug, clap::Args)]
pub(super) struct RunSpec {
    /// The lock's key.
    #[arg(value_parser = super::key)]
    key: String,
    /// The lock's TTL; it is extended every TTL/3 while CMD runs.
    #[arg(long, value_parser = super::duration::parse)]
    ttl: Duration,
    /// Wait up to this long for a busy lock. [default: one attempt]
    #[arg(long, value_parser = super::duration::parse)]
    wait: Option<Duration>,
    /// Exit code when the lock is busy and CMD does not run.
    #[arg(long, default_value_t = super::EXIT_RUN_CONFLICT, value_name = "N")]
    conflict_exit_code: u8,
    /// Exit code when the lock is lost while CMD runs.
    #[arg(long, default_value_t = super::EXIT_RUN_LOST, value_name = "N")]
    lost_exit_code: u8,
    /// After the lock is lost: how long CMD has between SIGTERM and SIGKILL.
    #[arg(long, value_parser = super::duration::parse, default_value = "10s")]
    kill_after: Duration,
    /// Take a fencing token and pass it to CMD as DLOCK_FENCE.
    #[arg(long)]
    fence: bool,
    /// Stop extending the lock this long after taking it: past it the lock lapses and CMD
    /// is terminated as for a lost lock (exit 76). [default: no cap]
    #[arg(long, value_parser = super::duration::parse, value_name = "D")]
    max_hold: Option<Duration>,
    /// The command and its arguments (after `--`).
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// How CMD ended.
enum Outcome {
    /// CMD exited on its own (or after a forwarded signal).
    Exited(ExitStatus),
    /// The lock was lost; CMD was terminated and ended with this status.
    Lost(ExitStatus),
}

pub(super) async fn run(ctx: &Ctx, spec: RunSpec) -> CliResult<u8> {
    let client = ctx.client(spec.fence).await?;
    let acquired = match spec.wait {
        None => client.try_acquire(&spec.key, spec.ttl).await,
        Some(wait) => client
            .wait_for_lock(&spec.key, wait, spec.ttl)
            .await
            .map(Some),
    };
    let lock = match acquired {
        Ok(Some(lock)) => lock,
        Ok(None) | Err(Error::NotAcquired) => {
            errln!(
                "dlock: {}: held by someone else; not running the command",
                spec.key
            );
            return Ok(spec.conflict_exit_code);
        }
        Err(e) => return Err(ctx.fail(e)),
    };
    let info = match lock.info().await {
        Ok(info) => info,
        Err(e) => {
            release(ctx, &lock, false).await;
            return Err(ctx.fail(e));
        }
    };
    // Before CMD starts: a signal from here on is forwarded to it, never the default action
    // that would leave CMD running unsupervised.
    let signals = Signals::new()?;

    let mut command = Command::new(&spec.command[0]);
    command
        .args(&spec.command[1..])
        .env("DLOCK_KEY", &spec.key)
        .env("DLOCK_TOKEN", &info.token);
    if let Some(fence) = info.fence {
        command.env("DLOCK_FENCE", fence.to_string());
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            release(ctx, &lock, false).await;
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => EXIT_INTERNAL,
            };
            return Err(Failure::new(
                code,
                format!("cannot run {:?}: {e}", spec.command[0]),
            ));
        }
    };

    let outcome = supervise(child, signals, &lock, &spec, ctx.command_timeout()).await?;
    let (status, lost) = match outcome {
        Outcome::Exited(status) => (status, false),
        Outcome::Lost(status) => (status, true),
    };
    release(ctx, &lock, lost).await;
    if lost {
        return Ok(spec.lost_exit_code);
    }
    Ok(shell_status(status))
}

/// The signals `run` forwards to CMD.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> CliResult<Signals> {
        let handler = |kind: SignalKind| {
            signal(kind)
                .map_err(|e| Failure::new(EXIT_INTERNAL, format!("cannot handle signals: {e}")))
        };
        Ok(Signals {
            term: handler(SignalKind::terminate())?,
            int: handler(SignalKind::interrupt())?,
            hup: handler(SignalKind::hangup())?,
            quit: handler(SignalKind::quit())?,
        })
    }
}

/// Waits for CMD while extending the lock every TTL/3 and forwarding signals.
async fn supervise(
    mut child: Child,
    mut signals: Signals,
    lock: &LockHandle,
    spec: &RunSpec,
    command_timeout: Duration,
) -> CliResult<Outcome> {
    let pid = child
        .id()
        .and_then(|id| Pid::from_raw(id as i32))
        .ok_or_else(|| Failure::new(EXIT_INTERNAL, "the command has no process id"))?;
    let period = (spec.ttl / 3).max(Duration::from_millis(1));
    let stop_extending = spec
        .max_hold
        .and_then(|cap| Instant::now().checked_add(cap));
    let mut watchdog = interval_at(Instant::now() + period, period);
    watchdog.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A terminal delivers Ctrl-C to the whole foreground process group, CMD included.
    let forward_sigint = !std::io::stdin().is_terminal();
    let forward = |sig: Signal| {
        let _ = kill_process(pid, sig);
    };

    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Failure::new(EXIT_INTERNAL, format!("waiting for the command: {e}")))?;
                return Ok(Outcome::Exited(status));
            }
            _ = watchdog.tick() => {
                let capped = stop_extending.is_some_and(|end| Instant::now() >= end);
                let alive = if capped {
                    lock.is_held().await.unwrap_or(false)
                } else {
                    // The next try comes one period later and may take a command timeout.
                    keep_alive(lock, spec.ttl, period + command_timeout).await
                };
                if !alive {
                    errln!("dlock: {}: the lock was lost; terminating the command", spec.key);
                    return Ok(Outcome::Lost(terminate(child, pid, spec.kill_after).await?));
                }
            }
            _ = signals.term.recv() => forward(Signal::TERM),
            _ = signals.hup.recv() => forward(Signal::HUP),
            _ = signals.quit.recv() => forward(Signal::QUIT),
            _ = signals.int.recv() => if forward_sigint { forward(Signal::INT) },
        }
    }
}

/// Extends the lock; false once it is lost or about to be: the key no longer holds the token,
/// or the extend failed and less than `next_try` of validity is left (the next try could only
/// come after the lease ran out, so CMD is stopped while the lock is still valid).
async fn keep_alive(lock: &LockHandle, ttl: Duration, next_try: Duration) -> bool {
    match lock.extend(ttl).await {
        Ok(()) => true,
        Err(Error::NotHeld) => false,
        Err(e) => {
            let left = match lock.info().await {
                Ok(info) if info.is_held => info
                    .valid_until
                    .saturating_duration_since(std::time::Instant::now()),
                _ => Duration::ZERO,
            };
            if left > next_try {
                errln!(
                    "dlock: could not extend the lock ({e}); {} of validity left, will retry",
                    humantime::format_duration(Duration::from_millis(left.as_millis() as u64))
                );
                true
            } else {
                errln!("dlock: could not extend the lock ({e}) and its validity is running out");
                false
            }
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns how CMD ended.
async fn terminate(mut child: Child, pid: Pid, grace: Duration) -> CliResult<ExitStatus> {
    let _ = kill_process(pid, Signal::TERM);
    let wait_error =
        |e: std::io::Error| Failure::new(EXIT_INTERNAL, format!("waiting for the command: {e}"));
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.map_err(wait_error),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.map_err(wait_error)
        }
    }
}

/// Releases the lock at the end of `run`, reporting (not failing on) problems.
async fn release(ctx: &Ctx, lock: &LockHandle, lost: bool) {
    match lock.release().await {
        Ok(()) => {}
        Err(Error::NotHeld) if lost => {}
        Err(Error::NotHeld) => errln!("dlock: the lock had expired or changed hands by the end"),
        Err(e) => errln!(
            "dlock: could not release the lock (it expires with its TTL): {}",
            ctx.fail(e).message
        ),
    }
}

/// A status as a shell reports it: the exit code, or 128 + the signal that ended the process.
fn shell_status(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        (None, None) => EXIT_INTERNAL,
    }
}
