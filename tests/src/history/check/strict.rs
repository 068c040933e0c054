//! The checks a scenario that records every acquisition of its keys can make
//! ([`FinalState::strict`]): R1 releases (any scenario that observes after releases), E1
//! refusals, W1 waits, and I2's fence-gap rule.

use super::*;

/// How long before a busy wait's end W1 looks for a possible holder: the wait's last attempt
/// is sent at its deadline, and its answer takes at most a command timeout (2 s) and some
/// scheduling slack.
pub const W1_WINDOW: Duration = Duration::from_secs(3);

impl History {
    /// **R1 releases.** After a release returned released, the released token is held by
    /// fewer than a majority of the primaries (on one primary: by none): a release that says
    /// released while a majority may still hold the token lets the caller believe a lock is
    /// free that nobody else can take.
    pub fn check_releases(&self) -> Vec<Violation> {
        self.release_observations
            .iter()
            .filter(|o| o.holding > 0 && o.holding > o.primaries / 2)
            .map(|o| {
                Violation::new(
                    Check::Releases,
                    vec![o.release],
                    format!(
                        "{} returned released, and at {} {} of {} primaries still held its token",
                        self.op(o.release)
                            .map_or_else(|| o.release.to_string(), Op::describe),
                        self.at(o.sent),
                        o.holding,
                        o.primaries
                    ),
                )
            })
            .collect()
    }

    /// **K1 keeping.** A successful extend reports a validity that ends after it was sent:
    /// an extend's lease counts from when it was sent. What a holder believes while a watchdog
    /// keeps its lock is recorded as such an extend (the validity its handle reports, while
    /// the watchdog says kept); one that ended before it was asked is a watchdog that said
    /// kept after the handle's validity had run out, letting work go on past its lease.
    pub fn check_keeping(&self) -> Vec<Violation> {
        self.ops
            .iter()
            .filter(|op| {
                matches!(op.kind, OpKind::Extend { .. })
                    && op.outcome == Outcome::Ok
                    && op.lease_end().is_some_and(|end| end <= op.invoked)
            })
            .map(|op| {
                let end = op.lease_end().expect("filtered");
                Violation::new(
                    Check::Keeping,
                    vec![op.id],
                    format!(
                        "{} (token {}) was reported kept at {}, past its validity, which ended \
                         at {}",
                        op.describe(),
                        op.token.as_deref().unwrap_or("<none>"),
                        self.at(op.invoked),
                        self.at(end)
                    ),
                )
            })
            .collect()
    }

    /// **E1 refusals** (strict). A failed acquire failed because the lock was busy: an acquire
    /// that fails for good for another reason (a refusal, a value of another type, a poisoned
    /// client) while the scenario keeps a majority of the lock's Redis healthy is a violation.
    pub fn check_refusals(&self) -> Vec<Violation> {
        self.ops
            .iter()
            .filter(|op| {
                matches!(op.kind, OpKind::Acquire { .. })
                    && op.outcome == Outcome::Fail
                    && op.busy == Some(false)
            })
            .map(|op| {
                Violation::new(
                    Check::Refusals,
                    vec![op.id],
                    format!(
                        "{} failed for good: {}",
                        op.describe(),
                        op.error.as_deref().unwrap_or("no reason given")
                    ),
                )
            })
            .collect()
    }

