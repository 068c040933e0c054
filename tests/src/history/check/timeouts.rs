//! T1 timeouts: every call returns within its deadline.

use super::*;

impl History {
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::history::{Call, Completion};

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
}
