//! Jepsen-style histories: record every operation every client performs while faults are
//! injected, then check the history against the lock's guarantees.
//!
//! A scenario creates one [`Recorder`], clones it into every client task, and brackets each
//! operation with [`Recorder::invoke`] and [`PendingOp::complete`] (or one of its shortcuts).
//! An op whose [`PendingOp`] is dropped unfinished stays in the history as never completed: the
//! client crashed or never got an answer. At the end, [`Recorder::history`] takes a snapshot and
//! [`History::check`] runs every check against it and the [`FinalState`] the scenario read back
//! from Redis and its resources. Each check is also available on its own (`History::check_*`).
//!
//! | code | check | what a violation means |
//! | --- | --- | --- |
//! | I1 | [`History::check_mutual_exclusion`] | two tokens believed they held one key at once |
//! | I2 | [`History::check_fencing`] | a fence went down, repeated, or a stale write was accepted |
//! | I3 | [`History::check_ownership`] | a holder's key lost its token while its lease was valid |
//! | I4 | [`History::check_lost_updates`] | an acknowledged guarded add is not in the final set |
//! | T1 | [`History::check_timeouts`] | a call outlived its deadline, or never returned |
//! | C1 | [`History::check_cleanup`] | a lock key or a watchdog survived the run |
//! | R1 | [`History::check_releases`] | a lock reported released was still held by a majority |
//! | E1 | [`History::check_refusals`] | an acquire failed for another reason than a busy lock |
//! | W1 | [`History::check_waits`] | a wait gave up while nobody could have held the lock |
//! | J1 | [`FinalState::job_violations`] | a job's process ran while its `dlock run` lock was gone |
//! | K1 | [`History::check_keeping`] | a watchdog said kept past the validity its handle reported |
//!
//! E1 and W1, and I2's fence-gap rule, judge only what a scenario that records every
//! acquisition of its keys declares it can ([`FinalState::strict`]): the torture does.
//!
//! The checks are sound for a correct lock on one healthy Redis primary: an op whose outcome is
//! [`Outcome::Unknown`] never counts as having happened, and orders are only taken from real
//! time (one op completed before the other was invoked), never from the order in which
//! concurrent calls happened to return. A violation therefore always means the history cannot
//! have come from a lock that keeps the guarantees of docs/GUARANTEES.md (or from the scenario's
//! resources behaving as documented).
//!
//! Times are [`Instant`]s of this process (`CLOCK_MONOTONIC`; `protocol::instant_at` converts
//! times reported by worker processes). Messages and the
//! timeline print them as milliseconds since the history's [`origin`](History::origin).

mod check;
mod record;

use std::fmt;
use std::time::{Duration, Instant};

pub use check::{Check, DEFAULT_TIMEOUT_EPSILON, FinalState, Hold, Report, Violation, W1_WINDOW};
pub use record::{Call, Completion, PendingOp, Recorder};

/// Identifies one recorded operation: its index in [`History::ops`]. Displays as `op#N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// What a call came to, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// It happened (the lock was acquired, extended or released; the write was accepted; the
    /// element was added).
    Ok,
    /// It certainly did not happen: the lock was busy, the token did not own it, a fenced write
    /// was rejected as stale.
    Fail,
    /// It may or may not have happened: a timeout, a lost connection, a client that never
    /// returned. The checks never assume either way.
    Unknown,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        })
    }
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Acquire the lock on the op's key.
    Acquire {
        /// The requested lease.
        ttl: Duration,
        /// The lease end as the lock handle reports it (counted on the monotonic clock from when
        /// the acquire was sent). When absent, the checks use `invoked + ttl`.
        valid_until: Option<Instant>,
    },
    /// Extend the lease of the op's token on the op's key.
    Extend {
        /// The requested new lease.
        ttl: Duration,
        /// The new lease end as the lock handle reports it. When absent, the checks use
        /// `invoked + ttl`.
        valid_until: Option<Instant>,
    },
    /// Release the op's token's lock on the op's key.
    Release,
    /// Write `element` to `resource`, which accepts a write only when its fence (the op's
    /// `fence`) is greater than every fence it accepted before (`examples/fenced-write.lua`).
    /// [`Outcome::Ok`] = accepted, [`Outcome::Fail`] = rejected as stale.
    FencedWrite {
        /// The protected resource.
        resource: String,
        /// The value written.
        element: String,
    },
    /// Add `element` to the shared `set` by read-modify-write while holding the op's key.
    /// [`Outcome::Ok`] = the write was acknowledged, [`Outcome::Fail`] = the add certainly did
    /// not reach the set.
    GuardedAdd {
        /// The shared set.
        set: String,
        /// The element added.
        element: String,
    },
}

