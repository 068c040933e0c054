//! The checks over a [`History`], one file per invariant, and the [`Report`] that gathers
//! them.

mod cleanup;
mod fencing;
#[cfg(test)]
mod fixtures;
mod holds;
mod lost_updates;
mod ownership;
#[cfg(test)]
mod simulation;
mod strict;
mod timeouts;

pub use holds::Hold;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use super::{History, Op, OpId, OpKind, Outcome, ms};

pub use strict::W1_WINDOW;

/// The slack T1 allows over a call's deadline by default: scheduling and process start-up
/// jitter on a loaded test machine, not lock behaviour.
pub const DEFAULT_TIMEOUT_EPSILON: Duration = Duration::from_millis(100);

/// One of the invariants a history is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// I1: no two tokens hold one key with overlapping validity.
    MutualExclusion,
    /// I2: fences of one key increase across acquisitions; a fenced resource accepts no stale
    /// write.
    Fencing,
    /// I3: a holder's key keeps its token while its lease is valid (nobody releases or
    /// overwrites another holder's lock).
    Ownership,
    /// I4: every acknowledged guarded add is in the final set.
    LostUpdate,
    /// T1: every call returns within its deadline plus epsilon.
    Timeout,
    /// C1: no lock key and no watchdog outlives the run.
    Cleanup,
    /// R1: a lock reported released is held by fewer than a majority of the primaries.
    Releases,
    /// E1: acquires fail only because the lock is busy (strict).
    Refusals,
    /// W1: a wait gives up busy only while someone could hold the lock (strict).
    Waits,
    /// J1: no process of a job under `dlock run` runs while its lock is gone.
    Jobs,
    /// K1: a watchdog never reports a lock kept past the validity its handle reports.
    Keeping,
}

impl Check {
    /// Every check, in the order reports list them.
    pub const ALL: [Check; 11] = [
        Check::MutualExclusion,
        Check::Fencing,
        Check::Ownership,
        Check::LostUpdate,
        Check::Timeout,
        Check::Cleanup,
        Check::Releases,
        Check::Refusals,
        Check::Waits,
        Check::Jobs,
        Check::Keeping,
    ];

    /// The check's code: `I1`, `I2`, `I3`, `I4`, `T1` or `C1`.
    pub fn code(self) -> &'static str {
        match self {
            Check::MutualExclusion => "I1",
            Check::Fencing => "I2",
            Check::Ownership => "I3",
            Check::LostUpdate => "I4",
            Check::Timeout => "T1",
            Check::Cleanup => "C1",
            Check::Releases => "R1",
            Check::Refusals => "E1",
            Check::Waits => "W1",
            Check::Jobs => "J1",
            Check::Keeping => "K1",
        }
    }
}

/// `I1 mutual exclusion`, etc.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Check::MutualExclusion => "mutual exclusion",
            Check::Fencing => "fencing",
            Check::Ownership => "ownership",
            Check::LostUpdate => "no lost update",
            Check::Timeout => "timeouts",
            Check::Cleanup => "cleanup",
            Check::Releases => "releases",
            Check::Refusals => "refusals",
            Check::Waits => "waits",
            Check::Jobs => "jobs",
            Check::Keeping => "keeping",
        };
        write!(f, "{} {name}", self.code())
    }
}

/// One way the history breaks one invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant broken.
    pub check: Check,
    /// The ops involved, the most telling first (empty for facts from the final state alone).
    pub ops: Vec<OpId>,
    /// What went wrong, naming the ops, keys, tokens, fences and elements involved.
    pub message: String,
}

impl Violation {
    pub(crate) fn new(check: Check, ops: Vec<OpId>, message: String) -> Violation {
        Violation {
            check,
            ops,
            message,
        }
    }
}

/// `I1 mutual exclusion: MESSAGE`.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.message)
    }
}

