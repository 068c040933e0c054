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
//!
//! The checks are sound for a correct lock on one healthy Redis primary: an op whose outcome is
//! [`Outcome::Unknown`] never counts as having happened, and orders are only taken from real
//! time (one op completed before the other was invoked), never from the order in which
//! concurrent calls happened to return. A violation therefore always means the history cannot
//! have come from a lock that keeps the guarantees in the README (or from the scenario's
//! resources behaving as documented).
//!
//! Times are [`Instant`]s of this process (`CLOCK_MONOTONIC`; `workers::instant_at` converts
//! times reported by worker processes). Messages and the
//! timeline print them as milliseconds since the history's [`origin`](History::origin).

mod check;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use check::{Check, DEFAULT_TIMEOUT_EPSILON, FinalState, Hold, Report, Violation};

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

/// A snapshot of everything a [`Recorder`] recorded. Fields are public so a test can build or
/// edit a history by hand; the checks do not assume `ops[i].id == OpId(i)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The time messages count from (the recorder's creation).
    pub origin: Instant,
    /// Every op, in invocation-recording order.
    pub ops: Vec<Op>,
    /// Processes marked crashed, and when: their unfinished ops invoked by then are excused
    /// from T1.
    pub crashes: Vec<(u32, Instant)>,
    /// The scenario's observations of lock keys (I3).
    pub observations: Vec<Observation>,
}

