//! The data of one lock client's store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::random::WasiRandomCtx;

use crate::clock::GuestClock;
use crate::engine::MAX_MEMORY_BYTES;
use crate::grants::Grants;
use crate::limits::MAX_TTL_MS;
use crate::redis_eval::RedisLink;

/// The store data of one lock client: the guest's resource table, WASI random, the
/// Redis link it may use, its resource limits and the deadline of the call in progress.
pub(crate) struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) random: WasiRandomCtx,
    pub(crate) link: Arc<RedisLink>,
    pub(crate) limits: StoreLimits,
    /// When the guest call in progress must end; checked at every epoch tick.
    pub(crate) deadline: Option<Instant>,
    /// `redis-eval` calls of the guest call in progress (a new bucket for every call).
    pub(crate) evals: TokenBucket,
    /// Bytes of keys and arguments this client has sent to Redis (one bucket for the client's
    /// whole life).
    pub(crate) bytes: TokenBucket,
    /// How long the guest has been computing without calling Redis.
    pub(crate) compute: ComputeWatch,
    /// The locks the component may hold (see `grants.rs`).
    pub(crate) grants: Arc<Grants>,
}

/// Counts the epoch ticks a guest spends computing without calling Redis.
///
/// While wasm runs, the epoch callback fires once per tick; a guest that sleeps (WASI poll)
/// or waits on Redis does not run, so its callbacks stop. A run of callbacks with no Redis call
/// between them, each within [`ComputeWatch::GAP`] of the previous one, is continuous
/// computation.
#[derive(Debug, Default)]
pub(crate) struct ComputeWatch {
    last: Option<Instant>,
    ticks: u32,
}

impl ComputeWatch {
    /// Callbacks further apart than this belong to separate runs (the guest slept between).
    const GAP: Duration = Duration::from_millis(250);

    /// Records an epoch callback at `now`; returns the ticks of the current run.
    pub(crate) fn tick(&mut self, now: Instant) -> u32 {
        self.ticks = match self.last {
            Some(last) if now.duration_since(last) <= Self::GAP => self.ticks.saturating_add(1),
            _ => 1,
        };
        self.last = Some(now);
        self.ticks
    }

    /// The guest called the host: its computation run is over.
    pub(crate) fn reset(&mut self) {
        *self = ComputeWatch::default();
    }
}

/// A token bucket: up to `capacity` units at once, refilled at `capacity` units per second.
///
/// It bounds a rate the way the policy states it: no more than `capacity` in a burst, and no
/// more than `capacity` per second sustained (any one-second window admits at most twice the
/// capacity).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    capacity: u64,
    available: f64,
    refilled: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `capacity` units per second.
    pub(crate) fn new(capacity: u64) -> Self {
        TokenBucket {
            capacity,
            available: capacity as f64,
            refilled: None,
        }
    }

    /// Takes `units` at `now`; false (and nothing taken) when the bucket holds fewer.
    pub(crate) fn take(&mut self, now: Instant, units: u64) -> bool {
        let capacity = self.capacity as f64;
        if let Some(last) = self.refilled {
            let earned = now.saturating_duration_since(last).as_secs_f64() * capacity;
            self.available = (self.available + earned).min(capacity);
        }
        self.refilled = Some(now);
        let units = units as f64;
        if units > self.available {
            return false;
        }
        self.available -= units;
        true
    }
}

/// The longest time budget a call into the component gets: the longest lock duration
/// ([`MAX_TTL_MS`], about 31.7 years) plus an hour. A larger budget (as from
/// `Duration::MAX` through the embedding API) is clamped to it, so every call has a deadline.
pub(crate) const MAX_CALL_BUDGET: Duration =
    Duration::from_millis(MAX_TTL_MS).saturating_add(Duration::from_secs(3600));

/// When a call with this time budget, starting now, must end.
pub(crate) fn deadline_after(budget: Duration) -> Instant {
    let now = Instant::now();
    let budget = budget.min(MAX_CALL_BUDGET);
    now.checked_add(budget).unwrap_or(now)
}

/// Most entries in a client's host resource table (loaded scripts, sleep pollables): far above
/// what a lock component needs, and a bound on host memory a component can pin.
const MAX_TABLE_ENTRIES: usize = 1024;

impl HostState {
    pub(crate) fn new(link: Arc<RedisLink>) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_TABLE_ENTRIES);
        HostState {
            table,
            random: WasiRandomCtx::default(),
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_MEMORY_BYTES)
                .memories(2)
                .tables(8)
                .table_elements(10_000)
                .instances(8)
                .trap_on_grow_failure(false)
                .build(),
            deadline: None,
            evals: TokenBucket::new(link.policy.max_evals_per_second.into()),
            bytes: TokenBucket::new(link.policy.max_bytes_per_second),
            compute: ComputeWatch::default(),
            grants: Arc::default(),
            link,
        }
    }

    /// Prepares for a guest call that must end by `deadline`.
    pub(crate) fn begin_call(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        self.evals = TokenBucket::new(self.link.policy.max_evals_per_second.into());
        self.compute.reset();
    }

    /// The guest call is over: no deadline until the next one.
    pub(crate) fn end_call(&mut self) {
        self.deadline = None;
    }

    pub(crate) fn clock(&mut self) -> GuestClock<'_> {
        GuestClock {
            table: &mut self.table,
            deadline: self.deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ComputeWatch, MAX_CALL_BUDGET, TokenBucket, deadline_after};
    use std::time::{Duration, Instant};

    #[test]
    fn ticks_count_continuous_runs_and_reset_after_a_gap_or_a_host_call() {
        let mut watch = ComputeWatch::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(watch.tick(at(0)), 1);
        assert_eq!(watch.tick(at(10)), 2);
        assert_eq!(watch.tick(at(20)), 3);
        assert_eq!(watch.tick(at(1000)), 1, "slept in between");
        assert_eq!(watch.tick(at(1010)), 2);
        watch.reset();
        assert_eq!(watch.tick(at(1020)), 1, "called the host in between");
    }

    #[test]
    fn every_budget_has_a_deadline_even_duration_max() {
        let start = Instant::now();
        let deadline = deadline_after(Duration::MAX);
        assert!(deadline > start + Duration::from_secs(30 * 365 * 86_400));
        assert!(deadline <= Instant::now() + MAX_CALL_BUDGET);
    }

    #[test]
    fn the_bucket_admits_a_burst_then_its_rate() {
        let mut bucket = TokenBucket::new(4);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(bucket.take(at(0), 3));
        assert!(bucket.take(at(0), 1));
        assert!(!bucket.take(at(0), 1), "the burst is spent");
        assert!(!bucket.take(at(100), 1), "0.4 units earned in 100 ms");
        assert!(bucket.take(at(250), 1), "1 unit earned by 250 ms");
        assert!(
            !bucket.take(at(5000), 5),
            "never more than the capacity at once"
        );
        assert!(bucket.take(at(5000), 4));
    }

    #[test]
    fn no_one_second_window_admits_more_than_twice_the_capacity() {
        let mut bucket = TokenBucket::new(10);
        let t0 = Instant::now();
        let admitted = (0..1000)
            .filter(|&ms| bucket.take(t0 + Duration::from_millis(ms), 1))
            .count();
        assert!((10..=20).contains(&admitted), "{admitted}");
    }
}
