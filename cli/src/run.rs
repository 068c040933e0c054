//! `dlock run`: a command under the lock, kept alive by the library's watchdog
//! (`LockHandle::keep_alive`).
//!
//! The invariant: CMD, and every process it starts, runs only while the lease is valid. CMD
//! leads a process group of its own and, on Linux, dlock is a child subreaper (see `job`).
//! Once the lock cannot be kept (lost, an extend failing or hanging while validity runs out,
//! `--max-hold` reached) CMD's group and every other descendant of dlock get SIGTERM, and
//! SIGKILL no later than shortly before the lease ends; when CMD exits, what it left running
//! is stopped the same way. Whatever happens after CMD has started, none of its processes runs
//! when the lock is released (a descendant can escape only as `job` says), and the lock is
//! released before anything is reported.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use dlock_host::contract::MAX_PERMITS;
use dlock_host::{Deadline, Error, KeepAlive, KeepAliveOptions, Lost, ReleaseOutcome};
use rustix::process::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::job::{self, Job, Reaped};
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
    /// When the lock is lost or cannot be kept, or CMD exits leaving processes running: how
    /// long CMD's processes have between SIGTERM and SIGKILL. SIGKILL comes earlier if the
    /// lease would end first.
    #[arg(long, value_parser = super::duration::parse, default_value = "10s")]
    kill_after: Duration,
    /// Take a fencing token and pass it to CMD as DLOCK_FENCE.
    #[arg(long)]
    fence: bool,
    /// Run as one of at most N runs holding KEY at once across the fleet, instead of its only
    /// one: KEY is then a counting semaphore of N permits (a sorted set of the runs' leases,
    /// not a lock), of which this run takes one. Every run on KEY must give the same N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PERMITS)))]
    slots: Option<u32>,
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

/// How supervision ended. In every case no process of the job is left (or, for `Failed`, each
/// one found has been sent SIGKILL).
enum Ended {
    /// CMD exited on its own (or after a forwarded signal); what it left running was stopped.
    Exited(ExitStatus),
    /// The lock could not be kept (lost, running out, `--max-hold`): the job was terminated.
    Stopped,
    /// dlock could not supervise the job (waiting for it failed): it was killed.
    Failed(Failure),
}

