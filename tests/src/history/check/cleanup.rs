//! C1 cleanup: nothing left behind after the run.

use super::*;

impl History {
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
    use super::super::fixtures::*;
    use super::*;

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
}
