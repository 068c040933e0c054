//! Acquires that may wait (`acquire`, `wait_for_lock` and their semaphore twins): run detached,
//! so that a caller who gives up cancels the call instead of tearing its store down.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LockHandle, Shared, Take};
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::options::millis;

/// An acquire that may wait.
#[derive(Clone, Copy, Debug)]
pub(super) enum Waiting {
    /// `acquire`, with its retries.
    Acquire,
    /// `wait_for_lock`, this long.
    Wait(Duration),
}

/// The call of [`Client::waiting`]: the handle, or why not, and how many attempts it made.
pub(super) type WaitingCall = Pin<Box<dyn Future<Output = (Result<LockHandle>, u64)> + Send>>;

/// A call into the component that outlives its caller's interest: dropped before it
/// completes, it is cancelled and runs to its end on the tokio runtime (where it gives back
/// any lock it took), so that its store is never left mid-call.
pub(super) struct Detached {
    call: Option<WaitingCall>,
    cancel: Cancel,
}

impl Detached {
    pub(super) fn new(call: WaitingCall, cancel: Cancel) -> Self {
        Detached {
            call: Some(call),
            cancel,
        }
    }

    /// Tells the call to wind down.
    pub(super) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Drives the call to its end.
    pub(super) async fn run(&mut self) -> (Result<LockHandle>, u64) {
        let Some(call) = self.call.as_mut() else {
            return (Err(Error::Cancelled), 0);
        };
        let done = call.await;
        self.call = None;
        done
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        self.cancel.cancel();
        crate::cleanup::spawn(async move {
            let _ = call.await;
        });
    }
}

/// The body of an acquire that may wait, owning all it needs (see [`Detached`]). A lock it
/// took when `cancel` had been set is released, and the call reports [`Error::Cancelled`].
pub(super) async fn run_waiting(
    shared: Arc<Shared>,
    op: Waiting,
    take: Take,
    key: String,
    ttl_ms: u64,
    budget: Duration,
    cancel: Cancel,
) -> (Result<LockHandle>, u64) {
    let mut s = match shared.session().await {
        Ok(s) => s,
        Err(e) => return (Err(e), 0),
    };
    if cancel.is_cancelled() {
        return (Err(Error::Cancelled), 0);
    }
    let acquired = s
        .call(budget, cancel.clone(), async |store, api, client| {
            let api = api.client();
            match (op, take) {
                (Waiting::Acquire, Take::Lock) => {
                    api.call_acquire(&mut *store, client, &key, ttl_ms).await
                }
                (Waiting::Wait(wait), Take::Lock) => {
                    let wait = millis(wait);
                    api.call_wait_for_lock(&mut *store, client, &key, wait, ttl_ms)
                        .await
                }
                (Waiting::Acquire, Take::Permits(p)) => {
                    api.call_acquire_permits(&mut *store, client, &key, p, ttl_ms)
                        .await
                }
                (Waiting::Wait(wait), Take::Permits(p)) => {
                    let wait = millis(wait);
                    api.call_wait_for_permits(&mut *store, client, &key, p, wait, ttl_ms)
                        .await
                }
            }
        })
        .await;
    let attempts = s.store.data().redis.acquire_attempts;
    let handle = match acquired.map(|r| r.map_err(Error::from)) {
        Ok(Ok(acquired)) => Ok(LockHandle::new(&shared, acquired)),
        Ok(Err(e)) | Err(e) => Err(e),
    };
    if !cancel.is_cancelled() {
        return (handle, attempts);
    }
    // Everything the cancelled call may hold is given back before the session is free, so
    // that no later call on the client runs while it is still held: the lock it was granted
    // (released through the component, which signals its waiters), and any its unanswered
    // attempts may have taken (their own clean-up may have failed). Every attempt was sent
    // before now: none of their leases outlasts now plus the TTL.
    let until = Instant::now() + Duration::from_millis(ttl_ms);
    let grants = s.store.data().redis.grants.take();
    if let Ok(handle) = handle {
        handle.give_back(&mut s).await;
    }
    crate::cleanup::give_back(&s.store.data().redis.link, grants, until).await;
    (Err(Error::Cancelled), attempts)
}
