//! The component's WASI clocks: `wall-clock` and `monotonic-clock`, with every sleep cut short
//! at the deadline of the guest call in progress, or when the caller cancels it.
//!
//! wasmtime-wasi's own clocks would let a component sleep as long as it asks; here a sleep
//! never outlasts the call's time budget, so together with the epoch callback (which traps a
//! component that runs past the deadline) and the command timeout on `redis-eval`, every way a
//! guest call can take time is bounded without a timer around each call.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::async_trait;
use wasmtime_wasi::p2::bindings::clocks::{monotonic_clock, wall_clock};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::cancel::Cancel;

/// The view of a store that the clocks need.
pub(crate) struct GuestClock<'a> {
    pub(crate) table: &'a mut ResourceTable,
    /// When the guest call in progress must end.
    pub(crate) deadline: Option<Instant>,
    /// Whether the caller cancelled the guest call in progress.
    pub(crate) cancel: &'a Cancel,
}

/// Ties [`GuestClock`] to the linker.
pub(crate) struct HasGuestClock;

impl HasData for HasGuestClock {
    type Data<'a> = GuestClock<'a>;
}

/// The origin of the component's monotonic clock (the first time any component read it).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The instant of a reading of the component's monotonic clock (saturating far in the future).
pub(crate) fn instant_at(reading_ns: u64) -> Instant {
    let origin = origin();
    origin
        .checked_add(Duration::from_nanos(reading_ns))
        .unwrap_or_else(|| origin + Duration::from_secs(1 << 40))
}

/// The component's monotonic clock reading at `instant` (0 before its origin).
pub(crate) fn reading_at(instant: Instant) -> u64 {
    nanos(instant.saturating_duration_since(origin()))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A sleep until `until` (`None`: forever), or until the call is cancelled.
struct Sleep {
    until: Option<tokio::time::Instant>,
    cancel: Cancel,
}

#[async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        let until = self.until;
        let sleep = async move {
            match until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = self.cancel.cancelled() => {}
        }
    }
}

impl GuestClock<'_> {
    fn sleep(&mut self, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let wanted = Instant::now().checked_add(duration);
        let until = match (wanted, self.deadline) {
            (Some(wanted), Some(deadline)) => Some(wanted.min(deadline)),
            (wanted, deadline) => wanted.or(deadline),
        };
        let sleep = self.table.push(Sleep {
            until: until.map(tokio::time::Instant::from_std),
            cancel: self.cancel.clone(),
        })?;
        subscribe(self.table, sleep)
    }
}

impl monotonic_clock::Host for GuestClock<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(nanos(origin().elapsed()))
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let now = nanos(origin().elapsed());
        self.sleep(Duration::from_nanos(when.saturating_sub(now)))
    }

    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.sleep(Duration::from_nanos(duration))
    }
}

impl wall_clock::Host for GuestClock<'_> {
    fn now(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(wall_clock::Datetime {
            seconds: since_epoch.as_secs(),
            nanoseconds: since_epoch.subsec_nanos(),
        })
    }

    fn resolution(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        Ok(wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 1,
        })
    }
}
