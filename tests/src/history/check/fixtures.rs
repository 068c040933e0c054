//! What the checks' unit tests share: histories on a virtual timeline, and an assertion on
//! the violations found.

use std::time::{Duration, Instant};

use super::{Check, Violation};
use crate::history::{Call, Completion, History, Observation, OpId, Outcome, Recorder};

pub(super) fn d(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A history on a virtual timeline: every time is milliseconds after `t0`.
pub(super) struct Run {
    pub(super) t0: Instant,
    pub(super) rec: Recorder,
}

impl Run {
    pub(super) fn new() -> Run {
        let t0 = Instant::now();
        Run {
            t0,
            rec: Recorder::starting_at(t0),
        }
    }

    pub(super) fn t(&self, ms: u64) -> Instant {
        self.t0 + d(ms)
    }

    /// Records `call`, invoked at `invoked`, completed at `completed` (`None`: never).
    pub(super) fn op(
        &self,
        call: Call,
        invoked: u64,
        completed: Option<u64>,
        c: Completion,
    ) -> OpId {
        let pending = self.rec.invoke_at(call, self.t(invoked));
        match completed {
            Some(at) => pending.complete_at(c, self.t(at)),
            None => pending.abandon(),
        }
    }

    /// A successful acquire without a reported lease end (the checks use `invoked + ttl`).
    pub(super) fn acquire(
        &self,
        p: u32,
        key: &str,
        token: &str,
        (i, c): (u64, u64),
        ttl: u64,
    ) -> OpId {
        let call = Call::acquire(p, key, d(ttl));
        self.op(call, i, Some(c), Completion::ok().token(token))
    }

    /// A successful acquire of fence `fence`, lease 1 s.
    pub(super) fn acquire_fenced(&self, p: u32, key: &str, fence: u64, (i, c): (u64, u64)) -> OpId {
        let call = Call::acquire(p, key, d(1000));
        let token = format!("t{fence}");
        self.op(call, i, Some(c), Completion::ok().token(token).fence(fence))
    }

    /// A successful extend reporting the lease end `until`.
    pub(super) fn extend(
        &self,
        p: u32,
        key: &str,
        token: &str,
        (i, c): (u64, u64),
        until: u64,
    ) -> OpId {
        let call = Call::extend(p, key, token, d(until - i));
        let done = Completion::ok().valid_until(self.t(until));
        self.op(call, i, Some(c), done)
    }

    pub(super) fn release(&self, p: u32, key: &str, token: &str, (i, c): (u64, u64)) -> OpId {
        self.op(Call::release(p, key, token), i, Some(c), Completion::ok())
    }

    pub(super) fn write(
        &self,
        element: &str,
        fence: u64,
        (i, c): (u64, u64),
        outcome: Outcome,
    ) -> OpId {
        let call = Call::fenced_write(1, "k", "res", element, fence);
        self.op(call, i, Some(c), Completion::new(outcome))
    }

    pub(super) fn add(
        &self,
        set: &str,
        element: &str,
        (i, c): (u64, u64),
        outcome: Outcome,
    ) -> OpId {
        let call = Call::guarded_add(1, "k", set, element);
        self.op(call, i, Some(c), Completion::new(outcome))
    }

    pub(super) fn observe(
        &self,
        expected: &str,
        observed: Option<&str>,
        (sent, answered): (u64, u64),
    ) {
        self.rec.observe(Observation {
            key: "k".into(),
            expected_token: expected.into(),
            observed_token: observed.map(Into::into),
            sent: self.t(sent),
            answered: self.t(answered),
        });
    }

    pub(super) fn history(&self) -> History {
        self.rec.history()
    }
}

/// Asserts `v` is one violation of `check` over exactly `ops`, whose message names `words`.
pub(super) fn assert_violation(v: &[Violation], check: Check, ops: &[OpId], words: &[&str]) {
    assert_eq!(v.len(), 1, "expected one violation, got {v:#?}");
    assert_eq!(v[0].check, check);
    assert_eq!(v[0].ops, ops);
    for w in words {
        assert!(v[0].message.contains(w), "{w:?} not in: {}", v[0].message);
    }
}
