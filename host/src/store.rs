//! The data of one lock client's store: the component's resource table, its WASI clocks and
//! random, its Redis capability and its sandbox.

use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::random::WasiRandomCtx;

use crate::cancel::Cancel;
use crate::clock::GuestClock;
use crate::redis::{RedisCtx, RedisHostView, RedisView};
use crate::sandbox::Sandbox;

/// Most entries in a client's host resource table (loaded scripts, sleep pollables): far above
/// what a lock component needs, and a bound on host memory a component can pin.
const MAX_TABLE_ENTRIES: usize = 1024;

/// The store data of one lock client.
pub(crate) struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) random: WasiRandomCtx,
    pub(crate) redis: RedisCtx,
    pub(crate) sandbox: Sandbox,
}

impl HostState {
    /// A store for one client: resource limits, and an epoch callback that traps the component
    /// past its call's deadline or after computing too long (see [`Sandbox::on_epoch`]).
    pub(crate) fn store(engine: &wasmtime::Engine, redis: RedisCtx) -> Store<HostState> {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_TABLE_ENTRIES);
        let sandbox = Sandbox::new(redis.policy().max_compute());
        let state = HostState {
            table,
            random: WasiRandomCtx::default(),
            redis,
            sandbox,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.sandbox.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.sandbox.on_epoch(Instant::now(), state.redis.calls)
        });
        store
    }

    /// Prepares for a guest call that must end by `deadline`, and that `cancel` may cancel
    /// (its sleeps and waits then end at once).
    pub(crate) fn begin_call(&mut self, deadline: Instant, cancel: Cancel) {
        self.sandbox.begin_call(deadline);
        self.redis.begin_scoped_call(Some(deadline), cancel);
    }

    pub(crate) fn clock(&mut self) -> GuestClock<'_> {
        GuestClock {
            table: &mut self.table,
            deadline: self.sandbox.deadline,
            cancel: &self.redis.cancel,
        }
    }
}

impl RedisHostView for HostState {
    fn redis(&mut self) -> RedisView<'_> {
        RedisView {
            ctx: &mut self.redis,
            table: &mut self.table,
        }
    }
}