pub(super) async fn run(ctx: &Ctx, spec: RunSpec) -> CliResult<u8> {
    // Before anything is taken: from here on a signal is dlock's to handle, never the default
    // action that would end dlock and leave the lock or CMD behind.
    let mut signals = Signals::new()?;
    let subreaper = match job::become_subreaper() {
        Ok(()) => true,
        Err(e) => {
            errln!(
                "dlock: cannot become a child subreaper ({e}): processes that leave the \
                 command's process group are not stopped"
            );
            false
        }
    };
    let client = ctx.client(spec.fence).await?;
    let acquiring = async {
        match (spec.slots, spec.wait) {
            (None, None) => client.try_acquire(&spec.key, spec.ttl).await,
            (None, Some(wait)) => client
                .wait_for_lock(&spec.key, spec.ttl, Deadline::after(wait))
                .await
                .map(Some),
            (Some(slots), None) => {
                client
                    .semaphore(&spec.key, slots)
                    .try_acquire(1, spec.ttl)
                    .await
            }
            (Some(slots), Some(wait)) => client
                .semaphore(&spec.key, slots)
                .wait(1, spec.ttl, Deadline::after(wait))
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
            match spec.slots {
                None => errln!(
                    "dlock: {}: held by someone else; not running the command",
                    spec.key
                ),
                Some(slots) => errln!(
                    "dlock: {}: all {slots} slots are taken; not running the command",
                    spec.key
                ),
            }
            return Ok(spec.conflict_exit_code);
        }
        Err(e) => return Err(ctx.fail_to_acquire(&spec.key, e)),
    };
    let info = lock.info();

    let mut command = Command::new(&spec.command[0]);
    command
        .args(&spec.command[1..])
        .env("DLOCK_KEY", &spec.key)
        .env("DLOCK_TOKEN", &info.token);
    if let Some(fence) = info.fence {
        command.env("DLOCK_FENCE", fence.to_string());
    }
    // Should dlock itself fail (a panic), dropping the job kills it: it does not run on
    // without the lease.
    let job = match Job::spawn(command, subreaper) {
        Ok(job) => job,
        Err(e) => {
            report_release(ctx, lock.release().await, false);
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

    // CMD runs. `supervise` returns only once every process of the job has ended, whatever
    // happens, and the lock is released before the outcome is reported.
    let margins = Margins::new(spec.ttl, spec.kill_after);
    let kept = lock.keep_alive(
        KeepAliveOptions::new(spec.ttl)
            .with_stop_margin(margins.stop)
            .with_max_hold(spec.max_hold),
    );
    let ended = supervise(job, &mut signals, &kept, &spec, margins).await;
    let lost = matches!(ended, Ended::Stopped);
    report_release(ctx, kept.release().await, lost);
    match ended {
        Ended::Exited(status) => Ok(shell_status(status)),
        Ended::Stopped => Ok(spec.lost_exit_code),
        Ended::Failed(failure) => Err(failure),
    }
}

/// The signals `run` handles: SIGTERM, SIGINT, SIGHUP and SIGQUIT, forwarded to CMD's group
/// while it runs (before, they end `run`); SIGCHLD, to reap; SIGCONT, to resume CMD.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    child: tokio::signal::unix::Signal,
    cont: tokio::signal::unix::Signal,
}

/// A signal received while CMD runs.
enum Got {
    /// SIGCHLD: a child process changed state.
    Child,
    /// SIGCONT: dlock was continued.
    Continued,
    /// One to forward to CMD's group.
    Forward(Signal),
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
            child: handler(SignalKind::child())?,
            cont: handler(SignalKind::from_raw(Signal::CONT.as_raw()))?,
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

    /// The next signal received while CMD runs.
    async fn next(&mut self) -> Got {
        tokio::select! {
            _ = self.child.recv() => Got::Child,
            _ = self.cont.recv() => Got::Continued,
            _ = self.term.recv() => Got::Forward(Signal::TERM),
            _ = self.int.recv() => Got::Forward(Signal::INT),
            _ = self.hup.recv() => Got::Forward(Signal::HUP),
            _ = self.quit.recv() => Got::Forward(Signal::QUIT),
        }
    }

    /// Stops dlock's process group with SIGTSTP, as a terminal's Ctrl-Z would have, and
    /// returns once dlock is continued (SIGCONT).
    async fn suspend(&mut self) {
        while timeout(Duration::ZERO, self.cont.recv()).await.is_ok() {}
        let _ = rustix::process::kill_process_group(rustix::process::getpgrp(), Signal::TSTP);
        self.cont.recv().await;
    }
}

/// When CMD must be stopped and killed, counted back from the end of the lease.
#[derive(Clone, Copy, Debug)]
struct Margins {
    /// CMD gets SIGTERM when no extend has succeeded and this little validity is left:
    /// min(--kill-after, TTL/6), plus the kill margin.
    stop: Duration,
    /// SIGKILL comes no later than this long before the lease ends: min(TTL/10, 1 s).
    kill: Duration,
}

impl Margins {
    fn new(ttl: Duration, kill_after: Duration) -> Margins {
        let kill = (ttl / 10).min(Duration::from_secs(1));
        Margins {
            stop: kill + kill_after.min(ttl / 6),
            kill,
        }
    }
}

/// How long a stop waits at most before it looks for new processes of the job (reparented to
/// dlock, or started meanwhile), which no SIGCHLD announces.
const RESCAN: Duration = Duration::from_millis(50);

/// Waits for the job while the watchdog keeps the lock and signals are forwarded to CMD's
/// group; stops the job when the lock cannot be kept, and what CMD left running when CMD exits.
/// Returns once no process of the job is left.
async fn supervise(
    mut job: Job,
    signals: &mut Signals,
    kept: &KeepAlive,
    spec: &RunSpec,
    margins: Margins,
) -> Ended {
    // Once the job is being stopped: SIGTERM sent, SIGKILL due at `kill_by`, or sent.
    let mut stopping: Option<(Signal, Instant)> = None;
    let mut lost = false;
    loop {
        match job.reap() {
            Ok(Reaped::Gone) => break,
            Ok(Reaped::Running) => {}
            Err(e) => return Ended::Failed(wait_failure(e)),
        }
        if stopping.is_none() && job.status().is_some() {
            errln!(
                "dlock: {}: the command exited; terminating what it left running",
                spec.key
            );
            stopping = Some((Signal::TERM, kill_by(kept, spec, margins)));
        }
        if let Some((signal, _)) = stopping {
            job.stop(signal);
        } else if job.take_stop() && job.suspend_terminal() {
            if job::can_suspend() {
                signals.suspend().await;
            }
            let left = kept
                .valid_until()
                .saturating_duration_since(std::time::Instant::now());
            if left > margins.stop {
                job.resume();
            } else {
                errln!(
                    "dlock: {}: the lease ran out while stopped; terminating the command",
                    spec.key
                );
                lost = true;
                stopping = Some((Signal::TERM, kill_by(kept, spec, margins)));
                continue;
            }
        }
        let terminating = matches!(stopping, Some((Signal::TERM, _)));
        let kill_at = stopping.map_or_else(Instant::now, |(_, at)| at);
        tokio::select! {
            got = signals.next() => match got {
                Got::Child => {}
                Got::Forward(signal) => job.signal_group(signal),
                // Continued after a stop (a shell's `fg` or `bg`): so is CMD.
                Got::Continued => {
                    if stopping.is_none() {
                        job.resume();
                    }
                }
            },
            reason = kept.lost(), if stopping.is_none() => {
                let reason = match reason {
                    Lost::MaxHold => "--max-hold reached".to_owned(),
                    other => other.to_string(),
                };
                errln!("dlock: {}: {reason}; terminating the command", spec.key);
                lost = true;
                stopping = Some((Signal::TERM, kill_by(kept, spec, margins)));
            }
            () = sleep_until(kill_at), if terminating => {
                stopping = Some((Signal::KILL, kill_at));
            }
            () = sleep(RESCAN), if stopping.is_some() => {}
        }
    }
    job.give_back_terminal();
    match (lost, job.status()) {
        (true, _) => Ended::Stopped,
        (false, Some(status)) => Ended::Exited(status),
        (false, None) => {
            Ended::Failed(Failure::new(EXIT_INTERNAL, "the command's status was lost"))
        }
    }
}

/// When a stop starting now sends SIGKILL: after --kill-after, or shortly before the lease
/// ends if that comes first.
fn kill_by(kept: &KeepAlive, spec: &RunSpec, margins: Margins) -> Instant {
    let lease_end = Instant::from_std(kept.valid_until());
    (Instant::now() + spec.kill_after).min(earlier(lease_end, margins.kill))
}

/// `at` minus `before`, or now if that is not representable.
fn earlier(at: Instant, before: Duration) -> Instant {
    at.checked_sub(before).unwrap_or_else(Instant::now)
}

fn wait_failure(e: std::io::Error) -> Failure {
    Failure::new(EXIT_INTERNAL, format!("waiting for the command: {e}"))
}

/// Reports (does not fail on) how releasing the lock at the end of `run` went; `lost`: the
/// lock was already known lost, so finding it gone is no news.
fn report_release(ctx: &Ctx, released: dlock_host::Result<ReleaseOutcome>, lost: bool) {
    match released {
        Ok(ReleaseOutcome::Released) => {}
        Ok(_) | Err(Error::NotHeld) if lost => {}
        Ok(ReleaseOutcome::Expired) => errln!("dlock: the lock had expired by the end"),
        Ok(_) | Err(Error::NotHeld) => errln!("dlock: the lock had changed hands by the end"),
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

    use super::Margins;

    const TTLS_MS: [u64; 6] = [1, 250, 900, 3_000, 60_000, 3_600_000];

    #[test]
    fn cmd_is_stopped_then_killed_before_the_lease_ends() {
        for ttl in TTLS_MS.map(Duration::from_millis) {
            for kill_after in [
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(10),
            ] {
                let m = Margins::new(ttl, kill_after);
                assert!(m.kill > Duration::ZERO || ttl < Duration::from_millis(10));
                assert!(m.stop >= m.kill, "stop after SIGKILL, ttl {ttl:?}");
                assert!(
                    m.stop < ttl / 2 || ttl < Duration::from_millis(10),
                    "a healthy extend (TTL/3) would be cut short, ttl {ttl:?}"
                );
            }
        }
    }
}
