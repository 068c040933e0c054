//! Compiling and linking the lock component: done once per process, shared by every runtime.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::p2::bindings::{clocks, io, random};

use crate::bindings::{Dlock, DlockPre};
use crate::cache;
use crate::clock::HasGuestClock;
use crate::error::{Error, Result};
use crate::random::{GuestRandom, HasGuestRandom};
use crate::state::HostState;

/// How often the epoch ticker advances: the granularity of guest time budgets.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest linear memory a component may have.
pub(crate) const MAX_MEMORY_BYTES: usize = 16 << 20;

/// How instances are allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Allocation {
    /// wasmtime's pooling allocator with room for this many clients alive at once. Creating a
    /// client past that fails with [`Error::Component`] until one is dropped.
    Pooling {
        /// Most clients alive at once.
        max_clients: u32,
    },
    /// Allocate every instance's memory on demand (no upper bound on clients, slower to
    /// create).
    OnDemand,
}

impl Default for Allocation {
    /// Pooling, with room for 1000 clients.
    fn default() -> Self {
        Allocation::Pooling { max_clients: 1000 }
    }
}

/// A compiled, linked lock component, ready to instantiate. Cheap to clone.
///
/// The linker offers WASI clocks, random and poll (for sleeping) and nothing else of WASI, and
/// Redis only through `dlock:lock/redis`: a component that imports anything more (files,
/// sockets, environment, stdio) fails to load with [`Error::Component`].
#[derive(Clone)]
pub struct LockComponent {
    pre: DlockPre<HostState>,
}

impl LockComponent {
    /// The component bundled with this crate (built from `guest/`) with the default
    /// allocation, loaded once per process: from the on-disk cache of compiled components
    /// (`$DLOCK_CACHE_DIR`, else `$XDG_CACHE_HOME/dlock` or `~/.cache/dlock`; set
    /// `DLOCK_CACHE_DIR=off` to always compile) or compiled and cached. Later calls return the
    /// same component.
    pub fn bundled() -> Result<Self> {
        static BUNDLED: OnceLock<std::result::Result<LockComponent, String>> = OnceLock::new();
        BUNDLED
            .get_or_init(|| {
                let bytes = crate::bundled::COMPONENT;
                match cache::default_dir() {
                    Some(dir) => Self::from_bytes_cached(bytes, Allocation::default(), &dir),
                    None => Self::from_bytes(bytes, Allocation::default()),
                }
                .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| Error::Component(wasmtime::Error::msg(e)))
    }

    /// Compiles a component (binary or WAT is not accepted: a `wasm32-wasip2` component)
    /// that implements the `dlock` world.
    pub fn from_bytes(bytes: &[u8], allocation: Allocation) -> Result<Self> {
        let engine = Engine::new(&engine_config(allocation)).map_err(Error::Component)?;
        let component = Component::new(&engine, bytes).map_err(Error::Component)?;
        Self::link(engine, &component)
    }

    /// Like [`LockComponent::from_bytes`], but loads the compiled component from `cache_dir`
    /// when an intact artifact of the same component and engine configuration is there (one
    /// this user wrote and no one else can have modified), and otherwise compiles it and
    /// stores it there. A corrupt, truncated or foreign artifact is recompiled, never loaded.
    pub fn from_bytes_cached(
        bytes: &[u8],
        allocation: Allocation,
        cache_dir: &std::path::Path,
    ) -> Result<Self> {
        let engine = Engine::new(&engine_config(allocation)).map_err(Error::Component)?;
        let component =
            cache::load_or_compile(&engine, bytes, cache_dir).map_err(Error::Component)?;
        Self::link(engine, &component)
    }

    /// Reads and compiles a component file; see [`LockComponent::from_bytes`].
    pub fn from_file(path: impl AsRef<std::path::Path>, allocation: Allocation) -> Result<Self> {
        let bytes = std::fs::read(path.as_ref()).map_err(|e| {
            Error::Component(wasmtime::Error::msg(format!(
                "cannot read {}: {e}",
                path.as_ref().display()
            )))
        })?;
        Self::from_bytes(&bytes, allocation)
    }

    fn link(engine: Engine, component: &Component) -> Result<Self> {
        let mut linker = Linker::<HostState>::new(&engine);
        add_to_linker(&mut linker).map_err(Error::Component)?;
        link_wasi_clocks_and_random(&mut linker).map_err(Error::Component)?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(Error::Component)?;
        let pre = DlockPre::new(pre).map_err(Error::Component)?;
        start_epoch_ticker(&engine);
        Ok(LockComponent { pre })
    }

    pub(crate) fn pre(&self) -> &DlockPre<HostState> {
        &self.pre
    }

    /// The engine the component was compiled with.
    pub fn engine(&self) -> &Engine {
        self.pre.engine()
    }
}

/// Adds the `dlock:lock/redis` import, as this crate implements it, to the lock component's
/// linker.
fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    Dlock::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(linker, |s| s)
}

struct Table;
impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

fn link_wasi_clocks_and_random(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    io::poll::add_to_linker::<HostState, Table>(l, |s| &mut s.table)?;
    clocks::monotonic_clock::add_to_linker::<HostState, HasGuestClock>(l, HostState::clock)?;
    clocks::wall_clock::add_to_linker::<HostState, HasGuestClock>(l, HostState::clock)?;
    random::random::add_to_linker::<HostState, HasGuestRandom>(l, |s| GuestRandom(&mut s.random))?;
    Ok(())
}

fn engine_config(allocation: Allocation) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.max_wasm_stack(256 << 10);
    // Small linear memories with explicit bounds checks instead of 4 GiB reservations: the
    // pool then costs little address space per client.
    config.memory_reservation(MAX_MEMORY_BYTES as u64);
    config.memory_guard_size(64 << 10);
    config.memory_reservation_for_growth(0);
    if let Allocation::Pooling { max_clients } = allocation {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_clients)
            .total_core_instances(max_clients.saturating_mul(4))
            .total_memories(max_clients)
            .total_tables(max_clients.saturating_mul(4))
            .total_stacks(max_clients)
            .max_memory_size(MAX_MEMORY_BYTES)
            .max_core_instances_per_component(8)
            .max_tables_per_component(8)
            .max_memories_per_component(2)
            // Reset a freed slot's first pages with memset instead of returning them to the
            // kernel: the next client then starts without page faults.
            .linear_memory_keep_resident(256 << 10)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, which ends once
/// the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("dlock-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("cannot start the epoch ticker thread");
}