    /// **W1 waits** (strict). An acquire that waited and gave up because the lock was busy
    /// had a possible holder of its key in its last [`W1_WINDOW`] (longer by the time its
    /// process was stopped in that stretch, [`History::pauses`]): a hold of another client
    /// ([`History::holds`]), a lease a release or extend with an unknown outcome may have left
    /// (to its end), an acquire that may have been granted (unknown: until its lease could
    /// end), or a cancelled acquire of another client (until that client's next call, before
    /// which everything a cancelled call may hold is given back). A wait that gave up with
    /// none of these waited on a lock nobody could hold: its own cancelled call's, for one.
    pub fn check_waits(&self) -> Vec<Violation> {
        let holds = self.holds();
        let far = |t: Instant| t + Duration::from_secs(24 * 3600);
        // (process, from, until, whether the process's own later waits may count it)
        let mut busy_spans: BTreeMap<&str, Vec<(u32, Instant, Instant, bool)>> = BTreeMap::new();
        for h in &holds {
            busy_spans
                .entry(&h.key)
                .or_default()
                .push((h.process, h.start, h.end, false));
        }
        for op in &self.ops {
            let until = match (&op.kind, op.outcome) {
                (OpKind::Acquire { ttl, .. }, Outcome::Unknown) if op.cancelled => {
                    self.next_op_of(op).map_or_else(
                        || op.invoked + *ttl + op.wait.unwrap_or_default(),
                        |n| n.invoked,
                    )
                }
                (OpKind::Acquire { ttl, .. }, Outcome::Unknown)
                | (OpKind::Extend { ttl, .. }, Outcome::Unknown) => {
                    op.completed.map_or_else(|| far(op.invoked), |c| c + *ttl)
                }
                (OpKind::Release, Outcome::Unknown | Outcome::Fail) => holds
                    .iter()
                    .filter(|h| h.key == op.key && h.token == op.token && h.start <= op.invoked)
                    .map(|h| {
                        self.op(h.opened_by)
                            .and_then(Op::lease_end)
                            .unwrap_or(h.end)
                    })
                    .max()
                    .unwrap_or(op.invoked),
                _ => continue,
            };
            let own = !op.cancelled;
            busy_spans
                .entry(&op.key)
                .or_default()
                .push((op.process, op.invoked, until, own));
        }
        let mut found = Vec::new();
        for op in &self.ops {
            let (OpKind::Acquire { .. }, Some(_), Outcome::Fail, Some(true), Some(done)) =
                (&op.kind, op.wait, op.outcome, op.busy, op.completed)
            else {
                continue;
            };
            let window = W1_WINDOW + self.stopped_before(op.process, done);
            let from = done
                .checked_sub(window)
                .unwrap_or(op.invoked)
                .max(op.invoked);
            let held = busy_spans.get(op.key.as_str()).is_some_and(|spans| {
                spans.iter().any(|&(p, start, end, own)| {
                    (p != op.process || own) && start < done && from < end
                })
            });
            if !held {
                found.push(Violation::new(
                    Check::Waits,
                    vec![op.id],
                    format!(
                        "{} waited and gave up busy at {}, yet no other client could hold {:?} \
                         in its last {}",
                        op.describe(),
                        self.at(done),
                        op.key,
                        ms_text(W1_WINDOW)
                    ),
                ));
            }
        }
        found
    }

    /// How long `process` was stopped ([`History::pauses`]) in the stretch that ends at `done`
    /// and reaches [`W1_WINDOW`] plus the pauses' own length back: a busy answer the process
    /// got before it was stopped is reported only after it resumes.
    fn stopped_before(&self, process: u32, done: Instant) -> Duration {
        self.pauses
            .iter()
            .filter(|&&(p, from, to)| {
                p == process && from < done && to + W1_WINDOW + (to - from) > done
            })
            .map(|&(_, from, to)| to.min(done) - from)
            .sum()
    }

    /// **I2, fence gaps** (strict). Every increment of a key's fence counter is an
    /// acquisition: reported (its fence seen), or one whose report never came (unknown,
    /// cancelled, never completed). A key whose fences skip more values than that, plus a
    /// twentieth of its reported acquisitions and two (a grant that came back too late is
    /// given back and retried within one call), shares its counter with something else.
    pub fn check_fence_gaps(&self) -> Vec<Violation> {
        let mut fences: BTreeMap<&str, (Vec<u64>, u64, Vec<OpId>)> = BTreeMap::new();
        for op in &self.ops {
            if !matches!(op.kind, OpKind::Acquire { .. }) {
                continue;
            }
            let entry = fences.entry(&op.key).or_default();
            match (op.outcome, op.fence) {
                (Outcome::Ok, Some(fence)) => {
                    entry.0.push(fence);
                    entry.2.push(op.id);
                }
                (Outcome::Unknown, _) => entry.1 += 1,
                _ => {}
            }
        }
        let mut found = Vec::new();
        for (key, (mut seen, unreported, ids)) in fences {
            seen.sort_unstable();
            seen.dedup();
            let Some(&highest) = seen.last() else {
                continue;
            };
            let skipped = highest - seen.len() as u64;
            let allowed = unreported + seen.len() as u64 / 20 + 2;
            if skipped > allowed {
                found.push(Violation::new(
                    Check::Fencing,
                    ids.into_iter().take(3).collect(),
                    format!(
                        "key {key:?}: {} acquisitions reported fences up to {highest}, skipping \
                         {skipped} values; only {unreported} acquisitions went unreported \
                         (allowed {allowed}): the counter counts something else too",
                        seen.len()
                    ),
                ));
            }
        }
        found
    }

    /// The next op of `op`'s process after it, by invocation.
    fn next_op_of(&self, op: &Op) -> Option<&Op> {
        self.ops
            .iter()
            .filter(|o| o.process == op.process && o.invoked > op.invoked)
            .min_by_key(|o| o.invoked)
    }
}

