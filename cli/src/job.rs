//! CMD's processes under `dlock run`: CMD leads a process group of its own, which gets the
//! terminal while dlock's group has it; on Linux dlock is a child subreaper, so every process
//! CMD starts stays a descendant of dlock (one whose parent dies is reparented to dlock), and
//! dlock reaps them all.
//!
//! dlock reaps with `wait` (`waitpid(-1)`) alone: it starts no other child process while a job runs,
//! and nothing else in the process waits for children (`tokio::process` is not used).

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions, kill_process, kill_process_group};

/// Makes dlock the child subreaper of the processes it starts (Linux): a descendant whose
/// parent exits is reparented to dlock instead of to init, so that it can be found, stopped
/// and reaped. Elsewhere it does nothing.
pub(super) fn become_subreaper() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

/// What [`Job::reap`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reaped {
    /// Some process of the job still runs (or is stopped).
    Running,
    /// Every process of the job is gone and reaped.
    Gone,
}

/// CMD and its descendants. Dropping a `Job` before it is [`Gone`](Reaped::Gone) sends
/// SIGKILL to every process of it that can be found.
pub(super) struct Job {
    leader: Pid,
    /// CMD's status, once reaped.
    status: Option<ExitStatus>,
    /// CMD was reported stopped by [`Job::reap`], not yet taken by [`Job::take_stop`].
    stopped: bool,
    terminal: Option<Terminal>,
    /// The last signal [`Job::stop`] sent to CMD's group.
    group_stopped: Option<Signal>,
    /// The processes [`Job::stop`] sent SIGTERM to (so that each gets it once).
    termed: HashSet<Pid>,
    /// Whether dlock is a child subreaper ([`become_subreaper`]).
    subreaper: bool,
    gone: bool,
}

impl Job {
    /// Starts `command` as the leader of a new process group and, if dlock's process group
    /// is the foreground of dlock's controlling terminal, makes CMD's group the foreground.
    /// `subreaper`: dlock is a child subreaper ([`become_subreaper`] succeeded).
    pub(super) fn spawn(mut command: std::process::Command, subreaper: bool) -> io::Result<Job> {
        command.process_group(0);
        let child = command.spawn()?;
        let leader = Pid::from_child(&child);
        // `Job` waits for CMD itself: the std handle is not used again.
        drop(child);
        Ok(Job {
            leader,
            status: None,
            stopped: false,
            terminal: Terminal::hand_to(leader),
            group_stopped: None,
            termed: HashSet::new(),
            subreaper,
            gone: false,
        })
    }

