//! The checks over a [`History`], and the [`Report`] that gathers them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use super::{History, Op, OpId, OpKind, Outcome, ms};

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
}

impl Check {
    /// Every check, in the order reports list them.
    pub const ALL: [Check; 6] = [
        Check::MutualExclusion,
        Check::Fencing,
        Check::Ownership,
        Check::LostUpdate,
        Check::Timeout,
        Check::Cleanup,
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
    fn new(check: Check, ops: Vec<OpId>, message: String) -> Violation {
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
}

impl Default for FinalState {
    fn default() -> Self {
        FinalState {
            sets: BTreeMap::new(),
            leftover_keys: Vec::new(),
            extends_after_end: 0,
            run_ended: None,
            timeout_epsilon: DEFAULT_TIMEOUT_EPSILON,
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

/// One stretch of time during which a client believed it held a lock (derived by I1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The lock key.
    pub key: String,
    /// The holder's token (`None` for an acquire that reported none: a holder of its own).
    pub token: Option<String>,
    /// The process of the op that opened the stretch.
    pub process: u32,
    /// The successful acquire (or, after a lapse, extend) whose completion opened it.
    pub opened_by: OpId,
    /// The op that set its end: the acquire or extend whose lease end it is, or the release
    /// that cut it short.
    pub ended_by: OpId,
    /// When it began (the opening op's completion).
    pub start: Instant,
    /// When it ended (exclusive).
    pub end: Instant,
}

impl Hold {
    fn overlaps(&self, other: &Hold) -> bool {
        self.start < other.end && other.start < self.end
    }

    fn same_holder(&self, other: &Hold) -> bool {
        match (&self.token, &other.token) {
            (Some(a), Some(b)) => a == b,
            _ => self.opened_by == other.opened_by,
        }
    }

    fn describe(&self, h: &History) -> String {
        let token = self.token.as_deref().unwrap_or("<none>");
        format!(
            "{} (process {}, token {token}) held it over [{}, {}) (end set by {})",
            self.opened_by,
            self.process,
            h.at(self.start),
            h.at(self.end),
            self.ended_by
        )
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

/// Who a hold belongs to: its token, or for an acquire that reported none, that acquire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Holder {
    Token(String),
    Anonymous(OpId),
}

/// What an op changes in what its holder believes.
enum Change {
    /// A successful acquire or extend completed: the holder believes its lease ends at `until`.
    Renew { until: Instant },
    /// A release was sent: the holder stops acting as holder, whatever the release's outcome.
    Cut,
}

/// A change, at the moment it takes effect.
struct Event<'h> {
    at: Instant,
    op: &'h Op,
    change: Change,
}

impl Event<'_> {
    /// Time order; at one instant a renewal takes effect before a release (a client sends its
    /// release after its acquire or extend returned, possibly within one clock tick).
    fn order(&self) -> (Instant, bool, OpId) {
        (self.at, matches!(self.change, Change::Cut), self.op.id)
    }
}

/// `(op, invoked, completed, fence)`: an op that happened with a fence.
type Fenced = (OpId, Instant, Instant, u64);

/// For each later item, the earlier item (completed before the later one was invoked) with the
/// highest fence, when that fence is `>= later`'s (or `>` when `allow_equal`).
fn regressions(items: &[Fenced], allow_equal: bool) -> Vec<(Fenced, Fenced)> {
    let mut by_completion = items.to_vec();
    by_completion.sort_by_key(|&(id, _, completed, _)| (completed, id));
    let mut by_invocation = items.to_vec();
    by_invocation.sort_by_key(|&(id, invoked, _, _)| (invoked, id));
    let mut earlier = by_completion.iter().peekable();
    let mut highest: Option<Fenced> = None;
    let mut found = Vec::new();
    for &later in &by_invocation {
        while let Some(&&e) = earlier.peek() {
            if e.2 >= later.1 {
                break;
            }
            if highest.is_none_or(|h| e.3 > h.3) {
                highest = Some(e);
            }
            earlier.next();
        }
        if let Some(h) = highest
            && (h.3 > later.3 || (!allow_equal && h.3 == later.3))
        {
            found.push((h, later));
        }
    }
    found
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

    /// The stretches during which each client believed it held each key, sorted by key, then
    /// start. Per holder (key and token), in time order:
    ///
    /// - a successful acquire or extend, at its **completion**, sets the believed lease end to
    ///   its [`Op::lease_end`] (reported `valid_until`, else `invoked + ttl`). If the previous
    ///   end had not passed, the stretch continues with the new end (earlier or later); if it
    ///   had, or there was none, a new stretch opens at the completion. An end at or before the
    ///   completion closes the stretch there;
    /// - a release, at its **invocation** and whatever its outcome (a client stops acting as
    ///   holder when it sends the release; an unknown release may have deleted the key),
    ///   closes the stretch;
    /// - acquires that did not succeed (fail or unknown) are not holds: their clients do not
    ///   believe they hold the lock. Failed or unknown extends do not move the end.
    ///
    /// Extends and releases match holders by key and token; those without a token are ignored.
    pub fn holds(&self) -> Vec<Hold> {
        let mut events: BTreeMap<(&str, Holder), Vec<Event>> = BTreeMap::new();
        for op in &self.ops {
            let holder = match (&op.token, &op.kind) {
                (Some(t), _) => Holder::Token(t.clone()),
                (None, OpKind::Acquire { .. }) => Holder::Anonymous(op.id),
                (None, _) => continue,
            };
            let (at, change) = match (&op.kind, op.succeeded_at(), op.lease_end()) {
                (OpKind::Acquire { .. } | OpKind::Extend { .. }, Some(done), Some(until)) => {
                    (done, Change::Renew { until })
                }
                (OpKind::Release, _, _) => (op.invoked, Change::Cut),
                _ => continue,
            };
            let event = Event { at, op, change };
            events.entry((&op.key, holder)).or_default().push(event);
        }
        let mut holds = Vec::new();
        for ((key, holder), mut events) in events {
            events.sort_by_key(Event::order);
            let token = match holder {
                Holder::Token(t) => Some(t),
                Holder::Anonymous(_) => None,
            };
            let mut open: Option<Hold> = None;
            let mut close = |hold: Hold| {
                if hold.end > hold.start {
                    holds.push(hold);
                }
            };
            for Event { at, op, change } in events {
                match change {
                    Change::Renew { until } => match open.take() {
                        Some(mut hold) if at < hold.end => {
                            hold.ended_by = op.id;
                            if until > at {
                                hold.end = until;
                                open = Some(hold);
                            } else {
                                hold.end = at;
                                close(hold);
                            }
                        }
                        previous => {
                            if let Some(hold) = previous {
                                close(hold);
                            }
                            open = (until > at).then(|| Hold {
                                key: key.to_owned(),
                                token: token.clone(),
                                process: op.process,
                                opened_by: op.id,
                                ended_by: op.id,
                                start: at,
                                end: until,
                            });
                        }
                    },
                    Change::Cut => {
                        if let Some(mut hold) = open.take() {
                            if at < hold.end {
                                hold.end = at;
                                hold.ended_by = op.id;
                            }
                            close(hold);
                        }
                    }
                }
            }
            if let Some(hold) = open {
                close(hold);
            }
        }
        holds.sort_by(|a, b| (&a.key, a.start, a.opened_by).cmp(&(&b.key, b.start, b.opened_by)));
        holds
    }

    /// **I1 mutual exclusion.** For each key, no two [`holds`](History::holds) of different
    /// holders overlap (intervals are half-open: one may start exactly when another ends). One
    /// violation per overlapping pair, naming both opening ops (`ops = [earlier, later]`).
    pub fn check_mutual_exclusion(&self) -> Vec<Violation> {
        let holds = self.holds();
        let mut found = Vec::new();
        for (i, a) in holds.iter().enumerate() {
            for b in holds[i + 1..]
                .iter()
                .take_while(|b| b.key == a.key && b.start < a.end)
            {
                if a.overlaps(b) && !a.same_holder(b) {
                    let overlap = a.end.min(b.end) - b.start;
                    found.push(Violation::new(
                        Check::MutualExclusion,
                        vec![a.opened_by, b.opened_by],
                        format!(
                            "key {:?}: {} while {}; two holders for {}",
                            a.key,
                            a.describe(self),
                            b.describe(self),
                            ms(overlap)
                        ),
                    ));
                }
            }
        }
        found
    }

    /// **I2 fencing.** Only real-time order counts: X precedes Y when X completed before Y
    /// was invoked (concurrent calls may complete in either order).
    ///
    /// - Successful acquires of one key that report a fence: no two get the same fence, and
    ///   when X precedes Y, X's fence is lower than Y's.
    /// - Accepted fenced writes of one resource: when X precedes Y, X's fence is lower than
    ///   Y's (the resource accepts only fences greater than all it accepted before, so an
    ///   accepted write at or below an earlier accepted fence is a stale write that got
    ///   through). Rejected and unknown writes are not counted.
    ///
    /// For each op that breaks the order, one violation naming it and the preceding op with
    /// the highest fence (`ops = [earlier, later]`); for a repeated fence, all acquires that
    /// share it.
    pub fn check_fencing(&self) -> Vec<Violation> {
        let mut acquires: BTreeMap<&str, Vec<Fenced>> = BTreeMap::new();
        let mut writes: BTreeMap<&str, Vec<Fenced>> = BTreeMap::new();
        for op in &self.ops {
            let (Some(done), Some(fence)) = (op.succeeded_at(), op.fence) else {
                continue;
            };
            let item = (op.id, op.invoked, done, fence);
            match &op.kind {
                OpKind::Acquire { .. } => acquires.entry(&op.key).or_default().push(item),
                OpKind::FencedWrite { resource, .. } => {
                    writes.entry(resource).or_default().push(item);
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for (key, items) in &acquires {
            let mut by_fence: BTreeMap<u64, Vec<OpId>> = BTreeMap::new();
            for &(id, _, _, fence) in items {
                by_fence.entry(fence).or_default().push(id);
            }
            for (fence, ids) in by_fence.into_iter().filter(|(_, ids)| ids.len() > 1) {
                let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
                found.push(Violation::new(
                    Check::Fencing,
                    ids,
                    format!(
                        "key {key:?}: acquires {} all got fence {fence}",
                        names.join(", ")
                    ),
                ));
            }
            for (e, l) in regressions(items, true) {
                found.push(Violation::new(
                    Check::Fencing,
                    vec![e.0, l.0],
                    format!(
                        "key {key:?}: acquire {} got fence {} although acquire {} had got fence {} and completed at {}, before {} was invoked at {}: the fence went down",
                        l.0,
                        l.3,
                        e.0,
                        e.3,
                        self.at(e.2),
                        l.0,
                        self.at(l.1)
                    ),
                ));
            }
        }
        for (resource, items) in &writes {
            for (e, l) in regressions(items, false) {
                let element = |id| match self.op(id).map(|o| &o.kind) {
                    Some(OpKind::FencedWrite { element, .. }) => element.clone(),
                    _ => String::new(),
                };
                found.push(Violation::new(
                    Check::Fencing,
                    vec![e.0, l.0],
                    format!(
                        "resource {resource:?}: stale write {} (element {:?}, fence {}) was accepted after {} (element {:?}, fence {}) had been accepted at {}",
                        l.0,
                        element(l.0),
                        l.3,
                        e.0,
                        element(e.0),
                        e.3,
                        self.at(e.2)
                    ),
                ));
            }
        }
        found
    }

    /// **I3 ownership.** For each [`Observation`](super::Observation) whose whole `GET`
    /// (`sent..=answered`) falls inside a hold of `expected_token` on that key (see
    /// [`History::holds`]), the key must hold `expected_token`. Such a hold's lease is valid in
    /// Redis too (it is counted from before the acquire or extend reached Redis), so a
    /// mismatch proves the key was deleted or overwritten while its owner's lease ran: some
    /// release, extend or acquire acted on a lock it did not own (or Redis lost the key).
    /// Observations outside such a hold prove nothing and are only counted
    /// ([`Report::observations_inconclusive`]). A violation names the hold's opening op, then
    /// the suspects: other tokens' acquires, extends and releases of the key, not failed, that
    /// were under way between the hold's start and the observation
    /// (`ops = [holder, suspects...]`).
    pub fn check_ownership(&self) -> Vec<Violation> {
        self.ownership().0
    }

    fn ownership(&self) -> (Vec<Violation>, usize) {
        let holds = self.holds();
        let mut found = Vec::new();
        let mut conclusive = 0;
        for o in &self.observations {
            let Some(hold) = holds.iter().find(|h| {
                h.key == o.key
                    && h.token.as_deref() == Some(&o.expected_token)
                    && h.start <= o.sent
                    && o.answered < h.end
            }) else {
                continue;
            };
            conclusive += 1;
            if o.observed_token.as_deref() == Some(&o.expected_token) {
                continue;
            }
            let suspects: Vec<&Op> = self
                .ops
                .iter()
                .filter(|op| {
                    op.key == o.key
                        && op.outcome != Outcome::Fail
                        && op.token.as_deref() != Some(&o.expected_token)
                        && matches!(
                            op.kind,
                            OpKind::Acquire { .. } | OpKind::Extend { .. } | OpKind::Release
                        )
                        && op.invoked <= o.answered
                        && op.completed.is_none_or(|c| c >= hold.start)
                })
                .collect();
            let observed = match &o.observed_token {
                Some(t) => format!("token {t}"),
                None => "no key".to_owned(),
            };
            let suspect_names: Vec<String> = suspects.iter().map(|op| op.describe()).collect();
            let suspects_text = if suspects.is_empty() {
                "no recorded op of another token was under way".to_owned()
            } else {
                format!("suspects: {}", suspect_names.join(", "))
            };
            let mut ops = vec![hold.opened_by];
            ops.extend(suspects.iter().map(|op| op.id));
            found.push(Violation::new(
                Check::Ownership,
                ops,
                format!(
                    "key {:?}: found {observed} over [{}, {}] while {}; {suspects_text}",
                    o.key,
                    self.at(o.sent),
                    self.at(o.answered),
                    hold.describe(self),
                ),
            ));
        }
        (found, conclusive)
    }

    /// **I4 no lost update.** Against the final contents of each guarded set (sets start
    /// empty):
    ///
    /// - every element of a successful guarded add is in its set (one violation per lost
    ///   element, naming it and every successful add of it);
    /// - an element present only through failed adds (which certainly did not happen) is a
    ///   violation, and so is an element no add was recorded for;
    /// - a set with successful adds but absent from `sets` is a violation (its adds cannot be
    ///   verified).
    ///
    /// Unknown and never-completed adds may be present or not.
    pub fn check_lost_updates(&self, sets: &BTreeMap<String, BTreeSet<String>>) -> Vec<Violation> {
        let mut adds: BTreeMap<&str, BTreeMap<&str, Vec<&Op>>> = BTreeMap::new();
        for op in &self.ops {
            if let OpKind::GuardedAdd { set, element } = &op.kind {
                adds.entry(set)
                    .or_default()
                    .entry(element)
                    .or_default()
                    .push(op);
            }
        }
        let mut found = Vec::new();
        for (set, elements) in &adds {
            let Some(contents) = sets.get(*set) else {
                let ok: Vec<OpId> = elements
                    .values()
                    .flatten()
                    .filter(|op| op.outcome == Outcome::Ok)
                    .map(|op| op.id)
                    .collect();
                if ok.is_empty() {
                    continue;
                }
                found.push(Violation::new(
                    Check::LostUpdate,
                    ok.clone(),
                    format!(
                        "set {set:?}: its final contents were not supplied; {} acknowledged adds cannot be verified",
                        ok.len()
                    ),
                ));
                continue;
            };
            for (element, ops) in elements {
                let ok: Vec<&&Op> = ops.iter().filter(|op| op.outcome == Outcome::Ok).collect();
                let present = contents.contains(*element);
                if !ok.is_empty() && !present {
                    let names: Vec<String> = ok.iter().map(|op| op.describe()).collect();
                    found.push(Violation::new(
                        Check::LostUpdate,
                        ok.iter().map(|op| op.id).collect(),
                        format!(
                            "set {set:?}: lost update: element {element:?} is missing although {} succeeded",
                            names.join(", ")
                        ),
                    ));
                }
                if present && ops.iter().all(|op| op.outcome == Outcome::Fail) {
                    let names: Vec<String> = ops.iter().map(|op| op.describe()).collect();
                    found.push(Violation::new(
                        Check::LostUpdate,
                        ops.iter().map(|op| op.id).collect(),
                        format!(
                            "set {set:?}: element {element:?} is present although {} failed (certainly did not happen)",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        for (set, contents) in sets {
            let recorded = adds.get(set.as_str());
            for element in contents {
                if recorded.is_none_or(|r| !r.contains_key(element.as_str())) {
                    found.push(Violation::new(
                        Check::LostUpdate,
                        Vec::new(),
                        format!(
                            "set {set:?}: element {element:?} is present but no add of it was recorded"
                        ),
                    ));
                }
            }
        }
        found
    }

    /// **T1 timeouts.** Every completed op with a `deadline` took at most `deadline + epsilon`
    /// (`completed - invoked`); every op completed, unless its process was marked crashed at
    /// or after its invocation ([`Recorder::crashed`](super::Recorder::crashed)). Ops without
    /// a deadline are only held to completing.
    pub fn check_timeouts(&self, epsilon: Duration) -> Vec<Violation> {
        let mut found = Vec::new();
        for op in &self.ops {
            match op.completed {
                Some(done) => {
                    let Some(deadline) = op.deadline else {
                        continue;
                    };
                    let took = done.saturating_duration_since(op.invoked);
                    if took > deadline + epsilon {
                        found.push(Violation::new(
                            Check::Timeout,
                            vec![op.id],
                            format!(
                                "{} took {}, over its deadline {} + epsilon {}",
                                op.describe(),
                                ms(took),
                                ms(deadline),
                                ms(epsilon)
                            ),
                        ));
                    }
                }
                None => {
                    let excused = self
                        .crashes
                        .iter()
                        .any(|&(p, at)| p == op.process && at >= op.invoked);
                    if !excused {
                        found.push(Violation::new(
                            Check::Timeout,
                            vec![op.id],
                            format!(
                                "{} invoked at {} never completed, and process {} was not marked crashed after that",
                                op.describe(),
                                self.at(op.invoked),
                                op.process
                            ),
                        ));
                    }
                }
            }
        }
        found
    }

    /// **C1 cleanup.** After the run and one TTL: no lock key left in Redis
    /// (`leftover_keys`, one violation each), no extend seen reaching Redis after the end
    /// (`extends_after_end` must be zero: no watchdog still runs), and no recorded extend
    /// invoked after `run_ended`.
    pub fn check_cleanup(&self, last: &FinalState) -> Vec<Violation> {
        let mut found: Vec<Violation> = last
            .leftover_keys
            .iter()
            .map(|key| {
                Violation::new(
                    Check::Cleanup,
                    Vec::new(),
                    format!("lock key {key:?} is still in Redis after the run and one TTL"),
                )
            })
            .collect();
        if last.extends_after_end > 0 {
            found.push(Violation::new(
                Check::Cleanup,
                Vec::new(),
                format!(
                    "{} extends reached Redis after the run ended: a watchdog is still running",
                    last.extends_after_end
                ),
            ));
        }
        if let Some(end) = last.run_ended {
            for op in &self.ops {
                if matches!(op.kind, OpKind::Extend { .. }) && op.invoked > end {
                    found.push(Violation::new(
                        Check::Cleanup,
                        vec![op.id],
                        format!(
                            "{} was invoked at {}, after the run ended at {}",
                            op.describe(),
                            self.at(op.invoked),
                            self.at(end)
                        ),
                    ));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, Completion, Observation, Recorder};

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A history on a virtual timeline: every time is milliseconds after `t0`.
    struct Run {
        t0: Instant,
        rec: Recorder,
    }

    impl Run {
        fn new() -> Run {
            let t0 = Instant::now();
            Run {
                t0,
                rec: Recorder::starting_at(t0),
            }
        }

        fn t(&self, ms: u64) -> Instant {
            self.t0 + d(ms)
        }

        /// Records `call`, invoked at `invoked`, completed at `completed` (`None`: never).
        fn op(&self, call: Call, invoked: u64, completed: Option<u64>, c: Completion) -> OpId {
            let pending = self.rec.invoke_at(call, self.t(invoked));
            match completed {
                Some(at) => pending.complete_at(c, self.t(at)),
                None => pending.abandon(),
            }
        }

        /// A successful acquire without a reported lease end (the checks use `invoked + ttl`).
        fn acquire(&self, p: u32, key: &str, token: &str, (i, c): (u64, u64), ttl: u64) -> OpId {
            let call = Call::acquire(p, key, d(ttl));
            self.op(call, i, Some(c), Completion::ok().token(token))
        }

        /// A successful acquire of fence `fence`, lease 1 s.
        fn acquire_fenced(&self, p: u32, key: &str, fence: u64, (i, c): (u64, u64)) -> OpId {
            let call = Call::acquire(p, key, d(1000));
            let token = format!("t{fence}");
            self.op(call, i, Some(c), Completion::ok().token(token).fence(fence))
        }

        /// A successful extend reporting the lease end `until`.
        fn extend(&self, p: u32, key: &str, token: &str, (i, c): (u64, u64), until: u64) -> OpId {
            let call = Call::extend(p, key, token, d(until - i));
            let done = Completion::ok().valid_until(self.t(until));
            self.op(call, i, Some(c), done)
        }

        fn release(&self, p: u32, key: &str, token: &str, (i, c): (u64, u64)) -> OpId {
            self.op(Call::release(p, key, token), i, Some(c), Completion::ok())
        }

        fn write(&self, element: &str, fence: u64, (i, c): (u64, u64), outcome: Outcome) -> OpId {
            let call = Call::fenced_write(1, "k", "res", element, fence);
            self.op(call, i, Some(c), Completion::new(outcome))
        }

        fn add(&self, set: &str, element: &str, (i, c): (u64, u64), outcome: Outcome) -> OpId {
            let call = Call::guarded_add(1, "k", set, element);
            self.op(call, i, Some(c), Completion::new(outcome))
        }

        fn observe(&self, expected: &str, observed: Option<&str>, (sent, answered): (u64, u64)) {
            self.rec.observe(Observation {
                key: "k".into(),
                expected_token: expected.into(),
                observed_token: observed.map(Into::into),
                sent: self.t(sent),
                answered: self.t(answered),
            });
        }

        fn history(&self) -> History {
            self.rec.history()
        }
    }

    /// Asserts `v` is one violation of `check` over exactly `ops`, whose message names `words`.
    fn assert_violation(v: &[Violation], check: Check, ops: &[OpId], words: &[&str]) {
        assert_eq!(v.len(), 1, "expected one violation, got {v:#?}");
        assert_eq!(v[0].check, check);
        assert_eq!(v[0].ops, ops);
        for w in words {
            assert!(v[0].message.contains(w), "{w:?} not in: {}", v[0].message);
        }
    }

    // I1 mutual exclusion

    #[test]
    fn holders_one_after_another_pass_mutual_exclusion() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 100);
        r.acquire(2, "k", "B", (90, 100), 100);
        r.acquire(3, "k", "C", (200, 200), 50);
        let h = r.history();
        assert_eq!(h.holds().len(), 3);
        assert_eq!(h.check_mutual_exclusion(), []);
    }

    #[test]
    fn two_holders_with_overlapping_validity_are_a_violation_naming_both_acquires() {
        let r = Run::new();
        let a = r.acquire(1, "k", "A", (0, 5), 100);
        let b = r.acquire(2, "k", "B", (40, 50), 100);
        let v = r.history().check_mutual_exclusion();
        assert_violation(
            &v,
            Check::MutualExclusion,
            &[a, b],
            &[
                "op#0 (process 1, token A)",
                "op#1 (process 2, token B)",
                "50.0ms",
            ],
        );
    }

    #[test]
    fn holds_of_different_keys_or_of_one_token_never_conflict() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 100);
        r.acquire(2, "other", "B", (10, 15), 100);
        r.acquire(1, "k", "A", (20, 25), 100);
        assert_eq!(r.history().check_mutual_exclusion(), []);
    }

    #[test]
    fn acquires_that_failed_or_are_unknown_are_not_holds() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 100);
        let busy = Call::acquire(2, "k", d(100));
        r.op(busy, 10, Some(12), Completion::fail());
        let timed_out = Call::acquire(3, "k", d(100));
        r.op(timed_out, 10, Some(30), Completion::unknown().token("C"));
        r.op(Call::acquire(4, "k", d(100)), 10, None, Completion::ok());
        let h = r.history();
        assert_eq!(h.holds().len(), 1);
        assert_eq!(h.check_mutual_exclusion(), []);
    }

    #[test]
    fn a_hold_starts_when_the_acquire_completes_not_when_it_is_invoked() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 100);
        r.release(1, "k", "A", (40, 42));
        let b = r.acquire(2, "k", "B", (10, 45), 100);
        let h = r.history();
        assert_eq!(h.holds()[1].opened_by, b);
        assert_eq!(h.holds()[1].start, r.t(45));
        assert_eq!(h.check_mutual_exclusion(), []);
    }

    #[test]
    fn a_release_cuts_the_hold_short_at_its_invocation() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 1000);
        let release = r.release(1, "k", "A", (100, 120));
        r.acquire(2, "k", "B", (101, 110), 1000);
        let h = r.history();
        assert_eq!(h.holds()[0].end, r.t(100));
        assert_eq!(h.holds()[0].ended_by, release);
        assert_eq!(h.check_mutual_exclusion(), []);
    }

    #[test]
    fn a_release_sent_the_instant_its_acquire_returned_ends_the_hold_there() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 1000);
        r.release(1, "k", "A", (5, 8));
        r.acquire(2, "k", "B", (6, 7), 1000);
        let h = r.history();
        assert_eq!(h.holds().len(), 1, "{:?}", h.holds());
        assert_eq!(h.check_mutual_exclusion(), []);
    }

    #[test]
    fn a_release_of_unknown_outcome_also_ends_the_hold() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 1000);
        let call = Call::release(1, "k", "A");
        r.op(call, 100, Some(300), Completion::unknown());
        r.acquire(2, "k", "B", (150, 160), 1000);
        assert_eq!(r.history().check_mutual_exclusion(), []);
    }

    #[test]
    fn a_release_of_another_token_does_not_end_the_hold() {
        let r = Run::new();
        let a = r.acquire(1, "k", "A", (0, 5), 1000);
        r.release(3, "k", "X", (100, 101));
        let b = r.acquire(2, "k", "B", (150, 160), 1000);
        let v = r.history().check_mutual_exclusion();
        assert_violation(&v, Check::MutualExclusion, &[a, b], &["token A", "token B"]);
    }

    #[test]
    fn a_successful_extend_moves_the_lease_end_later() {
        let r = Run::new();
        let a = r.acquire(1, "k", "A", (0, 5), 100);
        let extend = r.extend(1, "k", "A", (50, 60), 300);
        let b = r.acquire(2, "k", "B", (140, 150), 100);
        let h = r.history();
        assert_eq!(h.holds()[0].end, r.t(300));
        assert_eq!(h.holds()[0].ended_by, extend);
        let v = h.check_mutual_exclusion();
        assert_violation(&v, Check::MutualExclusion, &[a, b], &["end set by op#1"]);
    }

    #[test]
    fn an_extend_that_failed_or_is_unknown_does_not_move_the_lease_end() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 100);
        let lost = Call::extend(1, "k", "A", d(300));
        r.op(lost, 50, Some(60), Completion::fail());
        let timed_out = Call::extend(1, "k", "A", d(300));
        r.op(timed_out, 70, Some(90), Completion::unknown());
        r.acquire(2, "k", "B", (140, 150), 100);
        assert_eq!(r.history().check_mutual_exclusion(), []);
    }

    #[test]
    fn the_reported_valid_until_takes_precedence_over_invoked_plus_ttl() {
        let r = Run::new();
        let call = Call::acquire(1, "k", d(1000));
        let reported = Completion::ok().token("A").valid_until(r.t(100));
        r.op(call, 0, Some(5), reported);
        r.acquire(2, "k", "B", (100, 120), 100);
        let h = r.history();
        assert_eq!(h.holds()[0].end, r.t(100));
        assert_eq!(h.check_mutual_exclusion(), []);
    }

    #[test]
    fn an_extend_completing_after_the_lease_ran_out_opens_a_new_stretch() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 100);
        let late = r.extend(1, "k", "A", (90, 150), 250);
        let h = r.history();
        let stretches: Vec<_> = h.holds().iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(stretches, [(r.t(5), r.t(100)), (r.t(150), r.t(250))]);
        assert_eq!(h.holds()[1].opened_by, late);

        let between = Run::new();
        between.acquire(1, "k", "A", (0, 5), 100);
        between.extend(1, "k", "A", (90, 150), 250);
        between.acquire(2, "k", "B", (100, 110), 30);
        assert_eq!(between.history().check_mutual_exclusion(), []);
        let into = Run::new();
        into.acquire(1, "k", "A", (0, 5), 100);
        let reopened = into.extend(1, "k", "A", (90, 150), 250);
        let b = into.acquire(2, "k", "B", (100, 110), 80);
        let v = into.history().check_mutual_exclusion();
        assert_violation(&v, Check::MutualExclusion, &[b, reopened], &[]);
    }

    #[test]
    fn an_extend_shortening_the_lease_moves_the_end_earlier() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 1000);
        r.extend(1, "k", "A", (50, 55), 100);
        r.acquire(2, "k", "B", (100, 110), 100);
        let h = r.history();
        assert_eq!(h.holds()[0].end, r.t(100));
        assert_eq!(h.check_mutual_exclusion(), []);
    }

    // I2 fencing

    #[test]
    fn fences_rising_across_acquisitions_and_accepted_writes_pass() {
        let r = Run::new();
        r.acquire_fenced(1, "k", 1, (0, 5));
        r.acquire_fenced(2, "k", 2, (10, 15));
        r.acquire_fenced(3, "k", 7, (20, 25));
        r.acquire_fenced(1, "other", 1, (0, 5));
        r.write("a", 1, (6, 7), Outcome::Ok);
        r.write("b", 2, (16, 17), Outcome::Ok);
        r.write("c", 7, (26, 27), Outcome::Ok);
        assert_eq!(r.history().check_fencing(), []);
    }

    #[test]
    fn a_fence_lower_than_a_preceding_acquisitions_is_a_violation() {
        let r = Run::new();
        r.acquire_fenced(1, "k", 3, (0, 5));
        let high = r.acquire_fenced(2, "k", 5, (10, 15));
        let low = r.acquire_fenced(3, "k", 4, (20, 25));
        let v = r.history().check_fencing();
        assert_violation(
            &v,
            Check::Fencing,
            &[high, low],
            &["acquire op#2 got fence 4", "acquire op#1 had got fence 5"],
        );
    }

    #[test]
    fn two_acquisitions_with_one_fence_are_a_violation() {
        let r = Run::new();
        let a = r.acquire_fenced(1, "k", 3, (0, 5));
        let b = r.acquire_fenced(2, "k", 3, (10, 15));
        let v = r.history().check_fencing();
        assert_violation(&v, Check::Fencing, &[a, b], &["op#0, op#1 all got fence 3"]);
    }

    #[test]
    fn concurrent_acquires_may_complete_in_either_fence_order() {
        let r = Run::new();
        r.acquire_fenced(1, "k", 5, (0, 100));
        r.acquire_fenced(2, "k", 6, (10, 50));
        assert_eq!(r.history().check_fencing(), []);
    }

    #[test]
    fn a_stale_fenced_write_accepted_after_a_newer_one_is_a_violation() {
        let r = Run::new();
        let newer = r.write("new", 8, (0, 5), Outcome::Ok);
        let stale = r.write("old", 7, (10, 15), Outcome::Ok);
        let v = r.history().check_fencing();
        assert_violation(
            &v,
            Check::Fencing,
            &[newer, stale],
            &[r#"stale write op#1 (element "old", fence 7)"#, "op#0"],
        );
    }

    #[test]
    fn a_second_accepted_write_with_the_same_fence_is_a_violation() {
        let r = Run::new();
        let first = r.write("a", 8, (0, 5), Outcome::Ok);
        let again = r.write("b", 8, (10, 15), Outcome::Ok);
        let v = r.history().check_fencing();
        assert_violation(&v, Check::Fencing, &[first, again], &["fence 8"]);
    }

    #[test]
    fn rejected_and_unknown_stale_writes_are_fine() {
        let r = Run::new();
        r.write("new", 8, (0, 5), Outcome::Ok);
        r.write("old", 7, (10, 15), Outcome::Fail);
        r.write("again", 8, (20, 25), Outcome::Unknown);
        r.write("newest", 9, (30, 35), Outcome::Ok);
        assert_eq!(r.history().check_fencing(), []);
    }

    // I3 ownership

    #[test]
    fn the_expected_token_seen_during_its_hold_passes() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 1000);
        r.release(2, "k", "X", (10, 12));
        r.observe("A", Some("A"), (20, 21));
        let h = r.history();
        assert_eq!(h.check_ownership(), []);
        assert_eq!(h.check(&FinalState::default()).observations_conclusive, 1);
    }

    #[test]
    fn the_expected_token_missing_during_its_hold_is_a_violation_naming_the_suspects() {
        let r = Run::new();
        let holder = r.acquire(1, "k", "A", (0, 5), 1000);
        r.release(2, "k", "X", (1, 3));
        let culprit = r.release(2, "k", "X", (10, 12));
        r.release(3, "other", "Y", (10, 12));
        r.op(
            Call::acquire(4, "k", d(100)),
            10,
            Some(12),
            Completion::fail(),
        );
        r.observe("A", None, (20, 21));
        let v = r.history().check_ownership();
        assert_violation(
            &v,
            Check::Ownership,
            &[holder, culprit],
            &["found no key", "token A", "op#2 (process 2, release \"k\")"],
        );
    }

    #[test]
    fn another_token_found_during_the_hold_is_a_violation() {
        let r = Run::new();
        let holder = r.acquire(1, "k", "A", (0, 5), 1000);
        r.observe("A", Some("B"), (20, 21));
        let v = r.history().check_ownership();
        assert_violation(
            &v,
            Check::Ownership,
            &[holder],
            &["found token B", "no recorded op of another token"],
        );
    }

    #[test]
    fn observations_outside_the_expected_holders_validity_prove_nothing() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 100);
        r.observe("A", None, (150, 151));
        r.observe("A", None, (99, 101));
        r.observe("A", None, (2, 6));
        r.acquire(2, "k", "B", (0, 5), 1000);
        r.release(2, "k", "B", (50, 51));
        r.observe("B", None, (52, 53));
        let h = r.history();
        assert_eq!(h.check_ownership(), []);
        let report = h.check(&FinalState::default());
        assert_eq!(report.observations_conclusive, 0);
        assert_eq!(report.observations_inconclusive, 4);
    }

    // I4 no lost update

    #[test]
    fn every_acknowledged_add_present_passes_whatever_unknown_adds_did() {
        let r = Run::new();
        r.add("s", "a", (0, 1), Outcome::Ok);
        r.add("s", "b", (2, 3), Outcome::Ok);
        r.add("s", "c", (4, 5), Outcome::Unknown);
        r.add("s", "d", (6, 7), Outcome::Unknown);
        r.add("s", "e", (8, 9), Outcome::Fail);
        let last = FinalState::default().with_set("s", ["a", "b", "c"]);
        assert_eq!(r.history().check_lost_updates(&last.sets), []);
    }

    #[test]
    fn an_acknowledged_add_missing_from_the_final_set_is_a_lost_update_naming_the_element() {
        let r = Run::new();
        r.add("s", "a", (0, 1), Outcome::Ok);
        let lost = r.add("s", "b", (2, 3), Outcome::Ok);
        let last = FinalState::default().with_set("s", ["a"]);
        let v = r.history().check_lost_updates(&last.sets);
        assert_violation(
            &v,
            Check::LostUpdate,
            &[lost],
            &["set \"s\"", "lost update", "element \"b\"", "op#1"],
        );
    }

    #[test]
    fn an_element_present_only_through_failed_adds_is_a_violation() {
        let r = Run::new();
        let failed = r.add("s", "a", (0, 1), Outcome::Fail);
        let last = FinalState::default().with_set("s", ["a"]);
        let v = r.history().check_lost_updates(&last.sets);
        assert_violation(&v, Check::LostUpdate, &[failed], &["\"a\"", "failed"]);
    }

    #[test]
    fn an_element_no_add_was_recorded_for_is_a_violation() {
        let r = Run::new();
        r.add("s", "a", (0, 1), Outcome::Ok);
        let last = FinalState::default().with_set("s", ["a", "ghost"]);
        let v = r.history().check_lost_updates(&last.sets);
        assert_violation(&v, Check::LostUpdate, &[], &["\"ghost\"", "no add"]);
    }

    #[test]
    fn a_set_with_acknowledged_adds_missing_from_the_final_state_is_a_violation() {
        let r = Run::new();
        let ok = r.add("s", "a", (0, 1), Outcome::Ok);
        r.add("t", "b", (0, 1), Outcome::Unknown);
        let v = r.history().check_lost_updates(&BTreeMap::new());
        assert_violation(&v, Check::LostUpdate, &[ok], &["set \"s\"", "not supplied"]);
    }

    // T1 timeouts

    #[test]
    fn calls_within_deadline_plus_epsilon_pass_and_calls_without_deadline_are_not_timed() {
        let r = Run::new();
        let within = Call::acquire(1, "k", d(100)).deadline(d(50));
        r.op(within, 0, Some(60), Completion::fail());
        let slow = Call::acquire(1, "k", d(100));
        r.op(slow, 0, Some(60_000), Completion::fail());
        assert_eq!(r.history().check_timeouts(d(10)), []);
    }

    #[test]
    fn a_call_over_its_deadline_plus_epsilon_is_a_violation() {
        let r = Run::new();
        let call = Call::release(1, "k", "A").deadline(d(50));
        let late = r.op(call, 0, Some(61), Completion::unknown());
        let v = r.history().check_timeouts(d(10));
        assert_violation(
            &v,
            Check::Timeout,
            &[late],
            &[
                "op#0 (process 1, release \"k\") took 61.0ms",
                "deadline 50.0ms",
            ],
        );
    }

    #[test]
    fn a_call_that_never_completed_is_a_violation_unless_its_process_crashed() {
        let r = Run::new();
        let hung = r.op(Call::acquire(1, "k", d(100)), 0, None, Completion::ok());
        r.op(Call::acquire(2, "k", d(100)), 0, None, Completion::ok());
        r.rec.crashed_at(2, r.t(10));
        let v = r.history().check_timeouts(d(10));
        assert_violation(&v, Check::Timeout, &[hung], &["op#0", "never completed"]);
    }

    #[test]
    fn a_call_invoked_after_its_processs_crash_mark_is_not_excused() {
        let r = Run::new();
        r.rec.crashed_at(1, r.t(10));
        let after = r.op(Call::acquire(1, "k", d(100)), 20, None, Completion::ok());
        let v = r.history().check_timeouts(d(10));
        assert_violation(&v, Check::Timeout, &[after], &["never completed"]);
    }

    // C1 cleanup

    #[test]
    fn a_clean_end_passes_cleanup() {
        let r = Run::new();
        r.extend(1, "k", "A", (0, 5), 100);
        let last = FinalState {
            run_ended: Some(r.t(10)),
            ..FinalState::default()
        };
        assert_eq!(r.history().check_cleanup(&last), []);
    }

    #[test]
    fn leftover_keys_and_extends_after_the_end_are_violations() {
        let r = Run::new();
        let last = FinalState {
            leftover_keys: vec!["k".into()],
            ..FinalState::default()
        };
        let v = r.history().check_cleanup(&last);
        assert_violation(
            &v,
            Check::Cleanup,
            &[],
            &["lock key \"k\" is still in Redis"],
        );
        let last = FinalState {
            extends_after_end: 2,
            ..FinalState::default()
        };
        let v = r.history().check_cleanup(&last);
        assert_violation(&v, Check::Cleanup, &[], &["2 extends", "watchdog"]);
    }

    #[test]
    fn a_recorded_extend_invoked_after_the_run_ended_is_a_violation() {
        let r = Run::new();
        r.extend(1, "k", "A", (0, 5), 100);
        let late = r.extend(1, "k", "A", (20, 25), 100);
        let last = FinalState {
            run_ended: Some(r.t(10)),
            ..FinalState::default()
        };
        let v = r.history().check_cleanup(&last);
        assert_violation(
            &v,
            Check::Cleanup,
            &[late],
            &["op#1", "after the run ended"],
        );
    }

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
             I2 0, I3 0, I4 0, T1 0, C1 0"
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
        for check in Check::ALL {
            assert_eq!(report.violations_of(check).len(), 1, "{check}: {report}");
        }
        let text = report.to_string();
        assert!(text.starts_with("history FAILED (6 violations)"), "{text}");
        assert!(
            text.contains("violations: I1 1, I2 1, I3 1, I4 1, T1 1, C1 1"),
            "{text}"
        );
        assert!(
            text.contains("\n  I4 no lost update: set \"s\": lost update"),
            "{text}"
        );
        assert_eq!(report.never_completed, 1);
    }

    // Whole histories from a simulated lock

    /// A deliberate defect in the simulated lock.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Bug {
        None,
        /// An acquire sometimes takes a key another token holds.
        AcquireIgnoresHolder,
        /// A release deletes the key whoever holds it.
        ReleaseIgnoresToken,
    }

    /// xorshift64*: reproducible randomness without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// What a simulated client believes it holds: token, fence, lease end.
    type Belief = Option<(String, u64, u64)>;

    /// Three clients on one key against a model Redis (expiring key, fence counter), a fenced
    /// resource and a guarded set. Each op takes effect at one instant between its invocation
    /// and completion, and effects are applied in time order; one reply in ten is lost (the op
    /// then did or did not take effect). An observer reads the key at every such instant.
    fn simulate(seed: u64, bug: Bug) -> (History, FinalState) {
        let r = Run::new();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut key: Option<(String, u64)> = None;
        let (mut fences, mut resource_max, mut set) = (0, 0, BTreeSet::new());
        let mut beliefs: Vec<Belief> = vec![None; 3];
        let schedule = |after: u64, rng: &mut Rng| {
            let invoked = after + rng.below(5);
            (invoked, invoked + rng.below(10))
        };
        let mut next: Vec<(u64, u64)> = (0..3).map(|_| schedule(0, &mut rng)).collect();
        for n in 0..90 {
            let c = (0..3).min_by_key(|&c| next[c].1).unwrap();
            let (invoked, at) = next[c];
            let completed = at + rng.below(10);
            if key.as_ref().is_some_and(|&(_, expires)| expires <= at) {
                key = None;
            }
            let p = c as u32;
            let held = beliefs[c].clone().filter(|b| invoked < b.2);
            let call = match (&held, &beliefs[c], rng.below(4)) {
                (None, Some((token, ..)), 0) => Call::release(p, "k", token),
                (None, ..) => Call::acquire(p, "k", d(20 + rng.below(80))),
                (Some((token, ..)), _, 0) => Call::release(p, "k", token),
                (Some((token, _, end)), _, 1) => {
                    // Never shortens the lease: the guest keeps its old validity when an
                    // extend's outcome is unknown, so a shortening extend that timed out
                    // leaves the handle believing in a lease Redis no longer has.
                    let ttl = end - invoked + 1 + rng.below(60);
                    Call::extend(p, "k", token, d(ttl))
                }
                (Some((_, fence, _)), _, 2) => {
                    Call::fenced_write(p, "k", "res", format!("w{n}"), *fence)
                }
                (Some(_), ..) => Call::guarded_add(p, "k", "s", format!("e{n}")),
            };
            let lost = rng.chance(10);
            let applies = !(lost && rng.chance(50));
            let mine = |key: &Option<(String, u64)>| {
                key.as_ref().map(|k| &k.0) == call.token.as_ref() && call.token.is_some()
            };
            let mut done = Completion::fail();
            match &call.kind {
                OpKind::Acquire { ttl, .. } if applies => {
                    let ttl = ttl.as_millis() as u64;
                    if key.is_none() || (bug == Bug::AcquireIgnoresHolder && rng.chance(30)) {
                        fences += 1;
                        let token = format!("c{c}-{n}");
                        key = Some((token.clone(), at + ttl));
                        done = Completion::ok().token(&token).fence(fences);
                        beliefs[c] = Some((token, fences, invoked + ttl));
                    }
                }
                OpKind::Extend { ttl, .. } if applies => {
                    if mine(&key) {
                        let ttl = ttl.as_millis() as u64;
                        key.as_mut().unwrap().1 = at + ttl;
                        done = Completion::ok().valid_until(r.t(invoked + ttl));
                        beliefs[c].as_mut().unwrap().2 = invoked + ttl;
                    } else {
                        beliefs[c] = None;
                    }
                }
                OpKind::Release => {
                    if applies && (mine(&key) || bug == Bug::ReleaseIgnoresToken) {
                        key = None;
                        done = Completion::ok();
                    }
                    beliefs[c] = None;
                }
                OpKind::FencedWrite { .. } if applies => {
                    let fence = call.fence.unwrap();
                    if fence > resource_max {
                        resource_max = fence;
                        done = Completion::ok();
                    }
                }
                OpKind::GuardedAdd { element, .. } if applies => {
                    set.insert(element.clone());
                    done = Completion::ok();
                }
                _ => {}
            }
            if lost {
                done = Completion::unknown();
                if matches!(call.kind, OpKind::Acquire { .. }) {
                    beliefs[c] = None;
                } else if matches!(call.kind, OpKind::Extend { .. })
                    && let (Some(b), Some(h)) = (beliefs[c].as_mut(), &held)
                {
                    b.2 = h.2;
                }
            }
            r.op(call, invoked, Some(completed), done);
            for belief in beliefs.iter().flatten() {
                r.observe(&belief.0, key.as_ref().map(|k| k.0.as_str()), (at, at));
            }
            next[c] = schedule(completed, &mut rng);
        }
        let last = FinalState::default().with_set("s", set);
        (r.history(), last)
    }

    #[test]
    fn histories_of_a_correct_lock_never_report_a_violation() {
        let (mut holds, mut conclusive) = (0, 0);
        let mut counts: BTreeMap<(&str, Outcome), usize> = BTreeMap::new();
        for seed in 0..300 {
            let (history, last) = simulate(seed, Bug::None);
            let report = history.check(&last);
            assert!(report.is_ok(), "seed {seed}: {report}\n{history}");
            holds += report.holds;
            conclusive += report.observations_conclusive;
            for (kind_outcome, n) in report.counts {
                *counts.entry(kind_outcome).or_default() += n;
            }
        }
        let unknown: usize = (counts.iter())
            .filter(|((_, o), _)| *o == Outcome::Unknown)
            .map(|(_, n)| n)
            .sum();
        let stats =
            format!("{holds} holds, {conclusive} conclusive, {unknown} unknown, {counts:?}");
        assert!(
            holds > 1000 && conclusive > 5000 && unknown > 1000,
            "{stats}"
        );
        assert!(counts[&("extend", Outcome::Ok)] > 500, "{stats}");
        assert!(counts[&("fenced-write", Outcome::Fail)] > 200, "{stats}");
        assert!(counts[&("release", Outcome::Fail)] > 50, "{stats}");
    }

    #[test]
    fn histories_of_a_lock_whose_acquire_ignores_the_holder_report_overlapping_holds() {
        let caught = (0..50)
            .filter(|&seed| {
                let (history, last) = simulate(seed, Bug::AcquireIgnoresHolder);
                !history
                    .check(&last)
                    .violations_of(Check::MutualExclusion)
                    .is_empty()
            })
            .count();
        assert!(caught > 25, "caught in {caught} of 50 runs");
    }

    #[test]
    fn histories_of_a_lock_whose_release_ignores_the_token_report_deleted_locks() {
        let caught = (0..50)
            .filter(|&seed| {
                let (history, last) = simulate(seed, Bug::ReleaseIgnoresToken);
                !history
                    .check(&last)
                    .violations_of(Check::Ownership)
                    .is_empty()
            })
            .count();
        assert!(caught >= 5, "caught in {caught} of 50 runs");
    }
}
