//! The watchdog: a held lock kept alive while work runs, with a signal when it cannot be kept,
//! so that the work stops before the lease ends, not after.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval_at, sleep_until};

use crate::client::{Client, LockHandle, Semaphore};
use crate::error::{Error, Lost, Result};
use crate::observe;
use crate::options::{HandleStatus, ReleaseOutcome};

/// How a [`KeepAlive`] keeps its lock: [`KeepAliveOptions::new`] with the TTL, then the
/// `with_*` methods.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeepAliveOptions {
    /// The TTL every extend sets.
    pub ttl: Duration,
    /// How often the lock is extended. Default a third of the TTL (at least 1 ms).
    pub period: Duration,
    /// The lock counts as lost ([`Lost::RunningOut`]) when no extend has renewed it and this
    /// little of its validity is left: the time the work has to stop. Default a quarter of the
    /// TTL.
    pub stop_margin: Duration,
    /// Keep the lock at most this long from when keeping it alive started; then it counts as
    /// lost ([`Lost::MaxHold`]) while its lease is still valid. Default none.
    pub max_hold: Option<Duration>,
}

impl KeepAliveOptions {
    /// Extends to `ttl` every `ttl / 3`, gives up when a quarter of `ttl` is left unrenewed,
    /// with no cap on the hold.
    pub fn new(ttl: Duration) -> Self {
        KeepAliveOptions {
            ttl,
            period: (ttl / 3).max(Duration::from_millis(1)),
            stop_margin: ttl / 4,
            max_hold: None,
        }
    }

    /// See [`KeepAliveOptions::period`].
    pub fn with_period(mut self, period: Duration) -> Self {
        self.period = period.max(Duration::from_millis(1));
        self
    }

    /// See [`KeepAliveOptions::stop_margin`].
    pub fn with_stop_margin(mut self, margin: Duration) -> Self {
        self.stop_margin = margin;
        self
    }

    /// See [`KeepAliveOptions::max_hold`].
    pub fn with_max_hold(mut self, max_hold: Option<Duration>) -> Self {
        self.max_hold = max_hold;
        self
    }
}

/// The lost-lock signal of a [`KeepAlive`]: [`LostSignal::lost`] completes once the lock is
/// lost. Cheap to clone and `Send`: hand it to the tasks doing the work, and have them stop
/// (select on it) before the lease ends.
#[derive(Clone, Debug)]
pub struct LostSignal(watch::Receiver<Option<Lost>>);

impl LostSignal {
    /// Completes with the reason once the lock is lost; never while it is kept, nor after
    /// keeping it alive stopped without a loss.
    pub async fn lost(&self) -> Lost {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(lost) => lost.clone().unwrap_or(Lost::RunningOut),
            Err(_stopped) => std::future::pending().await,
        }
    }

    /// Why the lock was lost, if it was.
    pub fn get(&self) -> Option<Lost> {
        self.0.borrow().clone()
    }
}

/// A lock kept alive by a background task (on the tokio runtime): extended every period, and
/// given up, with its [`LostSignal`] fired, when it cannot be kept (see [`Lost`]). After a
/// loss no further extend is sent.
///
/// [`KeepAlive::release`] stops it and releases the lock; [`KeepAlive::stop`] stops it and
/// gives the handle back. An extend in flight always runs to its end first, so that nothing
/// races the release. Dropping a `KeepAlive` stops it too, and the lock then expires with its
/// TTL (dropping is not releasing).
#[derive(Debug)]
pub struct KeepAlive {
    handle: Arc<LockHandle>,
    lost: LostSignal,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl LockHandle {
    /// Keeps this lock alive in the background as `options` say (see [`KeepAlive`]). Needs a
    /// tokio runtime.
    pub fn keep_alive(self, options: KeepAliveOptions) -> KeepAlive {
        let handle = Arc::new(self);
        let (lost_tx, lost_rx) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(watchdog(handle.clone(), options, lost_tx, stop_rx));
        KeepAlive {
            handle,
            lost: LostSignal(lost_rx),
            stop,
            task: Some(task),
        }
    }
}

impl KeepAlive {
    /// The kept lock (for `info`, `is_held`).
    pub fn handle(&self) -> &LockHandle {
        &self.handle
    }

    /// The lost-lock signal, to hand to the work.
    pub fn lost_signal(&self) -> LostSignal {
        self.lost.clone()
    }

    /// Completes once the lock is lost (see [`LostSignal::lost`]).
    pub async fn lost(&self) -> Lost {
        self.lost.lost().await
    }

    /// When the lock's validity ends, as last renewed, on this process's monotonic clock.
    pub fn valid_until(&self) -> Instant {
        self.handle.info().valid_until
    }

    /// Stops keeping the lock alive (after an extend in flight) and gives the handle back.
    pub async fn stop(mut self) -> LockHandle {
        self.halt().await;
        let handle = self.handle.clone();
        drop(self);
        match Arc::try_unwrap(handle) {
            Ok(handle) => handle,
            Err(_) => unreachable!("the watchdog task, the only other owner, has ended"),
        }
    }

    /// Stops keeping the lock alive (after an extend in flight), then releases it.
    pub async fn release(mut self) -> Result<ReleaseOutcome> {
        self.halt().await;
        self.handle.release().await
    }

