//! Whole histories from a simulated lock, correct and with planted bugs: the checks pass the
//! correct one and name the damage the buggy ones do.

use super::fixtures::*;
use super::*;
use crate::history::{Call, Completion};

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
    let stats = format!("{holds} holds, {conclusive} conclusive, {unknown} unknown, {counts:?}");
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
