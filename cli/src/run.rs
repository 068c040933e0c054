//! `dlock run`: a command under the lock, with a watchdog that keeps the lock alive.
//!
//! The invariant: CMD runs only while the lease is valid. Once the lock cannot be kept (lost,
//! an extend failing or hanging while validity runs out, `--max-hold` reached) CMD gets
//! SIGTERM, and SIGKILL no later than shortly before the lease ends. Whatever happens after CMD
//! has started, it is no longer running when the lock is released, and the lock is released
//! before anything is reported.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::ExitStatus;
use std::time::Duration;

use dlock_host::{Deadline, Error, HandleStatus, LockHandle};
use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout_at};

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
    /// When the lock is lost or cannot be kept: how long CMD has between SIGTERM and SIGKILL.
    /// SIGKILL comes earlier if the lease would end first.
    #[arg(long, value_parser = super::duration::parse, default_value = "10s")]
    kill_after: Duration,
    /// Take a fencing token and pass it to CMD as DLOCK_FENCE.
    #[arg(long)]
    fence: bool,
    /// Hold the lock at most this long: then CMD is terminated as for a lost lock (while the
    /// lease is still valid), the lock released, and dlock exits 76. [default: no cap]
    #[arg(long, value_parser = super::duration::parse, value_name = "D")]
    max_hold: Option<Duration>,
    /// The command and its arguments (after `--`).
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<String>,
}

impl RunSpec {
    /// The lock's key.
    pub(super) fn key(&self) -> &str {
        &self.key
    }
}

/// How supervision ended. In every case CMD is no longer running (or, for `Failed`, has been
/// sent SIGKILL).
enum Ended {
    /// CMD exited on its own (or after a forwarded signal).
    Exited(ExitStatus),
    /// The lock could not be kept (lost, running out, `--max-hold`): CMD was terminated.
    Stopped,
    /// dlock could not supervise CMD (its process id or status could not be had): CMD was
    /// killed.
    Failed(Failure),
}

pub(super) async fn run(ctx: &Ctx, spec: RunSpec) -> CliResult<u8> {
    // Before anything is taken: from here on a signal is dlock's to handle, never the default
    // action that would end dlock and leave the lock or CMD behind.
    let mut signals = Signals::new()?;
    let client = ctx.client(spec.fence).await?;
    let acquiring = async {
        match spec.wait {
            None => client.try_acquire(&spec.key, spec.ttl).await,
            Some(wait) => client
                .wait_for_lock(&spec.key, spec.ttl, Deadline::after(wait))
                .await
                .map(Some),
        }
    };
    let acquired = tokio::select! {
        acquired = acquiring => acquired,
        signal = signals.recv() => {
            // As the default action would: end with 128+N. A lock granted in this very
            // instant is given back by the client, or expires with its TTL.
            errln!("dlock: {}: interrupted while taking the lock; not running the command", spec.key);
            return Ok(shell_signal_status(signal.as_raw()));
        }
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
        Err(e) => return Err(ctx.fail_to_acquire(&spec.key, e)),
    };
    let info = lock.info();

    let mut command = Command::new(&spec.command[0]);
    command
        .args(&spec.command[1..])
        .env("DLOCK_KEY", &spec.key)
        .env("DLOCK_TOKEN", &info.token)
        // Should dlock itself fail (a panic), CMD does not run on without the lease.
        .kill_on_drop(true);
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

    // CMD runs. `supervise` returns only once it has ended, whatever happens, and the lock is
    // released before the outcome is reported.
    let lease = Lease::new(
        spec.ttl,
        spec.kill_after,
        ctx.command_timeout(),
        Instant::from_std(info.valid_until),
    );
    let ended = supervise(child, &mut signals, &lock, &spec, lease).await;
    release(ctx, &lock, matches!(ended, Ended::Stopped)).await;
    match ended {
        Ended::Exited(status) => Ok(shell_status(status)),
        Ended::Stopped => Ok(spec.lost_exit_code),
        Ended::Failed(failure) => Err(failure),
    }
}