    async fn halt(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// An extend in flight; the watchdog goes on while it runs.
type Extending<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Extends `handle` every period until stopped, and fires `lost` when it cannot be kept.
async fn watchdog(
    handle: Arc<LockHandle>,
    options: KeepAliveOptions,
    lost: watch::Sender<Option<Lost>>,
    mut stop: watch::Receiver<bool>,
) {
    let now = tokio::time::Instant::now();
    let cap = options.max_hold.and_then(|cap| now.checked_add(cap));
    let mut ticks = interval_at(now + options.period, options.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut valid_until = tokio::time::Instant::from_std(handle.info().valid_until);
    let mut extending: Option<Extending<'_>> = None;
    let mut stopping = false;
    let give_up = |why: Lost| {
        observe::lost(why.reason());
        tracing::info!(key = handle.info().key, "{why}");
        let _ = lost.send(Some(why));
    };
    loop {
        let keeping = !stopping && lost.borrow().is_none();
        if !keeping && extending.is_none() {
            return;
        }
        let stop_by = valid_until
            .checked_sub(options.stop_margin)
            .unwrap_or(valid_until);
        tokio::select! {
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow();
            }
            _ = ticks.tick(), if keeping && extending.is_none() => {
                extending = Some(Box::pin(handle.extend(options.ttl)));
            }
            extended = async { extending.as_mut().expect("guarded").await }, if extending.is_some() => {
                extending = None;
                if !keeping {
                    continue;
                }
                // Every outcome can move the handle's validity: a success renews it, and an
                // unknown one (the extend may have set a shorter TTL than was left) shortens
                // it. Each decision below uses it as the component now counts it.
                let info = handle.info();
                valid_until = tokio::time::Instant::from_std(info.valid_until);
                match extended {
                    Ok(()) => {
                        if info.status != HandleStatus::Held {
                            give_up(Lost::RunningOut);
                        }
                    }
                    Err(Error::Expired) => give_up(Lost::Expired),
                    Err(Error::TakenOver) => give_up(Lost::TakenOver),
                    Err(e) if valid_until.saturating_duration_since(tokio::time::Instant::now())
                        > options.period + handle.command_timeout() =>
                    {
                        let left = valid_until.saturating_duration_since(tokio::time::Instant::now());
                        tracing::warn!(
                            key = handle.info().key,
                            "could not extend the lock ({e}); {} of validity left, will retry",
                            humanize(left)
                        );
                    }
                    Err(e) => give_up(Lost::NotKept(e.to_string())),
                }
            }
            _ = sleep_until(stop_by), if keeping => give_up(Lost::RunningOut),
            _ = sleep_until(cap.unwrap_or(now)), if keeping && cap.is_some() => give_up(Lost::MaxHold),
        }
    }
}

/// A duration in whole milliseconds, seconds or minutes, for messages.
fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        format!("{ms}ms")
    } else if ms < 600_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

impl Client {
    /// Takes `key` (with [`Client::acquire`]), runs `work` while keeping the lock alive as
    /// `options` say, then releases the lock.
    ///
    /// `work` gets the lost-lock signal, to hand to tasks it spawns. If the lock cannot be kept
    /// (see [`Lost`]) before `work` completes, `work` is dropped (it stops at its next await),
    /// the lock is released, and the result is [`Error::LockLost`]: the work never runs on past
    /// the point where the lock was found lost or running out. Otherwise the result is
    /// `work`'s output; a failure to release it then is not reported (the lock expires with
    /// its TTL; [`KeepAlive::release`] reports it).
    pub async fn with_lock<T, F, W>(
        &self,
        key: &str,
        options: KeepAliveOptions,
        work: W,
    ) -> Result<T>
    where
        W: FnOnce(LostSignal) -> F,
        F: Future<Output = T>,
    {
        let held = self.acquire(key, options.ttl).await?;
        work_while_kept(held, options, work).await
    }
}

impl Semaphore<'_> {
    /// Takes `count` permits (with [`Semaphore::acquire`]), runs `work` while keeping them
    /// alive as `options` say, then gives them back: [`Client::with_lock`] for permits.
    pub async fn with_permits<T, F, W>(
        &self,
        count: u32,
        options: KeepAliveOptions,
        work: W,
    ) -> Result<T>
    where
        W: FnOnce(LostSignal) -> F,
        F: Future<Output = T>,
    {
        let held = self.acquire(count, options.ttl).await?;
        work_while_kept(held, options, work).await
    }
}

/// Runs `work` while `held` is kept alive, stopping it when the lease is lost, then releases.
async fn work_while_kept<T, F, W>(held: LockHandle, options: KeepAliveOptions, work: W) -> Result<T>
where
    W: FnOnce(LostSignal) -> F,
    F: Future<Output = T>,
{
    let kept = held.keep_alive(options);
    let work = work(kept.lost_signal());
    let outcome = tokio::select! {
        done = work => Ok(done),
        lost = kept.lost() => Err(Error::LockLost(lost)),
    };
    let _ = kept.release().await;
    outcome
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::KeepAliveOptions;

    #[test]
    fn the_defaults_extend_thrice_per_ttl_and_stop_a_quarter_before_the_end() {
        let o = KeepAliveOptions::new(Duration::from_secs(30));
        assert_eq!(o.period, Duration::from_secs(10));
        assert_eq!(o.stop_margin, Duration::from_millis(7500));
        assert_eq!(
            KeepAliveOptions::new(Duration::from_millis(1)).period,
            Duration::from_millis(1)
        );
    }
}