impl OpKind {
    /// The kind's name: `acquire`, `extend`, `release`, `fenced-write` or `guarded-add`.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Acquire { .. } => "acquire",
            OpKind::Extend { .. } => "extend",
            OpKind::Release => "release",
            OpKind::FencedWrite { .. } => "fenced-write",
            OpKind::GuardedAdd { .. } => "guarded-add",
        }
    }

    /// Every kind name, in the order reports list them.
    pub const NAMES: [&'static str; 5] = [
        "acquire",
        "extend",
        "release",
        "fenced-write",
        "guarded-add",
    ];
}

/// One operation of one client: invocation, completion and outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Its index in [`History::ops`].
    pub id: OpId,
    /// The client (process, task) that performed it.
    pub process: u32,
    /// What it did.
    pub kind: OpKind,
    /// The lock key it concerns (for writes and adds: the lock that guards them).
    pub key: String,
    /// The lock token involved, when known (for an acquire: the token it got).
    pub token: Option<String>,
    /// The fence involved, when any (for an acquire: the fence it got; for a fenced write: the
    /// fence it carried).
    pub fence: Option<u64>,
    /// The call's configured timeout, checked by T1.
    pub deadline: Option<Duration>,
    /// When the client invoked it.
    pub invoked: Instant,
    /// When the client got its answer; `None` when it never did (crash, hang).
    pub completed: Option<Instant>,
    /// What it came to; always [`Outcome::Unknown`] when `completed` is `None`.
    pub outcome: Outcome,
    /// For an acquire: how long it waits for a busy lock, when it does.
    pub wait: Option<Duration>,
    /// For a failed acquire: whether it failed because the lock was held (`Some(true)`), or
    /// for another reason (`Some(false)`, with `error`); `None` when the client did not say.
    pub busy: Option<bool>,
    /// For an acquire: it was given up by its caller (an unknown outcome the client promises
    /// to resolve: a lock it took is given back before the client's next call runs).
    pub cancelled: bool,
    /// What the client said went wrong, when the op did not succeed.
    pub error: Option<String>,
}

impl Op {
    /// The completion time when the op succeeded ([`Outcome::Ok`] and completed).
    pub fn succeeded_at(&self) -> Option<Instant> {
        match self.outcome {
            Outcome::Ok => self.completed,
            Outcome::Fail | Outcome::Unknown => None,
        }
    }

    /// For an acquire or extend: the lease end it reports, or `invoked + ttl` when it reports
    /// none. `None` for other kinds.
    pub fn lease_end(&self) -> Option<Instant> {
        match &self.kind {
            OpKind::Acquire { ttl, valid_until } | OpKind::Extend { ttl, valid_until } => {
                Some(valid_until.unwrap_or(self.invoked + *ttl))
            }
            OpKind::Release | OpKind::FencedWrite { .. } | OpKind::GuardedAdd { .. } => None,
        }
    }

    /// `op#N (process P, KIND "KEY")`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} (process {}, {} {:?})",
            self.id,
            self.process,
            self.kind.name(),
            self.key
        )
    }
}

/// A scenario's look at a lock key, taken (with a plain `GET`) while it expected `expected_token`
/// to hold the key. Checked by I3: it proves something only when the whole `GET`
/// (`sent..=answered`) falls inside a hold of `expected_token`
/// ([`History::check_ownership`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The lock key looked at.
    pub key: String,
    /// The token the scenario expects in the key: a holder that has not released it.
    pub expected_token: String,
    /// What the key held (`None`: it did not exist).
    pub observed_token: Option<String>,
    /// When the `GET` was sent.
    pub sent: Instant,
    /// When its answer arrived.
    pub answered: Instant,
}

/// A scenario's look at a lock key on every primary right after a release of `token`
/// returned [`Outcome::Ok`] (checked by R1): on how many of them the key still held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseObservation {
    /// The release that returned released.
    pub release: OpId,
    /// On how many primaries the key still held the released token.
    pub holding: u32,
    /// How many primaries were looked at (one, or each member of a quorum).
    pub primaries: u32,
    /// When the first `GET` was sent (after the release returned).
    pub sent: Instant,
}

