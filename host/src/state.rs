//! The data of one lock client's store.

use std::sync::Arc;
use std::time::Instant;

use redis::aio::ConnectionManager;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::random::WasiRandomCtx;

use crate::clock::GuestClock;
use crate::engine::MAX_MEMORY_BYTES;
use crate::grants::Grants;
use crate::redis_eval::RedisLink;

/// The store data of one lock client: the guest's resource table, WASI random, the
/// Redis link it may use, its resource limits and the deadline of the call in progress.
pub(crate) struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) random: WasiRandomCtx,
    pub(crate) conn: ConnectionManager,
    pub(crate) link: Arc<RedisLink>,
    pub(crate) limits: StoreLimits,
    /// When the guest call in progress must end; checked at every epoch tick.
    pub(crate) deadline: Option<Instant>,
    /// `redis-eval` calls in the current one-second window of the guest call in progress.
    pub(crate) evals: EvalWindow,
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
    const GAP: std::time::Duration = std::time::Duration::from_millis(250);

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

/// Counts a guest's `redis-eval` calls per one-second window: a rate bound that a long
/// `wait-for-lock` (one attempt per second at most) never reaches.
#[derive(Debug, Default)]
pub(crate) struct EvalWindow {
    started: Option<Instant>,
    count: u32,
}

impl EvalWindow {
    const LENGTH: std::time::Duration = std::time::Duration::from_secs(1);

    /// Records a call at `now`; false when it is over `max` in its window.
    pub(crate) fn admit(&mut self, now: Instant, max: u32) -> bool {
        match self.started {
            Some(started) if now.duration_since(started) < Self::LENGTH => {
                self.count = self.count.saturating_add(1);
            }
            _ => {
                self.started = Some(now);
                self.count = 1;
            }
        }
        self.count <= max
    }
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
            conn: link.conn.clone(),
            link,
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_MEMORY_BYTES)
                .memories(2)
                .tables(8)
                .table_elements(10_000)
                .instances(8)
                .trap_on_grow_failure(false)
                .build(),
            deadline: None,
            evals: EvalWindow::default(),
            compute: ComputeWatch::default(),
            grants: Arc::default(),
        }
    }

    /// Prepares for a guest call that must end by `deadline`.
    pub(crate) fn begin_call(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
        self.evals = EvalWindow::default();
        self.compute.reset();
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
    use super::{ComputeWatch, EvalWindow};
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
    fn evals_are_bounded_per_one_second_window() {
        let mut window = EvalWindow::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(window.admit(at(0), 2));
        assert!(window.admit(at(10), 2));
        assert!(!window.admit(at(20), 2), "a third call in the same second");
        assert!(!window.admit(at(999), 2));
        assert!(window.admit(at(1000), 2), "a new window");
        assert!(window.admit(at(1500), 2));
        assert!(!window.admit(at(1600), 2));
    }
}