fn ms_text(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::history::{Call, Completion, ReleaseObservation};

    /// A wait of process `p` on "k" from `i` to `c` ms that gave up busy.
    fn busy_wait(r: &Run, p: u32, (i, c): (u64, u64)) -> OpId {
        let call = Call::acquire(p, "k", d(30_000)).wait(d(10_000));
        r.op(call, i, Some(c), Completion::fail().busy(true))
    }

    #[test]
    fn r1_a_release_said_released_while_a_majority_held_the_token() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 1000);
        let released = r.release(1, "k", "A", (10, 15));
        for holding in [1, 2] {
            r.rec.observe_release(ReleaseObservation {
                release: released,
                holding,
                primaries: 3,
                sent: r.t(16),
            });
        }
        let found = r.history().check_releases();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops, [released]);
        assert!(found[0].message.contains("2 of 3 primaries"), "{found:?}");
    }

    #[test]
    fn k1_a_lock_kept_past_its_reported_validity_is_a_violation() {
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 1000);
        r.extend(1, "k", "A", (100, 101), 4000);
        // Asked at 5 s, the handle's validity having ended at 4 s.
        let kept_late = Call::extend(1, "k", "A", d(0));
        let past = r.op(
            kept_late,
            5000,
            Some(5001),
            Completion::ok().valid_until(r.t(4000)),
        );
        let found = r.history().check_keeping();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops, [past]);
    }

    #[test]
    fn e1_only_busy_failures_pass() {
        let r = Run::new();
        busy_wait(&r, 1, (0, 10));
        let refused = r.op(
            Call::acquire(2, "k", d(1000)),
            0,
            Some(5),
            Completion::fail()
                .busy(false)
                .error("OOM command not allowed"),
        );
        // A failure the client did not classify is not judged.
        r.op(
            Call::acquire(3, "k", d(1000)),
            0,
            Some(5),
            Completion::fail(),
        );
        let found = r.history().check_refusals();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops, [refused]);
        assert!(found[0].message.contains("OOM"), "{found:?}");
    }

    #[test]
    fn w1_a_busy_wait_needs_a_possible_holder_in_its_last_stretch() {
        let r = Run::new();
        // Held by 1 until 9 s: 2's wait ending at 10 s saw it in its last 3 s.
        r.acquire(1, "k", "A", (0, 5), 9_000);
        busy_wait(&r, 2, (0, 10_000));
        assert!(r.history().check_waits().is_empty());
        // Nobody could hold it from 9 s to 13 s.
        let lonely = busy_wait(&r, 2, (10_000, 13_000));
        let found = r.history().check_waits();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops, [lonely]);
    }

    #[test]
    fn w1_looks_further_back_by_the_time_the_waiter_was_stopped() {
        let r = Run::new();
        // Held by 1 until 6.5 s; 2 got its last busy answer then, was stopped from 6.6 s to
        // 9.6 s, and reported at 9.8 s.
        r.acquire(1, "k", "A", (0, 5), 6_500);
        busy_wait(&r, 2, (0, 9_800));
        let found = r.history().check_waits();
        assert_eq!(
            found.len(),
            1,
            "without the pause nobody held it: {found:?}"
        );
        r.rec.paused_at(2, r.t(6_600), r.t(9_600));
        assert!(r.history().check_waits().is_empty());
        // A pause of another process, or one long before, does not count.
        let r = Run::new();
        r.acquire(1, "k", "A", (0, 5), 6_500);
        busy_wait(&r, 2, (0, 9_800));
        r.rec.paused_at(3, r.t(6_600), r.t(9_600));
        r.rec.paused_at(2, r.t(1_000), r.t(2_000));
        assert_eq!(r.history().check_waits().len(), 1);
    }

    #[test]
    fn w1_counts_unknown_and_cancelled_acquires_of_others_not_of_the_waiter() {
        let r = Run::new();
        let unknown = Call::acquire(1, "k", d(30_000)).wait(d(10_000));
        r.op(unknown, 0, Some(100), Completion::unknown());
        busy_wait(&r, 2, (0, 10_000));
        // The waiter's own unknown (not cancelled) acquire may hold too.
        busy_wait(&r, 1, (200, 10_200));
        assert!(r.history().check_waits().is_empty(), "1's grant may hold");

        let r = Run::new();
        let cancelled = Call::acquire(1, "k", d(30_000)).wait(d(10_000));
        r.op(cancelled, 0, Some(100), Completion::unknown().cancelled());
        // 1's own next wait may not wait on its cancelled call's lock.
        let own = busy_wait(&r, 1, (200, 10_200));
        let found = r.history().check_waits();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops, [own]);
    }

    #[test]
    fn fence_gaps_beyond_unreported_grants_break_i2() {
        let r = Run::new();
        for (i, fence) in [1, 2, 3, 5].into_iter().enumerate() {
            let t = i as u64 * 10;
            r.acquire_fenced(1, "k", fence, (t, t + 5));
        }
        assert!(
            r.history().check_fence_gaps().is_empty(),
            "one skip is slack"
        );
        let r = Run::new();
        for (i, fence) in [1, 4, 8, 12].into_iter().enumerate() {
            let t = i as u64 * 10;
            r.acquire_fenced(1, "k", fence, (t, t + 5));
        }
        let found = r.history().check_fence_gaps();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].check, Check::Fencing);
    }
}