/// A snapshot of everything a [`Recorder`] recorded. Fields are public so a test can build or
/// edit a history by hand; the checks do not assume `ops[i].id == OpId(i)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The time messages count from (the recorder's creation).
    pub origin: Instant,
    /// Every op, in invocation-recording order.
    pub ops: Vec<Op>,
    /// Processes marked crashed, and when: their unfinished ops invoked by then are excused
    /// from T1, and their holds end at their last mark (a process is dead by then).
    pub crashes: Vec<(u32, Instant)>,
    /// Processes stopped (SIGSTOP) from the first instant to the second: what such a process
    /// reports after it may be that much older than it looks (W1).
    pub pauses: Vec<(u32, Instant, Instant)>,
    /// The scenario's observations of lock keys (I3).
    pub observations: Vec<Observation>,
    /// The scenario's observations after releases (R1).
    pub release_observations: Vec<ReleaseObservation>,
    /// What the scenario did around the ops (faults it injected, and when), for the
    /// timeline only: no check reads them.
    pub notes: Vec<(Instant, String)>,
}

impl History {
    /// An empty history whose messages count time from `origin`.
    pub fn new(origin: Instant) -> History {
        History {
            origin,
            ops: Vec::new(),
            crashes: Vec::new(),
            pauses: Vec::new(),
            observations: Vec::new(),
            release_observations: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// `t` as `+12.3ms` since the origin (negative before it).
    pub fn at(&self, t: Instant) -> String {
        match t.checked_duration_since(self.origin) {
            Some(d) => format!("+{}", ms(d)),
            None => format!("-{}", ms(self.origin - t)),
        }
    }

    fn op(&self, id: OpId) -> Option<&Op> {
        self.ops
            .get(id.0)
            .filter(|op| op.id == id)
            .or_else(|| self.ops.iter().find(|op| op.id == id))
    }
}

/// `d` as milliseconds with one decimal: `12.3ms`.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

impl History {
    /// One op's timeline line (without the newline).
    fn write_op(&self, f: &mut impl fmt::Write, op: &Op) -> fmt::Result {
        let completed = op.completed.map_or("never".to_owned(), |t| self.at(t));
        write!(
            f,
            "{} p{} {}..{} {} {:?}",
            op.id,
            op.process,
            self.at(op.invoked),
            completed,
            op.kind.name(),
            op.key
        )?;
        match &op.kind {
            OpKind::Acquire { ttl, valid_until } | OpKind::Extend { ttl, valid_until } => {
                write!(f, " ttl={}", ms(*ttl))?;
                if let Some(v) = valid_until {
                    write!(f, " valid_until={}", self.at(*v))?;
                }
            }
            OpKind::Release => {}
            OpKind::FencedWrite { resource, element } => {
                write!(f, " resource={resource:?} element={element:?}")?;
            }
            OpKind::GuardedAdd { set, element } => {
                write!(f, " set={set:?} element={element:?}")?;
            }
        }
        if let Some(wait) = op.wait {
            write!(f, " wait={}", ms(wait))?;
        }
        if let Some(token) = &op.token {
            write!(f, " token={token}")?;
        }
        if let Some(fence) = op.fence {
            write!(f, " fence={fence}")?;
        }
        if let Some(deadline) = op.deadline {
            write!(f, " deadline={}", ms(deadline))?;
        }
        write!(f, " -> {}", op.outcome)?;
        if op.busy == Some(true) {
            write!(f, " (busy)")?;
        }
        if op.cancelled {
            write!(f, " (cancelled)")?;
        }
        if let Some(error) = &op.error {
            write!(f, ": {error}")?;
        }
        Ok(())
    }

    /// The part of the timeline that explains `violation`: the ops on the keys of its ops and
    /// the notes (faults, worker processes) from [`EXCERPT_BEFORE`] before its first op was
    /// invoked to its last op's completion, at most `max_lines`, the latest kept.
    pub fn excerpt(&self, violation: &Violation, max_lines: usize) -> String {
        let involved: Vec<&Op> = violation.ops.iter().filter_map(|&id| self.op(id)).collect();
        let (Some(first), Some(last)) = (
            involved.iter().map(|op| op.invoked).min(),
            involved
                .iter()
                .map(|op| op.completed.unwrap_or(op.invoked))
                .max(),
        ) else {
            return String::new();
        };
        let from = first.checked_sub(EXCERPT_BEFORE).unwrap_or(first);
        let within = |t: Instant| from <= t && t <= last;
        let mut lines: Vec<(Instant, String)> = self
            .notes
            .iter()
            .filter(|(at, _)| within(*at))
            .map(|(at, note)| (*at, format!("note {}: {note}", self.at(*at))))
            .collect();
        for op in &self.ops {
            let ends = op.completed.unwrap_or(last);
            let on_key = involved.iter().any(|inv| inv.key == op.key);
            if on_key && op.invoked <= last && ends >= from {
                let mut line = String::new();
                let _ = self.write_op(&mut line, op);
                lines.push((op.invoked, line));
            }
        }
        lines.sort_by_key(|(at, _)| *at);
        let skip = lines.len().saturating_sub(max_lines);
        let mut out = String::new();
        if skip > 0 {
            out.push_str(&format!("({skip} earlier lines left out)\n"));
        }
        for (_, line) in &lines[skip..] {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// How far before a violation's first op [`History::excerpt`] starts: one W1 window and a
/// lease, enough to show what held the key.
pub const EXCERPT_BEFORE: Duration = Duration::from_secs(5);

/// The timeline: one line per op (by invocation time), then crashes and observations.
impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ops: Vec<&Op> = self.ops.iter().collect();
        ops.sort_by_key(|op| (op.invoked, op.id));
        let mut notes = self.notes.iter().peekable();
        for op in ops {
            while let Some((at, note)) = notes.next_if(|(at, _)| *at <= op.invoked) {
                writeln!(f, "note {}: {note}", self.at(*at))?;
            }
            self.write_op(f, op)?;
            writeln!(f)?;
        }
        for (at, note) in notes {
            writeln!(f, "note {}: {note}", self.at(*at))?;
        }
        for (process, at) in &self.crashes {
            writeln!(f, "crash p{process} at {}", self.at(*at))?;
        }
        for (process, from, to) in &self.pauses {
            writeln!(f, "pause p{process} {}..{}", self.at(*from), self.at(*to))?;
        }
        for o in &self.observations {
            writeln!(
                f,
                "observed {:?} = {:?} (expected {}) over [{}, {}]",
                o.key,
                o.observed_token,
                o.expected_token,
                self.at(o.sent),
                self.at(o.answered)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_timeline_shows_every_op_note_crash_and_observation() {
        let t0 = Instant::now();
        let rec = Recorder::starting_at(t0);
        rec.invoke_at(Call::acquire(1, "k", ms(100)), t0)
            .complete_at(Completion::ok().token("A").fence(4), t0 + ms(5));
        let _never = rec.invoke_at(Call::release(2, "k", "B"), t0 + ms(10));
        rec.crashed_at(2, t0 + ms(20));
        rec.note_at("fault X", t0 + ms(7));
        rec.observe(Observation {
            key: "k".into(),
            expected_token: "A".into(),
            observed_token: None,
            sent: t0 + ms(30),
            answered: t0 + ms(31),
        });
        let text = rec.history().to_string();
        assert!(
            text.contains(
                r#"op#0 p1 +0.0ms..+5.0ms acquire "k" ttl=100.0ms token=A fence=4 -> ok"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"op#1 p2 +10.0ms..never release "k" token=B -> unknown"#),
            "{text}"
        );
        assert!(text.contains("crash p2 at +20.0ms"), "{text}");
        assert!(
            text.contains("-> ok\nnote +7.0ms: fault X\nop#1 p2"),
            "notes are in time order among the ops: {text}"
        );
        assert!(
            text.contains(r#"observed "k" = None (expected A) over [+30.0ms, +31.0ms]"#),
            "{text}"
        );
    }

    #[test]
    fn a_violations_excerpt_shows_its_keys_ops_and_the_faults_before_it() {
        let t0 = Instant::now();
        let rec = Recorder::starting_at(t0);
        let _long_before = rec
            .invoke_at(Call::acquire(1, "k", ms(100)), t0)
            .complete_at(Completion::ok().token("A"), t0 + ms(5));
        let _other_key = rec
            .invoke_at(Call::acquire(2, "other", ms(100)), t0 + ms(9000))
            .complete_at(Completion::ok().token("B"), t0 + ms(9005));
        rec.note_at("SIGSTOP to pid 7", t0 + ms(9500));
        let wait = rec
            .invoke_at(Call::acquire(3, "k", ms(100)).wait(ms(1000)), t0 + ms(9100))
            .complete_at(Completion::fail().busy(true).error("held"), t0 + ms(10100));
        let violation = Violation::new(Check::Waits, vec![wait], "gave up".into());
        let text = rec.history().excerpt(&violation, 10);
        assert_eq!(
            text,
            "op#2 p3 +9100.0ms..+10100.0ms acquire \"k\" ttl=100.0ms wait=1000.0ms -> fail \
             (busy): held\nnote +9500.0ms: SIGSTOP to pid 7\n"
        );
        let text = rec.history().excerpt(&violation, 1);
        assert_eq!(
            text,
            "(1 earlier lines left out)\nnote +9500.0ms: SIGSTOP to pid 7\n"
        );
    }

    #[test]
    fn times_before_the_origin_print_as_negative() {
        let t0 = Instant::now() + ms(1000);
        let h = History::new(t0);
        assert_eq!(h.at(t0 - ms(2)), "-2.0ms");
        assert_eq!(h.at(t0 + ms(2)), "+2.0ms");
    }
}
