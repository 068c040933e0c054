//! The lock component compiled and linked: the engine it needs, the linker that gives it Redis
//! and a few WASI interfaces, and its `InstancePre`.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{Config, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::p2::bindings::{clocks, io, random};

use crate::bindings::DlockPre;
use crate::cache;
use crate::clock::HasGuestClock;
use crate::error::{Error, Result};
use crate::random::{GuestRandom, HasGuestRandom};
use crate::sandbox::MAX_MEMORY_BYTES;
use crate::store::HostState;

/// How often the epoch ticker advances: how finely guest time budgets are checked.
const EPOCH_TICK: Duration = Duration::from_millis(10);

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

impl Allocation {
    /// Largest pool ([`Allocation::Pooling`]) whose clients' linear memories get 4 GiB
    /// reservations, which spare every memory access of the component its bounds check (about
    /// 6 % fewer instructions per lock operation): 4096 clients reserve 16 TiB of the 128 TiB
    /// of address space a Linux x86-64 process has. Larger pools check bounds instead, within
    /// 16 MiB reservations. (Tools that cap address space, such as valgrind, need a smaller
    /// pool.)
    pub const ELIDED_CHECKS_CLIENTS: u32 = 4096;
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

impl std::fmt::Debug for LockComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockComponent").finish_non_exhaustive()
    }
}

impl LockComponent {
    /// The component bundled with this crate ([`crate::bundled::COMPONENT`]) with the default
    /// allocation, compiled once per process: later calls return the same component.
    /// Compiling takes tens of milliseconds; [`LockComponent::bundled_cached`] keeps the
    /// compiled code on disk.
    pub fn bundled() -> Result<Self> {
        static BUNDLED: OnceLock<std::result::Result<LockComponent, String>> = OnceLock::new();
        shared(&BUNDLED, || {
            Self::from_bytes(crate::bundled::COMPONENT, Allocation::default())
        })
    }

    /// Like [`LockComponent::bundled`], but loads the compiled component from `cache_dir` when
    /// an intact artifact of the same component and engine configuration is there (one this
    /// user wrote and no one else can have modified), and otherwise compiles it and stores it
    /// there. A corrupt, truncated or foreign artifact is recompiled, never loaded. The first
    /// call in a process decides the directory; later calls return the same component.
    pub fn bundled_cached(cache_dir: &Path) -> Result<Self> {
        static CACHED: OnceLock<std::result::Result<LockComponent, String>> = OnceLock::new();
        shared(&CACHED, || {
            let engine =
                Engine::new(&Self::config(Allocation::default())).map_err(Error::Component)?;
            let component = cache::load_or_compile(&engine, crate::bundled::COMPONENT, cache_dir)
                .map_err(Error::Component)?;
            Self::link(&engine, &component)
        })
    }

    /// Compiles a component (a `wasm32-wasip2` component binary) that implements the `dlock`
    /// world, on an engine of its own.
    pub fn from_bytes(bytes: &[u8], allocation: Allocation) -> Result<Self> {
        let engine = Engine::new(&Self::config(allocation)).map_err(Error::Component)?;
        Self::new(&engine, bytes)
    }

    /// Reads and compiles a component file; see [`LockComponent::from_bytes`].
    pub fn from_file(path: impl AsRef<Path>, allocation: Allocation) -> Result<Self> {
        let bytes = std::fs::read(path.as_ref()).map_err(|e| {
            Error::Component(wasmtime::Error::msg(format!(
                "cannot read {}: {e}",
                path.as_ref().display()
            )))
        })?;
        Self::from_bytes(&bytes, allocation)
    }

    /// Compiles a component that implements the `dlock` world on an engine you share with the
    /// rest of your host.
    ///
    /// The engine needs epoch interruption (`Config::epoch_interruption(true)`): every call
    /// into the component runs under an epoch deadline, and this crate advances the engine's
    /// epoch every 10 ms on a thread of its own (one per engine, ending with the engine; more
    /// frequent ticks of your own do no harm). [`LockComponent::config`] is the configuration
    /// this crate uses for its own engines.
    pub fn new(engine: &Engine, bytes: &[u8]) -> Result<Self> {
        let component = Component::new(engine, bytes).map_err(Error::Component)?;
        Self::link(engine, &component)
    }

