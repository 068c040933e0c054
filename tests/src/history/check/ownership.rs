//! I3 ownership: while a holder believes it holds a key, Redis holds its token.

use super::*;

impl History {
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

    pub(super) fn ownership(&self) -> (Vec<Violation>, usize) {
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::history::{Call, Completion};

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
}