/// What the scenario read back after the run, for the checks that need more than the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalState {
    /// I4: the final contents of every guarded set of the run (sets start empty).
    pub sets: BTreeMap<String, BTreeSet<String>>,
    /// C1: lock keys still in Redis after the run and one TTL.
    pub leftover_keys: Vec<String>,
    /// C1: extends seen reaching Redis after the run ended (e.g. with `MONITOR`).
    pub extends_after_end: u64,
    /// C1: when the run ended; recorded extends invoked after it are violations.
    pub run_ended: Option<Instant>,
    /// T1: the slack allowed over each call's deadline.
    pub timeout_epsilon: Duration,
    /// The scenario recorded every acquisition of its keys, classified every failed acquire
    /// (busy or not) and never failed a majority of the lock's Redis for good: E1, W1 and I2's
    /// fence-gap rule apply.
    pub strict: bool,
    /// J1: what job processes reported of running without their lock.
    pub job_violations: Vec<String>,
}

impl Default for FinalState {
    fn default() -> Self {
        FinalState {
            sets: BTreeMap::new(),
            leftover_keys: Vec::new(),
            extends_after_end: 0,
            run_ended: None,
            timeout_epsilon: DEFAULT_TIMEOUT_EPSILON,
            strict: false,
            job_violations: Vec::new(),
        }
    }
}

impl FinalState {
    /// Adds the final contents of `set`.
    pub fn with_set(
        mut self,
        set: impl Into<String>,
        elements: impl IntoIterator<Item = impl Into<String>>,
    ) -> FinalState {
        let elements = elements.into_iter().map(Into::into).collect();
        self.sets.insert(set.into(), elements);
        self
    }
}
/// The outcome of [`History::check`]: what was recorded and every violation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// How many ops were recorded.
    pub ops: usize,
    /// Ops per (kind name, outcome).
    pub counts: BTreeMap<(&'static str, Outcome), usize>,
    /// Ops that never completed.
    pub never_completed: usize,
    /// Hold stretches derived by I1 (zero means I1 had nothing to compare).
    pub holds: usize,
    /// Observations that fell inside their expected holder's validity (I3 could judge them).
    pub observations_conclusive: usize,
    /// Observations outside it (I3 proves nothing from them).
    pub observations_inconclusive: usize,
    /// Every violation, grouped by check in [`Check::ALL`] order.
    pub violations: Vec<Violation>,
}

impl Report {
    /// Whether no check found a violation.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violations of one check.
    pub fn violations_of(&self, check: Check) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.check == check)
            .collect()
    }

    /// One line: verdict, ops per kind and outcome, holds, observations, violations per check.
    pub fn summary(&self) -> String {
        let verdict = if self.is_ok() {
            "history OK".to_owned()
        } else {
            let n = self.violations.len();
            format!(
                "history FAILED ({n} violation{})",
                if n == 1 { "" } else { "s" }
            )
        };
        let kinds: Vec<String> = OpKind::NAMES
            .iter()
            .filter_map(|&kind| {
                let outcomes: Vec<String> = [Outcome::Ok, Outcome::Fail, Outcome::Unknown]
                    .iter()
                    .filter_map(|&o| {
                        let n = *self.counts.get(&(kind, o))?;
                        Some(format!("{n} {o}"))
                    })
                    .collect();
                (!outcomes.is_empty()).then(|| format!("{kind} {}", outcomes.join("/")))
            })
            .collect();
        let per_check: Vec<String> = Check::ALL
            .iter()
            .map(|&c| format!("{} {}", c.code(), self.violations_of(c).len()))
            .collect();
        format!(
            "{verdict}: {} ops ({}), {} never completed; {} holds; observations {} conclusive, {} inconclusive; violations: {}",
            self.ops,
            kinds.join(", "),
            self.never_completed,
            self.holds,
            self.observations_conclusive,
            self.observations_inconclusive,
            per_check.join(", ")
        )
    }
}

