//! The holds a history shows (who believed it held which key, when), and I1 mutual exclusion over them.

use super::*;

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
    /// Its process was killed before that end: the hold ends there instead.
    pub killed: bool,
    /// When it began (the opening op's completion).
    pub start: Instant,
    /// When it ended (exclusive).
    pub end: Instant,
}

impl Hold {
    pub(super) fn overlaps(&self, other: &Hold) -> bool {
        self.start < other.end && other.start < self.end
    }

    pub(super) fn same_holder(&self, other: &Hold) -> bool {
        match (&self.token, &other.token) {
            (Some(a), Some(b)) => a == b,
            _ => self.opened_by == other.opened_by,
        }
    }

    pub(super) fn describe(&self, h: &History) -> String {
        let token = self.token.as_deref().unwrap_or("<none>");
        let ending = if self.killed {
            format!("until its process was killed at {}", h.at(self.end))
        } else {
            format!("end set by {}", self.ended_by)
        };
        format!(
            "{} (process {}, token {token}) held it over [{}, {}) ({ending})",
            self.opened_by,
            self.process,
            h.at(self.start),
            h.at(self.end),
        )
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

impl History {
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
    /// - a process's last crash mark ([`History::crashes`]: it was killed by then) closes its
    ///   stretches, and nothing it did after the mark counts. A killed process believes
    ///   nothing, and what it last reported may no longer be what it believed: a watchdog's
    ///   extend between two samples may have shortened the lease it reported;
    /// - acquires that did not succeed (fail or unknown) are not holds: their clients do not
    ///   believe they hold the lock. Failed or unknown extends do not move the end.
    ///
    /// Extends and releases match holders by key and token; those without a token are ignored.
    pub fn holds(&self) -> Vec<Hold> {
        let mut killed: BTreeMap<u32, Instant> = BTreeMap::new();
        for &(process, at) in &self.crashes {
            let last = killed.entry(process).or_insert(at);
            *last = (*last).max(at);
        }
        let alive = |process: u32, at: Instant| killed.get(&process).is_none_or(|&k| at < k);
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
            if !alive(op.process, at) {
                continue;
            }
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
                                killed: false,
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
            if let Some(mut hold) = open {
                if let Some(&at) = killed.get(&hold.process)
                    && at < hold.end
                {
                    hold.end = at;
                    hold.killed = true;
                }
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::history::{Call, Completion};

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
    fn a_hold_ends_when_its_process_is_killed() {
        // A kept lock's last sample said 1 s, then its watchdog's unrecorded extend set a
        // shorter lease, and its process was killed before another sample.
        let r = Run::new();
        let kept = r.acquire(1, "k", "A", (0, 5), 1000);
        r.rec.crashed_at(1, r.t(20));
        r.rec.crashed_at(1, r.t(60));
        r.acquire(2, "k", "B", (100, 110), 100);
        let h = r.history();
        assert_eq!((h.holds()[0].opened_by, h.holds()[0].end), (kept, r.t(60)));
        assert!(
            h.holds()[0]
                .describe(&h)
                .contains("until its process was killed at +60.0ms")
        );
        assert_eq!(h.check_mutual_exclusion(), []);

        let alive = Run::new();
        let a = alive.acquire(1, "k", "A", (0, 5), 1000);
        let b = alive.acquire(2, "k", "B", (100, 110), 100);
        alive.rec.crashed_at(1, alive.t(150));
        let v = alive.history().check_mutual_exclusion();
        assert_violation(&v, Check::MutualExclusion, &[a, b], &["killed at +150.0ms"]);
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
}