    /// The engine configuration of this crate's own engines: epoch interruption, a 256 KiB
    /// wasm stack, linear memories of at most 16 MiB, and with [`Allocation::Pooling`] a pool
    /// sized for that many clients. A pool of up to [`Allocation::ELIDED_CHECKS_CLIENTS`]
    /// clients reserves 4 GiB of address space (none of it memory) per client so that the compiled code needs
    /// no bounds checks; a larger pool, and [`Allocation::OnDemand`], reserve only the 16 MiB
    /// and check bounds.
    pub fn config(allocation: Allocation) -> Config {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(256 << 10);
        match allocation {
            Allocation::Pooling { max_clients }
                if max_clients <= Allocation::ELIDED_CHECKS_CLIENTS =>
            {
                config.memory_reservation(1 << 32);
                config.memory_guard_size(32 << 20);
            }
            _ => {
                config.memory_reservation(MAX_MEMORY_BYTES as u64);
                config.memory_guard_size(64 << 10);
            }
        }
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
                // Reset a freed slot's first pages with memset instead of returning them to
                // the kernel: the next client then starts without page faults.
                .linear_memory_keep_resident(256 << 10)
                .table_keep_resident(64 << 10)
                .async_stack_keep_resident(64 << 10);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }

    fn link(engine: &Engine, component: &Component) -> Result<Self> {
        let mut linker = Linker::<HostState>::new(engine);
        crate::redis::add_to_linker(&mut linker).map_err(Error::Component)?;
        link_wasi_clocks_random_and_poll(&mut linker).map_err(Error::Component)?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(Error::Component)?;
        let pre = DlockPre::new(pre).map_err(Error::Component)?;
        start_epoch_ticker(engine);
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

/// The component `make` builds, once per process per `cell`.
fn shared(
    cell: &OnceLock<std::result::Result<LockComponent, String>>,
    make: impl FnOnce() -> Result<LockComponent>,
) -> Result<LockComponent> {
    cell.get_or_init(|| make().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::Component(wasmtime::Error::msg(e)))
}

struct Table;
impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

fn link_wasi_clocks_random_and_poll(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    io::poll::add_to_linker::<HostState, Table>(l, |s| &mut s.table)?;
    clocks::monotonic_clock::add_to_linker::<HostState, HasGuestClock>(l, HostState::clock)?;
    clocks::wall_clock::add_to_linker::<HostState, HasGuestClock>(l, HostState::clock)?;
    random::random::add_to_linker::<HostState, HasGuestRandom>(l, |s| GuestRandom(&mut s.random))?;
    Ok(())
}

impl LockComponent {
    /// Advances `engine`'s epoch every 10 ms on a thread of its own, which ends once the engine
    /// is dropped; one thread per engine, however often it is asked. [`LockComponent::new`]
    /// does this for its engine; an engine that runs only composed plugins (which hold the
    /// lock logic themselves) needs it for their stores' epoch deadlines to fire at all.
    pub fn tick_epochs(engine: &Engine) {
        start_epoch_ticker(engine);
    }
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] on a thread of its own, which ends once the
/// engine is dropped. One thread per engine, however many components it compiles.
fn start_epoch_ticker(engine: &Engine) {
    static TICKED: Mutex<Vec<EngineWeak>> = Mutex::new(Vec::new());
    let mut ticked = TICKED.lock().unwrap_or_else(|e| e.into_inner());
    ticked.retain(|weak| weak.upgrade().is_some());
    if ticked
        .iter()
        .filter_map(EngineWeak::upgrade)
        .any(|e| Engine::same(&e, engine))
    {
        return;
    }
    ticked.push(engine.weak());
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
