//! I4 no lost update: every acknowledged add to a guarded set is in its final contents.

use super::*;

impl History {
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

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
}
