//! Lock handles: what a client's acquire returns, and the calls made through it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tracing::{Instrument, field};
use wasmtime::component::ResourceAny;

use super::{GIVE_BACK_RETRY, Session, Shared};
use crate::bindings::exports::dlock::lock::lock::{Acquired, ReleaseOutcome as WitReleaseOutcome};
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::observe;
use crate::options::{HandleStatus, LockInfo, ReleaseOutcome, millis};

/// One acquired lock.
///
/// Dropping a handle does not release the lock: it stays in Redis until its TTL ends. Call
/// [`LockHandle::release`] to free it early. [`LockHandle::is_held`] and
/// [`LockHandle::info`] answer at once, from what the handle learnt at its last call, without
/// waiting for other calls on the client.
pub struct LockHandle {
    shared: Arc<Shared>,
    resource: ResourceAny,
    /// What the component said about this handle after its last call.
    info: StdMutex<LockInfo>,
    /// When the handle was made (acquired or attached), for the hold-time metric.
    made: Instant,
}

impl std::fmt::Debug for LockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockHandle")
            .field("info", &self.info())
            .finish_non_exhaustive()
    }
}

impl LockHandle {
    /// The handle the component just returned, with what it knew of it at the return.
    pub(super) fn new(shared: &Arc<Shared>, acquired: Acquired) -> LockHandle {
        LockHandle {
            shared: shared.clone(),
            resource: acquired.handle,
            info: StdMutex::new(acquired.info.into()),
            made: Instant::now(),
        }
    }

    /// Deletes the lock if Redis still holds this handle's token, and says what it found:
    /// [`ReleaseOutcome::Released`], or [`ReleaseOutcome::Expired`] (the key was gone) or
    /// [`ReleaseOutcome::TakenOver`] (another owner's token), which change nothing and leave
    /// the handle [`HandleStatus::Lost`]. Clients waiting on the key are signalled in the same
    /// atomic step. [`Error::NotHeld`], without a Redis call, if this handle released the lock
    /// already. When the outcome is unknown (a timeout, a broken connection; see
    /// [`Error::is_retryable`]) the handle becomes [`HandleStatus::Releasing`] and `release`
    /// may be retried: it deletes the key only while it holds the token, so retrying is safe.
    /// A refused call leaves the handle as it was.
    pub async fn release(&self) -> Result<ReleaseOutcome> {
        let span = tracing::info_span!(
            "dlock.release",
            dlock.key = self.info().key,
            dlock.outcome = field::Empty
        );
        async {
            let mut s = self.shared.session().await?;
            self.release_in(&mut s).await
        }
        .instrument(span)
        .await
    }

    /// Releases a lock nobody will use (its call was cancelled) on the client's session: a
    /// release whose outcome is unknown (Redis unreachable or slow) is tried again until it is
    /// done or the lease has run out, so that the lock is gone, one way or the other, before
    /// the client's next call runs.
    pub(super) async fn give_back(&self, s: &mut Session) {
        loop {
            match self.release_in(s).await {
                Err(e) if e.is_retryable() && Instant::now() < self.info().valid_until => {
                    tokio::time::sleep(GIVE_BACK_RETRY).await;
                }
                _ => return,
            }
        }
    }

    /// [`LockHandle::release`] on the client's session, which the caller holds.
    async fn release_in(&self, s: &mut Session) -> Result<ReleaseOutcome> {
        let budget = self.shared.single_call_budget();
        let resource = self.resource;
        let released = s
            .call(budget, Cancel::NEVER, async |store, api, _client| {
                api.lock_handle().call_release(&mut *store, resource).await
            })
            .await?;
        match released {
            // Released is all that changed: no need to ask the component.
            Ok(WitReleaseOutcome::Released) => {
                self.info.lock().unwrap_or_else(|e| e.into_inner()).status = HandleStatus::Released
            }
            _ => self.refresh(s).await?,
        }
        let released = released.map(ReleaseOutcome::from).map_err(Error::from);
        let outcome = match &released {
            Ok(outcome) => outcome.as_str(),
            Err(e) => observe::error_outcome(e),
        };
        let held = matches!(released, Ok(ReleaseOutcome::Released)).then(|| self.made.elapsed());
        observe::released(outcome, held);
        tracing::Span::current().record("dlock.outcome", outcome);
        released
    }

    /// Sets the lock's TTL to `ttl` from now if Redis still holds this handle's token; the
    /// handle's validity restarts from when the call was sent. [`Error::Expired`] when the key
    /// is gone, or the handle's validity is within the client's safety margin of its end (then
    /// without a Redis call); [`Error::TakenOver`] when the key holds another owner's token;
    /// the handle is then [`HandleStatus::Lost`] and every later `extend` fails the same way
    /// without a Redis call. [`Error::NotHeld`] after a release; [`Error::InvalidArgument`]
    /// for a zero `ttl`. When the outcome is unknown, the handle's validity can only shrink.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let span = tracing::info_span!(
            "dlock.extend",
            dlock.key = self.info().key,
            dlock.outcome = field::Empty
        );
        async {
            let mut s = self.shared.session().await?;
            let budget = self.shared.single_call_budget();
            let resource = self.resource;
            let extended = s
                .call(budget, Cancel::NEVER, async |store, api, _client| {
                    api.lock_handle()
                        .call_extend(&mut *store, resource, millis(ttl))
                        .await
                })
                .await?;
            self.refresh(&mut s).await?;
            let extended = extended.map_err(Error::from);
            let outcome = match &extended {
                Ok(()) => "extended",
                Err(e) => observe::error_outcome(e),
            };
            observe::extended(outcome);
            tracing::Span::current().record("dlock.outcome", outcome);
            extended
        }
        .instrument(span)
        .await
    }

    /// The Redis command timeout of the client's runtime: how long one Redis call of this
    /// handle may take.
    pub(crate) fn command_timeout(&self) -> Duration {
        self.shared.command_timeout
    }

    /// True while the handle holds the lock as far as it knows, without asking Redis: not
    /// released, not lost, and its validity (measured from when the acquire or last extend
    /// was sent, on the monotonic clock) has not run out. Answers at once.
    pub fn is_held(&self) -> bool {
        self.info().status == HandleStatus::Held
    }

    /// What the handle knows, as of now. Answers at once.
    pub fn info(&self) -> LockInfo {
        self.info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .seen_at(Instant::now())
    }

    /// Asks the component what it knows about this handle after a call.
    async fn refresh(&self, session: &mut Session) -> Result<()> {
        let info = self.shared.info(session, self.resource).await?;
        *self.info.lock().unwrap_or_else(|e| e.into_inner()) = info;
        Ok(())
    }
}

impl Drop for LockHandle {
    fn drop(&mut self) {
        self.shared
            .dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.resource);
        self.shared.has_dropped.store(true, Ordering::Release);
    }
}
