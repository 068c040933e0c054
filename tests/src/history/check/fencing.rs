//! I2 fencing: fences strictly increase across acquisitions, and the fenced resource accepts no stale write.

use super::*;

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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

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
}