/// The signals `run` handles: forwarded to CMD while it runs; before, they end `run`.
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

    /// The next signal received.
    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::TERM,
            _ = self.int.recv() => Signal::INT,
            _ = self.hup.recv() => Signal::HUP,
            _ = self.quit.recv() => Signal::QUIT,
        }
    }
}

/// Whether a SIGINT dlock received has reached CMD already: dlock has a controlling terminal
/// whose foreground process group is dlock's own, which CMD shares, so the SIGINT came from
/// the terminal (Ctrl-C), which delivers it to the whole group. Otherwise (no controlling
/// terminal, or dlock in the background) it was sent to dlock alone and must be forwarded.
fn terminal_delivered_sigint() -> bool {
    use rustix::fs::{Mode, OFlags, open};
    let Ok(tty) = open(
        "/dev/tty",
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    rustix::termios::tcgetpgrp(&tty)
        .is_ok_and(|foreground| foreground == rustix::process::getpgrp())
}

/// The watchdog's schedule, and how long the lease is known to be valid.
struct Lease {
    /// How often the lock is extended (TTL/3).
    period: Duration,
    /// How long one extend may take (the command timeout).
    command_timeout: Duration,
    /// When CMD is still running this close to the end of the lease and no extend has
    /// succeeded, it is terminated: min(--kill-after, TTL/6).
    grace: Duration,
    /// SIGKILL comes no later than this long before the lease ends: min(TTL/10, 1 s).
    margin: Duration,
    /// The end of the lease, on the local monotonic clock, counted from when the last
    /// successful acquire or extend was sent (so never after Redis's own expiry).
    valid_until: Instant,
}

impl Lease {
    fn new(
        ttl: Duration,
        kill_after: Duration,
        command_timeout: Duration,
        valid_until: Instant,
    ) -> Lease {
        Lease {
            period: (ttl / 3).max(Duration::from_millis(1)),
            command_timeout,
            grace: kill_after.min(ttl / 6),
            margin: (ttl / 10).min(Duration::from_secs(1)),
            valid_until,
        }
    }

    /// When to stop CMD if no extend has succeeded by then.
    fn stop_by(&self) -> Instant {
        earlier(self.valid_until, self.margin + self.grace)
    }

    /// The latest moment for SIGKILL.
    fn kill_by(&self) -> Instant {
        earlier(self.valid_until, self.margin)
    }

    /// Whether, after a failed extend, the next try (one period away, taking up to a command
    /// timeout) can still succeed while the lease is valid.
    fn can_retry(&self) -> bool {
        self.valid_until.saturating_duration_since(Instant::now())
            > self.period + self.command_timeout
    }
}

/// `at` minus `before`, or now if that is not representable.
fn earlier(at: Instant, before: Duration) -> Instant {
    at.checked_sub(before).unwrap_or_else(Instant::now)
}

/// An extend in flight; the watchdog goes on while it runs.
type Extending<'a> = Pin<Box<dyn Future<Output = dlock_host::Result<()>> + Send + 'a>>;

/// Waits for CMD while extending the lock every TTL/3 and forwarding signals; terminates CMD
/// when the lock cannot be kept. Returns once CMD is no longer running.
async fn supervise(
    mut child: Child,
    signals: &mut Signals,
    lock: &LockHandle,
    spec: &RunSpec,
    mut lease: Lease,
) -> Ended {
    let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw)
    else {
        let _ = child.start_kill();
        return Ended::Failed(Failure::new(EXIT_INTERNAL, "the command has no process id"));
    };
    let mut ticks = interval_at(Instant::now() + lease.period, lease.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let cap = spec
        .max_hold
        .and_then(|cap| Instant::now().checked_add(cap));
    let mut extending: Option<Extending<'_>> = None;

    let reason = loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(status) => Ended::Exited(status),
                    Err(e) => {
                        let _ = child.start_kill();
                        Ended::Failed(wait_failure(e))
                    }
                };
            }
            _ = ticks.tick(), if extending.is_none() => {
                extending = Some(Box::pin(lock.extend(spec.ttl)));
            }
            extended = async { extending.as_mut().expect("guarded").await }, if extending.is_some() => {
                extending = None;
                match extended {
                    Ok(()) => match lock.info() {
                        info if info.status == HandleStatus::Held => lease.valid_until = Instant::from_std(info.valid_until),
                        _ => break "the lock was lost".to_owned(),
                    },
                    Err(Error::NotHeld) => break "the lock was lost".to_owned(),
                    Err(e) if lease.can_retry() => {
                        let left = lease.valid_until.saturating_duration_since(Instant::now());
                        errln!(
                            "dlock: could not extend the lock ({e}); {} of validity left, will retry",
                            humantime::format_duration(Duration::from_millis(left.as_millis() as u64))
                        );
                    }
                    Err(e) => break format!("could not extend the lock ({e}) and its validity is running out"),
                }
            }
            _ = sleep_until(lease.stop_by()) => {
                break "no extend succeeded and the lock's validity is running out".to_owned();
            }
            _ = sleep_until(cap.unwrap_or_else(Instant::now)), if cap.is_some() => {
                break "--max-hold reached".to_owned();
            }
            signal = signals.recv() => {
                if signal != Signal::INT || !terminal_delivered_sigint() {
                    let _ = kill_process(pid, signal);
                }
            }
        }
    };
    errln!("dlock: {}: {reason}; terminating the command", spec.key);
    let kill_by = (Instant::now() + spec.kill_after).min(lease.kill_by());
    // An extend still in flight runs to its end (within its command timeout) meanwhile, so
    // that the lock is released after it, not raced by it.
    let in_flight = async {
        if let Some(extend) = extending {
            let _ = extend.await;
        }
    };
    let (terminated, ()) = tokio::join!(terminate(&mut child, pid, kill_by), in_flight);
    match terminated {
        Ok(_) => Ended::Stopped,
        Err(failure) => Ended::Failed(failure),
    }
}

