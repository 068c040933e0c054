//! Counting semaphores: at most a limit of permits held at one key at once, each with a
//! lease, taken and given back through the same component as locks.

use std::time::Duration;

use super::{Client, Deadline, LockHandle, Take};
use crate::bindings::exports::dlock::lock::lock::Permits;
use crate::cancel::Cancel;
use crate::error::Result;

/// A counting semaphore: the key `key` of a [`Client`], at which at most `limit` permits are
/// held at once, by every client of the key together. Made by [`Client::semaphore`]; cheap,
/// holds nothing in Redis itself.
///
/// Each acquisition takes some of the permits for a lease and returns a [`LockHandle`] for
/// them: its [`release`](LockHandle::release) gives them back, its
/// [`extend`](LockHandle::extend) renews them, and [`LockHandle::keep_alive`] and
/// [`LockHandle::with_lock`] keep them as they keep a lock. Permits whose lease ends are
/// removed by the next acquisition. With fencing on, every acquisition gets the next value of
/// the semaphore's one counter ([`LockInfo::fence`](crate::LockInfo::fence)). Waits between
/// attempts are plain backoff: a release wakes no waiter.
///
/// Every client of one key must use the same limit: each acquisition counts against its own.
/// A semaphore needs one store (one Redis, Sentinel, or a Cluster): in quorum mode every call
/// fails with [`Error::InvalidArgument`](crate::Error::InvalidArgument).
#[derive(Debug)]
pub struct Semaphore<'a> {
    client: &'a Client,
    key: String,
    limit: u32,
}

/// What Redis says about a counting semaphore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SemaphoreState {
    /// The permits held (their lease has not ended), by every holder.
    pub held: u32,
    /// How long until the first of those leases ends; `None` when none is held.
    pub first_ends_in: Option<Duration>,
}

impl Client {
    /// The counting semaphore at `key` with `limit` permits (1 to
    /// [`MAX_PERMITS`](crate::contract::MAX_PERMITS)); the limit is checked by each call.
    pub fn semaphore(&self, key: &str, limit: u32) -> Semaphore<'_> {
        Semaphore {
            client: self,
            key: key.to_owned(),
            limit,
        }
    }
}

impl Semaphore<'_> {
    fn take(&self, count: u32) -> Take {
        Take::Permits(Permits {
            limit: self.limit,
            count,
        })
    }

    /// The key, as given to [`Client::semaphore`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The most permits held at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Takes `count` permits for `ttl`, retrying with backoff as the client's options say:
    /// [`Error::NotAcquired`](crate::Error::NotAcquired) when every attempt found too few
    /// free. Dropping the future cancels the call without harm to the client.
    pub async fn acquire(&self, count: u32, ttl: Duration) -> Result<LockHandle> {
        self.client
            .acquire_take(&self.key, self.take(count), ttl)
            .await
    }

    /// One attempt: `None` when too few permits are free.
    pub async fn try_acquire(&self, count: u32, ttl: Duration) -> Result<Option<LockHandle>> {
        self.client.try_take(&self.key, self.take(count), ttl).await
    }

    /// Polls until `count` permits are taken for `ttl` or `deadline` has passed, as
    /// [`Client::wait_for_lock`] does.
    pub async fn wait(&self, count: u32, ttl: Duration, deadline: Deadline) -> Result<LockHandle> {
        self.wait_or_cancel(count, ttl, deadline, std::future::pending())
            .await
    }

    /// [`Semaphore::wait`], cancelled when `cancel` completes, as
    /// [`Client::wait_for_lock_or_cancel`] is.
    pub async fn wait_or_cancel(
        &self,
        count: u32,
        ttl: Duration,
        deadline: Deadline,
        cancel: impl Future<Output = ()>,
    ) -> Result<LockHandle> {
        self.client
            .wait_take(&self.key, self.take(count), ttl, deadline, cancel)
            .await
    }

    /// How many permits are held, and when the first lease ends.
    pub async fn state(&self) -> Result<SemaphoreState> {
        let budget = self.client.shared.single_call_budget();
        let mut s = self.client.shared.session().await?;
        let state = s
            .call(budget, Cancel::NEVER, async |store, api, client| {
                api.client()
                    .call_semaphore_state(&mut *store, client, &self.key)
                    .await
            })
            .await??;
        Ok(SemaphoreState {
            held: state.held,
            first_ends_in: state.first_ends_in_ms.map(Duration::from_millis),
        })
    }
}
