//! The data of one lock client's store.

use std::sync::Arc;
use std::time::Instant;

use redis::aio::ConnectionManager;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::clocks::{WasiClocksCtx, WasiClocksCtxView};
use wasmtime_wasi::random::WasiRandomCtx;

use crate::engine::MAX_MEMORY_BYTES;
use crate::redis_eval::RedisLink;

/// The store data of one lock client: the guest's resource table, WASI clocks and random, the
/// Redis link it may use, its resource limits and the deadline of the call in progress.
pub struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) clocks: WasiClocksCtx,
    pub(crate) random: WasiRandomCtx,
    pub(crate) conn: ConnectionManager,
    pub(crate) link: Arc<RedisLink>,
    pub(crate) limits: StoreLimits,
    /// When the guest call in progress must end; checked at every epoch tick.
    pub(crate) deadline: Option<Instant>,
}

impl HostState {
    pub(crate) fn new(link: Arc<RedisLink>) -> Self {
        HostState {
            table: ResourceTable::new(),
            clocks: WasiClocksCtx::default(),
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
        }
    }

    pub(crate) fn clocks(&mut self) -> WasiClocksCtxView<'_> {
        WasiClocksCtxView {
            ctx: &mut self.clocks,
            table: &mut self.table,
        }
    }
}