    /// CMD's status once it has been reaped.
    pub(super) fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Reaps every process of the job that has ended, without blocking; records CMD's status
    /// and whether CMD stopped.
    pub(super) fn reap(&mut self) -> io::Result<Reaped> {
        loop {
            match rustix::process::wait(WaitOptions::NOHANG | WaitOptions::UNTRACED) {
                Ok(Some((pid, status))) if pid == self.leader => {
                    if status.stopped() {
                        self.stopped = true;
                    } else {
                        self.status = Some(ExitStatus::from_raw(status.as_raw()));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ok(Reaped::Running),
                Err(Errno::CHILD) => {
                    self.gone = self.subreaper || group_is_empty(self.leader);
                    return Ok(if self.gone {
                        Reaped::Gone
                    } else {
                        Reaped::Running
                    });
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether CMD was stopped since the last call and still is (a stop that CMD was
    /// continued from already, as after a SIGTTIN before it was handed the terminal, does not
    /// count).
    pub(super) fn take_stop(&mut self) -> bool {
        std::mem::take(&mut self.stopped) && is_stopped(self.leader)
    }

    /// Sends `signal` to CMD's process group (while the group exists).
    pub(super) fn signal_group(&self, signal: Signal) {
        let processes = descendants();
        if self.group_exists(&processes) {
            let _ = kill_process_group(self.leader, signal);
        }
    }

    /// Stops the whole job: `signal` (SIGTERM or SIGKILL) to CMD's group and to every
    /// descendant of dlock outside it, each SIGTERM followed by SIGCONT so that a stopped
    /// process acts on it. Called again, it signals the processes that have appeared since
    /// (reparented to dlock, or started); SIGTERM reaches each process once, SIGKILL is sent
    /// again to every process found.
    pub(super) fn stop(&mut self, signal: Signal) {
        let processes = descendants();
        let group_first = self.group_stopped != Some(signal);
        if (group_first || signal == Signal::KILL) && self.group_exists(&processes) {
            let _ = kill_process_group(self.leader, signal);
            if signal == Signal::TERM {
                let _ = kill_process_group(self.leader, Signal::CONT);
            }
        }
        self.group_stopped = Some(signal);
        for process in processes {
            if signal == Signal::KILL {
                let _ = kill_process(process.pid, signal);
            } else if self.termed.insert(process.pid)
                && !(group_first && process.group == self.leader)
            {
                let _ = kill_process(process.pid, signal);
                let _ = kill_process(process.pid, Signal::CONT);
            }
        }
    }

    /// Whether CMD's process group still exists: CMD is not reaped yet (its process id is then
    /// still its group's), or a descendant is in the group.
    fn group_exists(&self, processes: &[Process]) -> bool {
        self.status.is_none()
            || processes.iter().any(|process| process.group == self.leader)
            || cfg!(not(target_os = "linux"))
    }

    /// Gives the terminal back to dlock's process group if CMD's group has it, or its
    /// foreground group is gone (to be called once the job is gone).
    pub(super) fn give_back_terminal(&mut self) {
        if let Some(terminal) = self.terminal.take() {
            terminal.take_back(self.leader, true);
        }
    }

    /// Gives the terminal back to dlock's process group if CMD's group has it (CMD was
    /// stopped from the terminal); whether it did.
    pub(super) fn suspend_terminal(&self) -> bool {
        self.terminal
            .as_ref()
            .is_some_and(|terminal| terminal.take_back(self.leader, false))
    }

    /// Continues CMD's group (SIGCONT), first handing it the terminal again if it was handed
    /// the terminal at the start and dlock's group is the foreground now.
    pub(super) fn resume(&self) {
        if let Some(terminal) = &self.terminal {
            terminal.hand_over(self.leader);
        }
        self.signal_group(Signal::CONT);
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.gone {
            self.stop(Signal::KILL);
            self.give_back_terminal();
        }
    }
}

/// Whether a SIGTSTP to dlock's process group stops it: dlock does not ignore SIGTSTP, and
/// the group is not orphaned (dlock's parent is in another group of dlock's session, as a shell
/// with job control is; in an orphaned group the kernel discards SIGTSTP).
pub(super) fn can_suspend() -> bool {
    use rustix::process::{getpgid, getpgrp, getppid, getsid};
    let parent_elsewhere_in_session = getppid().is_some_and(|parent| {
        getpgid(Some(parent)).is_ok_and(|group| group != getpgrp())
            && getsid(Some(parent)).ok() == getsid(None).ok()
    });
    parent_elsewhere_in_session && !ignored(Signal::TSTP)
}

/// Whether dlock ignores `signal` (Linux: `SigIgn` in `/proc/self/status`; elsewhere
/// assumed not).
fn ignored(signal: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal.as_raw() - 1)) != 0)
}

/// Whether no process is left in CMD's group once dlock, not a subreaper, has no child left
/// (a subreaper's descendants are all its children's or its own children).
fn group_is_empty(leader: Pid) -> bool {
    rustix::process::test_kill_process_group(leader) == Err(Errno::SRCH)
}

/// Whether process `pid` is stopped by a signal (Linux: its state in `/proc`; elsewhere
/// assumed).
fn is_stopped(pid: Pid) -> bool {
    if cfg!(not(target_os = "linux")) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

/// A process as `/proc` shows it.
#[derive(Clone, Copy, Debug)]
struct Process {
    pid: Pid,
    group: Pid,
}

/// Every descendant of dlock, from `/proc` (Linux; elsewhere none are found).
fn descendants() -> Vec<Process> {
    #[cfg(target_os = "linux")]
    {
        let all = all_processes();
        let mut found = Vec::new();
        let mut parents = vec![rustix::process::getpid()];
        while let Some(parent) = parents.pop() {
            for &(process, ppid) in &all {
                if ppid == parent {
                    found.push(process);
                    parents.push(process.pid);
                }
            }
        }
        found
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// Every process with its parent, read from `/proc/PID/stat`.
#[cfg(target_os = "linux")]
fn all_processes() -> Vec<(Process, Pid)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_ascii_whitespace().skip(1);
            let ppid = Pid::from_raw(fields.next()?.parse().ok()?)?;
            let group = Pid::from_raw(fields.next()?.parse().ok()?)?;
            Some((
                Process {
                    pid: Pid::from_raw(pid)?,
                    group,
                },
                ppid,
            ))
        })
        .collect()
}

/// dlock's controlling terminal, whose foreground dlock gave to CMD's group.
struct Terminal {
    tty: OwnedFd,
}

impl Terminal {
    /// Makes `group` the foreground of dlock's controlling terminal if dlock's own group is
    /// its foreground now, then sends `group` SIGCONT (a process of it that read the terminal
    /// before it was handed over was stopped by SIGTTIN). `None` if dlock has no terminal or
    /// it is not dlock's.
    fn hand_to(group: Pid) -> Option<Terminal> {
        use rustix::fs::{Mode, OFlags, open};
        let tty = open(
            "/dev/tty",
            OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        if rustix::termios::tcgetpgrp(&tty).ok()? != rustix::process::getpgrp() {
            return None;
        }
        let terminal = Terminal { tty };
        terminal.hand_over(group).then_some(terminal)
    }

    /// Makes `group` the foreground if dlock's group is, and sends it SIGCONT; whether the
    /// terminal was handed over.
    fn hand_over(&self, group: Pid) -> bool {
        let ours = rustix::termios::tcgetpgrp(&self.tty)
            .is_ok_and(|foreground| foreground == rustix::process::getpgrp());
        let handed = ours && rustix::termios::tcsetpgrp(&self.tty, group).is_ok();
        if handed {
            let _ = kill_process_group(group, Signal::CONT);
        }
        handed
    }

    /// Makes dlock's own group the foreground again if `group` is the foreground, or (with
    /// `or_gone`) the foreground group no longer exists; whether it did. dlock's group is in
    /// the background then, so SIGTTOU is blocked meanwhile (else the terminal would stop
    /// dlock's group).
    fn take_back(&self, group: Pid, or_gone: bool) -> bool {
        let Ok(foreground) = rustix::termios::tcgetpgrp(&self.tty) else {
            return false;
        };
        let ours = rustix::process::getpgrp();
        let take = foreground == group
            || (or_gone
                && foreground != ours
                && rustix::process::test_kill_process_group(foreground) == Err(Errno::SRCH));
        let _blocked = SigttouBlocked::new();
        take && rustix::termios::tcsetpgrp(&self.tty, ours).is_ok()
    }
}

/// SIGTTOU blocked in the calling thread for the value's lifetime.
struct SigttouBlocked {
    previous: libc::sigset_t,
}

impl SigttouBlocked {
    #[allow(
        unsafe_code,
        reason = "pthread_sigmask: neither std nor rustix blocks a signal safely"
    )]
    fn new() -> SigttouBlocked {
        // SAFETY: both sets are initialised (sigemptyset, then pthread_sigmask writes
        // `previous`) before use; only this thread's mask changes, and `drop` restores it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTTOU);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
            SigttouBlocked { previous }
        }
    }
}

impl Drop for SigttouBlocked {
    #[allow(unsafe_code, reason = "pthread_sigmask, as in `new`")]
    fn drop(&mut self) {
        // SAFETY: `previous` is the mask pthread_sigmask returned in `new`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}