/// SIGTERM now, SIGKILL at `kill_by` if CMD is still running; returns how CMD ended.
async fn terminate(child: &mut Child, pid: Pid, kill_by: Instant) -> CliResult<ExitStatus> {
    let _ = kill_process(pid, Signal::TERM);
    match timeout_at(kill_by, child.wait()).await {
        Ok(status) => status.map_err(wait_failure),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.map_err(wait_failure)
        }
    }
}

fn wait_failure(e: std::io::Error) -> Failure {
    Failure::new(EXIT_INTERNAL, format!("waiting for the command: {e}"))
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
        (None, Some(signal)) => shell_signal_status(signal),
        (None, None) => EXIT_INTERNAL,
    }
}

/// 128 + `signal`, as a shell reports a process that signal ended.
fn shell_signal_status(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Lease;

    const TTLS_MS: [u64; 6] = [1, 250, 900, 3_000, 60_000, 3_600_000];

    #[test]
    fn cmd_is_stopped_then_killed_before_the_lease_ends() {
        let now = Instant::now();
        for ttl in TTLS_MS.map(Duration::from_millis) {
            for kill_after in [
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(10),
            ] {
                let lease = Lease::new(ttl, kill_after, Duration::from_secs(2), now + ttl);
                let (stop, kill) = (lease.stop_by(), lease.kill_by());
                assert!(kill < now + ttl, "SIGKILL at the lease's end, ttl {ttl:?}");
                assert!(stop <= kill, "stop after SIGKILL, ttl {ttl:?}");
                assert!(
                    stop > now + ttl / 2,
                    "a healthy extend (TTL/3) would be cut short, ttl {ttl:?}"
                );
            }
        }
    }

    #[test]
    fn a_failed_extend_is_retried_only_if_the_next_try_fits_in_the_lease() {
        let now = Instant::now();
        let timeout = Duration::from_secs(2);
        let lease = |ttl_ms, left_ms| {
            Lease::new(
                Duration::from_millis(ttl_ms),
                Duration::from_secs(10),
                timeout,
                now + Duration::from_millis(left_ms),
            )
        };
        // Next try: TTL/3 from now, taking up to the 2 s command timeout.
        assert!(lease(60_000, 40_000).can_retry());
        assert!(!lease(60_000, 21_000).can_retry());
        assert!(!lease(3_000, 2_000).can_retry());
    }
}
