//! Recording a history: a [`Call`] is invoked through the [`Recorder`] shared by every client
//! task, and completed through its [`PendingOp`] with a [`Completion`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::*;

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
    /// For an acquire: how long it waits for a busy lock.
    pub wait: Option<Duration>,
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
            wait: None,
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

    /// Sets how long an acquire waits for a busy lock.
    pub fn wait(mut self, wait: Duration) -> Call {
        self.wait = Some(wait);
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
    /// For a failed acquire: whether the lock was busy.
    pub busy: Option<bool>,
    /// For an acquire: given up by its caller.
    pub cancelled: bool,
    /// What went wrong.
    pub error: Option<String>,
}

impl Completion {
    /// A completion with `outcome` and nothing learned.
    pub fn new(outcome: Outcome) -> Completion {
        Completion {
            outcome,
            token: None,
            fence: None,
            valid_until: None,
            busy: None,
            cancelled: false,
            error: None,
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

    /// Says whether a failed acquire found the lock busy.
    pub fn busy(mut self, busy: bool) -> Completion {
        self.busy = Some(busy);
        self
    }

    /// Marks an acquire given up by its caller.
    pub fn cancelled(mut self) -> Completion {
        self.cancelled = true;
        self
    }

    /// Sets what went wrong.
    pub fn error(mut self, error: impl Into<String>) -> Completion {
        self.error = Some(error.into());
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
                wait: call.wait,
                busy: None,
                cancelled: false,
                error: None,
            });
            id
        });
        PendingOp {
            recorder: self.clone(),
            id,
        }
    }

    /// Marks `process` crashed now: its ops invoked until now that never complete are excused
    /// from T1. Its last mark must come once it is dead: its holds end there.
    pub fn crashed(&self, process: u32) {
        self.crashed_at(process, Instant::now());
    }

    /// [`Recorder::crashed`] with an explicit time.
    pub fn crashed_at(&self, process: u32, at: Instant) {
        self.with(|h| h.crashes.push((process, at)));
    }

    /// Marks `process` stopped (SIGSTOP) from `from` to `to` (see [`History::pauses`]).
    pub fn paused_at(&self, process: u32, from: Instant, to: Instant) {
        self.with(|h| h.pauses.push((process, from, to)));
    }

    /// Notes what the scenario did now (for the timeline; see [`History::notes`]).
    pub fn note(&self, text: impl Into<String>) {
        self.note_at(text, Instant::now());
    }

    /// [`Recorder::note`] with an explicit time.
    pub fn note_at(&self, text: impl Into<String>, at: Instant) {
        let text = text.into();
        self.with(|h| {
            let i = h.notes.partition_point(|(t, _)| *t <= at);
            h.notes.insert(i, (at, text));
        });
    }

    /// Records an observation of a lock key (checked by I3).
    pub fn observe(&self, observation: Observation) {
        self.with(|h| h.observations.push(observation));
    }

    /// Records an observation after a release (checked by R1).
    pub fn observe_release(&self, observation: ReleaseObservation) {
        self.with(|h| h.release_observations.push(observation));
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
            op.busy = completion.busy;
            op.cancelled = completion.cancelled;
            op.error = completion.error;
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
                wait: None,
                busy: None,
                cancelled: false,
                error: None,
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
}