/// The summary line, then one line per violation.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary())?;
        for v in &self.violations {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

impl History {
    /// Runs every check: I1, I2 and I3 on the history; I4, T1 and C1 with `last`.
    pub fn check(&self, last: &FinalState) -> Report {
        let mut counts = BTreeMap::new();
        for op in &self.ops {
            *counts.entry((op.kind.name(), op.outcome)).or_insert(0) += 1;
        }
        let (ownership, conclusive) = self.ownership();
        let mut violations = self.check_mutual_exclusion();
        violations.extend(self.check_fencing());
        violations.extend(ownership);
        violations.extend(self.check_lost_updates(&last.sets));
        violations.extend(self.check_timeouts(last.timeout_epsilon));
        violations.extend(self.check_cleanup(last));
        violations.extend(self.check_releases());
        violations.extend(self.check_keeping());
        violations.extend(
            last.job_violations
                .iter()
                .map(|v| Violation::new(Check::Jobs, Vec::new(), v.clone())),
        );
        if last.strict {
            violations.extend(self.check_fence_gaps());
            violations.extend(self.check_refusals());
            violations.extend(self.check_waits());
        }
        violations.sort_by_key(|v| Check::ALL.iter().position(|&c| c == v.check));
        Report {
            ops: self.ops.len(),
            counts,
            never_completed: self.ops.iter().filter(|o| o.completed.is_none()).count(),
            holds: self.holds().len(),
            observations_conclusive: conclusive,
            observations_inconclusive: self.observations.len() - conclusive,
            violations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::history::{Call, Completion};

    // Report

    #[test]
    fn a_clean_run_reports_ok_with_counts_per_kind_and_outcome() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 100);
        r.add("s", "a", (6, 7), Outcome::Ok);
        r.release(1, "k", "A", (8, 9));
        r.op(
            Call::acquire(2, "k", d(100)),
            1,
            Some(4),
            Completion::fail(),
        );
        let report = r
            .history()
            .check(&FinalState::default().with_set("s", ["a"]));
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.ops, 4);
        assert_eq!(report.counts[&("acquire", Outcome::Ok)], 1);
        assert_eq!(report.counts[&("acquire", Outcome::Fail)], 1);
        assert_eq!(report.holds, 1);
        assert_eq!(
            report.to_string(),
            "history OK: 4 ops (acquire 1 ok/1 fail, release 1 ok, guarded-add 1 ok), 0 never \
             completed; 1 holds; observations 0 conclusive, 0 inconclusive; violations: I1 0, \
             I2 0, I3 0, I4 0, T1 0, C1 0, R1 0, E1 0, W1 0, J1 0, K1 0"
        );
    }

    #[test]
    fn check_runs_every_check_and_lists_each_violation() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 1000);
        r.acquire(2, "k", "B", (10, 15), 1000);
        r.write("new", 8, (20, 25), Outcome::Ok);
        r.write("old", 7, (30, 35), Outcome::Ok);
        r.observe("A", Some("B"), (40, 41));
        r.add("s", "lost", (50, 55), Outcome::Ok);
        r.op(Call::release(3, "k", "C"), 60, None, Completion::ok());
        let last = FinalState {
            leftover_keys: vec!["k".into()],
            ..FinalState::default().with_set("s", Vec::<String>::new())
        };
        let report = r.history().check(&last);
        assert!(!report.is_ok());
        for check in &Check::ALL[..6] {
            assert_eq!(report.violations_of(*check).len(), 1, "{check}: {report}");
        }
        let text = report.to_string();
        assert!(text.starts_with("history FAILED (6 violations)"), "{text}");
        assert!(
            text.contains(
                "violations: I1 1, I2 1, I3 1, I4 1, T1 1, C1 1, R1 0, E1 0, W1 0, J1 0, K1 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n  I4 no lost update: set \"s\": lost update"),
            "{text}"
        );
        assert_eq!(report.never_completed, 1);
    }
}
