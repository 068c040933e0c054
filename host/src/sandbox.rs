//! What bounds a component in time and memory: the deadline of the call in progress, the
//! compute watchdog and the store's resource limits.

use std::time::{Duration, Instant};

use wasmtime::{StoreLimits, StoreLimitsBuilder, UpdateDeadline};

use crate::contract::MAX_DURATION_MS;

pub(crate) use crate::contract::policy::MAX_MEMORY_BYTES;

/// The longest time budget a call into the component gets: the longest lock duration
/// ([`MAX_DURATION_MS`], about 31.7 years) plus an hour. A larger budget (as from
/// `Duration::MAX` through the embedding API) is clamped to it, so every call has a deadline.
pub(crate) const MAX_CALL_BUDGET: Duration =
    Duration::from_millis(MAX_DURATION_MS).saturating_add(Duration::from_secs(3600));

/// When a call with this time budget, starting now, must end.
pub(crate) fn deadline_after(budget: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(budget.min(MAX_CALL_BUDGET)).unwrap_or(now)
}

/// The time limits of one store: the deadline of the call in progress and the compute
/// watchdog, checked at every epoch tick; and its resource limits.
#[derive(Debug)]
pub(crate) struct Sandbox {
    /// When the guest call in progress must end.
    pub(crate) deadline: Option<Instant>,
    /// Longest the guest may compute without calling Redis or sleeping.
    max_compute: Duration,
    compute: ComputeWatch,
    pub(crate) limits: StoreLimits,
}

impl Sandbox {
    pub(crate) fn new(max_compute: Duration) -> Self {
        Sandbox {
            deadline: None,
            max_compute,
            compute: ComputeWatch::default(),
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_MEMORY_BYTES)
                .memories(2)
                .tables(8)
                .table_elements(10_000)
                .instances(8)
                .trap_on_grow_failure(false)
                .build(),
        }
    }

    /// Prepares for a guest call that must end by `deadline`.
    pub(crate) fn begin_call(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        self.compute = ComputeWatch::default();
    }

    /// The guest call is over: no deadline until the next one.
    pub(crate) fn end_call(&mut self) {
        self.deadline = None;
    }

    /// The epoch callback's verdict at `now`, given how many calls have reached Redis so far:
    /// trap a guest past its deadline or computing too long, else let it run another tick.
    pub(crate) fn on_epoch(
        &mut self,
        now: Instant,
        redis_calls: u64,
    ) -> wasmtime::Result<UpdateDeadline> {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            wasmtime::bail!("the component ran past its time budget");
        }
        if self.compute.tick(now, redis_calls) > self.max_compute {
            wasmtime::bail!("the component computed too long without calling Redis or sleeping");
        }
        Ok(UpdateDeadline::Yield(1))
    }
}

/// Measures how long a guest has been computing without calling Redis or sleeping.
///
/// While wasm runs, the epoch callback fires at every tick; a guest that sleeps (WASI poll)
/// or waits on Redis does not run, so its callbacks stop. A run of callbacks each within
/// [`ComputeWatch::GAP`] of the previous one, with no Redis call between them, is continuous
/// computation; its length is measured on the clock, whatever the tick rate.
#[derive(Debug, Default)]
struct ComputeWatch {
    /// The first callback of the current run.
    started: Option<Instant>,
    last: Option<Instant>,
    redis_calls: u64,
}

impl ComputeWatch {
    /// Callbacks further apart than this belong to separate runs (the guest slept between).
    const GAP: Duration = Duration::from_millis(250);

    /// Records a callback at `now`; returns how long the current run has lasted.
    fn tick(&mut self, now: Instant, redis_calls: u64) -> Duration {
        let same_run = redis_calls == self.redis_calls
            && self
                .last
                .is_some_and(|last| now.saturating_duration_since(last) <= Self::GAP);
        if !same_run {
            self.started = Some(now);
        }
        self.last = Some(now);
        self.redis_calls = redis_calls;
        now.saturating_duration_since(self.started.unwrap_or(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computation_is_measured_per_run_and_a_run_ends_after_a_gap_or_a_redis_call() {
        let mut watch = ComputeWatch::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        assert_eq!(watch.tick(at(0), 0), ms(0));
        assert_eq!(watch.tick(at(10), 0), ms(10));
        assert_eq!(watch.tick(at(20), 0), ms(20));
        assert_eq!(watch.tick(at(1000), 0), ms(0), "slept in between");
        assert_eq!(watch.tick(at(1010), 0), ms(10));
        assert_eq!(watch.tick(at(1020), 1), ms(0), "called Redis in between");
        assert_eq!(watch.tick(at(1030), 1), ms(10));
    }

    #[test]
    fn every_budget_has_a_deadline_even_duration_max() {
        let start = Instant::now();
        let deadline = deadline_after(Duration::MAX);
        assert!(deadline > start + Duration::from_secs(30 * 365 * 86_400));
        assert!(deadline <= Instant::now() + MAX_CALL_BUDGET);
    }
}