impl History {
    /// An empty history whose messages count time from `origin`.
    pub fn new(origin: Instant) -> History {
        History {
            origin,
            ops: Vec::new(),
            crashes: Vec::new(),
            observations: Vec::new(),
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

/// The timeline: one line per op (by invocation time), then crashes and observations.
impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ops: Vec<&Op> = self.ops.iter().collect();
        ops.sort_by_key(|op| (op.invoked, op.id));
        for op in ops {
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
            if let Some(token) = &op.token {
                write!(f, " token={token}")?;
            }
            if let Some(fence) = op.fence {
                write!(f, " fence={fence}")?;
            }
            if let Some(deadline) = op.deadline {
                write!(f, " deadline={}", ms(deadline))?;
            }
            writeln!(f, " -> {}", op.outcome)?;
        }
        for (process, at) in &self.crashes {
            writeln!(f, "crash p{process} at {}", self.at(*at))?;
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

/// What a client is about to do: the invocation half of an [`Op`]. Build it with one of the
/// constructors, add what is known before the call with the builder methods, and pass it to
/// [`Recorder::invoke`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The client performing it.
    pub process: u32,
    /// The lock key.
    pub key: String,
    /// What it does.
    pub kind: OpKind,
    /// The token, when known before the call.
    pub token: Option<String>,
    /// The fence, when known before the call.
    pub fence: Option<u64>,
    /// The call's configured timeout.
    pub deadline: Option<Duration>,
}

impl Call {
    fn new(process: u32, key: impl Into<String>, kind: OpKind) -> Call {
        Call {
            process,
            key: key.into(),
            kind,
            token: None,
            fence: None,
            deadline: None,
        }
    }

    /// An acquire of `key` for `ttl`; the token, fence and lease end come with the completion.
    pub fn acquire(process: u32, key: impl Into<String>, ttl: Duration) -> Call {
        let kind = OpKind::Acquire {
            ttl,
            valid_until: None,
        };
        Call::new(process, key, kind)
    }

    /// An extend of `token`'s lock on `key` to `ttl`.
    pub fn extend(
        process: u32,
        key: impl Into<String>,
        token: impl Into<String>,
        ttl: Duration,
    ) -> Call {
        let kind = OpKind::Extend {
            ttl,
            valid_until: None,
        };
        Call::new(process, key, kind).token(token)
    }

    /// A release of `token`'s lock on `key`.
    pub fn release(process: u32, key: impl Into<String>, token: impl Into<String>) -> Call {
        Call::new(process, key, OpKind::Release).token(token)
    }

    /// A write of `element` to `resource` carrying `fence` from the lock on `key`.
    pub fn fenced_write(
        process: u32,
        key: impl Into<String>,
        resource: impl Into<String>,
        element: impl Into<String>,
        fence: u64,
    ) -> Call {
        let kind = OpKind::FencedWrite {
            resource: resource.into(),
            element: element.into(),
        };
        Call::new(process, key, kind).fence(fence)
    }

    /// A read-modify-write adding `element` to `set` under the lock on `key`.
    pub fn guarded_add(
        process: u32,
        key: impl Into<String>,
        set: impl Into<String>,
        element: impl Into<String>,
    ) -> Call {
        let kind = OpKind::GuardedAdd {
            set: set.into(),
            element: element.into(),
        };
        Call::new(process, key, kind)
    }

    /// Sets the token.
    pub fn token(mut self, token: impl Into<String>) -> Call {
        self.token = Some(token.into());
        self
    }

    /// Sets the fence.
    pub fn fence(mut self, fence: u64) -> Call {
        self.fence = Some(fence);
        self
    }

    /// Sets the configured timeout T1 holds the call to.
    pub fn deadline(mut self, deadline: Duration) -> Call {
        self.deadline = Some(deadline);
        self
    }
}

/// What a call came back with: the completion half of an [`Op`]. Fields left `None` keep what
/// the invocation recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// What the call came to.
    pub outcome: Outcome,
    /// The token learned (an acquire's).
    pub token: Option<String>,
    /// The fence learned (an acquire's).
    pub fence: Option<u64>,
    /// The lease end the handle reports after an acquire or extend; ignored for other kinds.
    pub valid_until: Option<Instant>,
}

impl Completion {
    /// A completion with `outcome` and nothing learned.
    pub fn new(outcome: Outcome) -> Completion {
        Completion {
            outcome,
            token: None,
            fence: None,
            valid_until: None,
        }
    }

    /// [`Outcome::Ok`].
    pub fn ok() -> Completion {
        Completion::new(Outcome::Ok)
    }

    /// [`Outcome::Fail`].
    pub fn fail() -> Completion {
        Completion::new(Outcome::Fail)
    }

    /// [`Outcome::Unknown`].
    pub fn unknown() -> Completion {
        Completion::new(Outcome::Unknown)
    }

    /// Sets the token learned.
    pub fn token(mut self, token: impl Into<String>) -> Completion {
        self.token = Some(token.into());
        self
    }

    /// Sets the fence learned.
    pub fn fence(mut self, fence: u64) -> Completion {
        self.fence = Some(fence);
        self
    }

    /// Sets the reported lease end.
    pub fn valid_until(mut self, valid_until: Instant) -> Completion {
        self.valid_until = Some(valid_until);
        self
    }
}

/// Records a history. Cheap to clone (one shared, mutex-protected history); `Send + Sync`.
/// Recording never panics, even after a thread panicked while recording.
#[derive(Clone, Debug)]
pub struct Recorder {
    history: Arc<Mutex<History>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// A recorder whose history counts time from now.
    pub fn new() -> Recorder {
        Recorder::starting_at(Instant::now())
    }

    /// A recorder whose history counts time from `origin`.
    pub fn starting_at(origin: Instant) -> Recorder {
        Recorder {
            history: Arc::new(Mutex::new(History::new(origin))),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut History) -> R) -> R {
        f(&mut self.history.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records that `call` is invoked now. The op is in the history from this moment, as never
    /// completed, until the returned [`PendingOp`] completes it.
    pub fn invoke(&self, call: Call) -> PendingOp {
        self.invoke_at(call, Instant::now())
    }

    /// [`Recorder::invoke`] with an explicit invocation time.
    pub fn invoke_at(&self, call: Call, invoked: Instant) -> PendingOp {
        let id = self.with(|h| {
            let id = OpId(h.ops.len());
            h.ops.push(Op {
                id,
                process: call.process,
                kind: call.kind,
                key: call.key,
                token: call.token,
                fence: call.fence,
                deadline: call.deadline,
                invoked,
                completed: None,
                outcome: Outcome::Unknown,
            });
            id
        });
        PendingOp {
            recorder: self.clone(),
            id,
        }
    }

    /// Marks `process` crashed now: its ops invoked until now that never complete are excused
    /// from T1.
    pub fn crashed(&self, process: u32) {
        self.crashed_at(process, Instant::now());
    }

    /// [`Recorder::crashed`] with an explicit time.
    pub fn crashed_at(&self, process: u32, at: Instant) {
        self.with(|h| h.crashes.push((process, at)));
    }

    /// Records an observation of a lock key (checked by I3).
    pub fn observe(&self, observation: Observation) {
        self.with(|h| h.observations.push(observation));
    }

    /// A snapshot of everything recorded so far; later recording does not change it.
    pub fn history(&self) -> History {
        self.with(|h| h.clone())
    }
}

/// An invoked op awaiting its completion. Complete it exactly once (the methods consume it);
/// dropping it unfinished leaves the op recorded as never completed, with
/// [`Outcome::Unknown`]: what a client that crashed or never returned looks like.
#[derive(Debug)]
#[must_use = "complete the op; dropping it records that the call never returned"]
pub struct PendingOp {
    recorder: Recorder,
    id: OpId,
}

impl PendingOp {
    /// The op's id.
    pub fn id(&self) -> OpId {
        self.id
    }

    /// Records that the call returned now with `completion`.
    pub fn complete(self, completion: Completion) -> OpId {
        self.complete_at(completion, Instant::now())
    }

    /// [`PendingOp::complete`] with an explicit completion time.
    pub fn complete_at(self, completion: Completion, completed: Instant) -> OpId {
        let id = self.id;
        self.recorder.with(|h| {
            let op = &mut h.ops[id.0];
            op.completed = Some(completed);
            op.outcome = completion.outcome;
            if completion.token.is_some() {
                op.token = completion.token;
            }
            if completion.fence.is_some() {
                op.fence = completion.fence;
            }
            if let (
                Some(v),
                OpKind::Acquire { valid_until, .. } | OpKind::Extend { valid_until, .. },
            ) = (completion.valid_until, &mut op.kind)
            {
                *valid_until = Some(v);
            }
        });
        id
    }

    /// Records that the call returned now with [`Outcome::Ok`] and nothing learned.
    pub fn ok(self) -> OpId {
        self.complete(Completion::ok())
    }

    /// Records that the call returned now with [`Outcome::Fail`].
    pub fn fail(self) -> OpId {
        self.complete(Completion::fail())
    }

    /// Records that the call returned now with [`Outcome::Unknown`].
    pub fn unknown(self) -> OpId {
        self.complete(Completion::unknown())
    }

    /// Leaves the op never completed (what dropping does), saying so at the call site.
    pub fn abandon(self) -> OpId {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_op_records_its_invocation_and_what_its_completion_learned() {
        let t0 = Instant::now();
        let rec = Recorder::starting_at(t0);
        let op = rec.invoke_at(Call::acquire(7, "k", ms(100)).deadline(ms(50)), t0 + ms(1));
        let id = op.complete_at(
            Completion::ok()
                .token("tok")
                .fence(3)
                .valid_until(t0 + ms(101)),
            t0 + ms(4),
        );
        let h = rec.history();
        assert_eq!(h.origin, t0);
        assert_eq!(
            h.ops,
            vec![Op {
                id,
                process: 7,
                kind: OpKind::Acquire {
                    ttl: ms(100),
                    valid_until: Some(t0 + ms(101)),
                },
                key: "k".into(),
                token: Some("tok".into()),
                fence: Some(3),
                deadline: Some(ms(50)),
                invoked: t0 + ms(1),
                completed: Some(t0 + ms(4)),
                outcome: Outcome::Ok,
            }]
        );
        assert_eq!(h.ops[0].lease_end(), Some(t0 + ms(101)));
    }

    #[test]
    fn a_completion_without_details_keeps_what_the_invocation_recorded() {
        let t0 = Instant::now();
        let rec = Recorder::starting_at(t0);
        rec.invoke_at(Call::fenced_write(1, "k", "r", "e", 9).token("tok"), t0)
            .complete_at(Completion::fail().valid_until(t0 + ms(5)), t0 + ms(2));
        let op = &rec.history().ops[0];
        assert_eq!(op.fence, Some(9));
        assert_eq!(op.token.as_deref(), Some("tok"));
        assert_eq!(op.outcome, Outcome::Fail);
        assert_eq!(op.lease_end(), None, "valid_until is ignored for writes");
    }

    #[test]
    fn an_op_dropped_without_completion_stays_never_completed_and_unknown() {
        let rec = Recorder::new();
        let pending = rec.invoke(Call::release(2, "k", "tok"));
        assert_eq!(
            rec.history().ops[0].completed,
            None,
            "recorded at invocation"
        );
        drop(pending);
        let abandoned = rec.invoke(Call::acquire(2, "k", ms(10))).abandon();
        let h = rec.history();
        assert_eq!(h.ops.len(), 2);
        assert_eq!(h.ops[1].id, abandoned);
        for op in &h.ops {
            assert_eq!((op.completed, op.outcome), (None, Outcome::Unknown));
        }
    }

    #[test]
    fn clones_share_one_history_across_threads_with_distinct_ids() {
        let rec = Recorder::new();
        let threads: Vec<_> = (0..8)
            .map(|p| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        let op = rec.invoke(Call::guarded_add(p, "k", "s", format!("{p}-{i}")));
                        op.ok();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let h = rec.history();
        assert_eq!(h.ops.len(), 800);
        for (i, op) in h.ops.iter().enumerate() {
            assert_eq!(op.id, OpId(i));
            assert_eq!(op.outcome, Outcome::Ok);
        }
    }

    #[test]
    fn a_snapshot_does_not_change_when_recording_continues() {
        let rec = Recorder::new();
        let pending = rec.invoke(Call::acquire(1, "k", ms(10)));
        let before = rec.history();
        pending.ok();
        rec.crashed(1);
        assert_eq!(before.ops[0].completed, None);
        assert!(before.crashes.is_empty());
        assert_eq!(rec.history().ops[0].outcome, Outcome::Ok);
        assert_eq!(rec.history().crashes.len(), 1);
    }

    #[test]
    fn the_timeline_shows_every_op_crash_and_observation() {
        let t0 = Instant::now();
        let rec = Recorder::starting_at(t0);
        rec.invoke_at(Call::acquire(1, "k", ms(100)), t0)
            .complete_at(Completion::ok().token("A").fence(4), t0 + ms(5));
        let _never = rec.invoke_at(Call::release(2, "k", "B"), t0 + ms(10));
        rec.crashed_at(2, t0 + ms(20));
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
            text.contains(r#"observed "k" = None (expected A) over [+30.0ms, +31.0ms]"#),
            "{text}"
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
