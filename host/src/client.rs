//! Lock clients (one component instance each) and lock handles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use wasmtime::component::ResourceAny;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::Dlock;
use crate::engine::LockComponent;
use crate::error::{Error, Result};
use crate::grants::ReleaseOnFailure;
use crate::limits::MAX_TTL_MS;
use crate::redis_eval::RedisLink;
use crate::state::{HostState, deadline_after};
use crate::types::{LockInfo, LockOptions, LockState, millis};

/// Extra time a guest call gets on top of what its arguments allow.
const CALL_SLACK: Duration = Duration::from_secs(1);
/// Longest `wait_for_lock` timeout: the same limit as every lock duration (about 31.7 years).
const MAX_WAIT: Duration = Duration::from_millis(MAX_TTL_MS);

/// A lock client: one instance of the lock component, with its own store.
///
/// Creating one takes microseconds. Calls on one client (and on its handles) run one at a
/// time; use one client per concurrent task. A client and its handles are `Send + Sync`, and
/// their futures are `Send`.
///
/// Each guest call runs under a time budget derived from its arguments (the retry schedule,
/// the wait timeout, and the Redis command timeout). A call that traps, runs past its budget,
/// or whose future is dropped before it completes leaves the client unusable
/// ([`Error::Poisoned`]), and the host then releases (compare-and-delete, in the background)
/// every lock the bundled component may hold for this client; locks of other components expire
/// with their TTL.
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    session: Mutex<Session>,
    /// Handles dropped since the last call; their guest resources are dropped on the next one.
    dropped: StdMutex<Vec<ResourceAny>>,
    /// Set when `dropped` may be non-empty, so most calls skip its lock.
    has_dropped: AtomicBool,
    options: LockOptions,
    command_timeout: Duration,
}

struct Session {
    store: Store<HostState>,
    api: Dlock,
    client: ResourceAny,
    /// Set while a guest call runs; still set afterwards if it did not complete.
    poisoned: bool,
}

/// One acquired lock.
///
/// Dropping a handle does not release the lock: it stays in Redis until its TTL ends. Call
/// [`LockHandle::release`] to free it early.
pub struct LockHandle {
    shared: Arc<Shared>,
    resource: ResourceAny,
}

/// Runs one guest call on a session under a time budget, poisoning the session if the call
/// does not complete. `$f` gets the store, the lock interface's funcs and the client resource.
///
/// No timer wraps the call: the epoch callback traps a guest computing past the deadline, the
/// guest's sleeps end at the deadline (`clock.rs`), and each `redis-eval` has the command
/// timeout; so the call ends within the budget plus one command timeout.
macro_rules! guest_call {
    ($session:expr, $budget:expr, |$store:ident, $api:ident, $client:ident| $call:expr) => {{
        let budget: Duration = $budget;
        let session: &mut Session = &mut *$session;
        session.poisoned = true;
        let state = session.store.data_mut();
        state.begin_call(deadline_after(budget));
        let release_on_failure = ReleaseOnFailure::arm(&state.grants, &state.link);
        let Session {
            store: $store,
            api,
            client: $client,
            ..
        } = &mut *session;
        let $api = api.dlock_lock_lock();
        let $client = *$client;
        let outcome = $call.await;
        session.store.data_mut().end_call();
        match outcome {
            Ok(value) => {
                session.poisoned = false;
                release_on_failure.disarm();
                Ok(value)
            }
            Err(trap) => Err(Error::Trap(trap)),
        }
    }};
}

impl Client {
    pub(crate) async fn new(
        component: &LockComponent,
        link: Arc<RedisLink>,
        options: LockOptions,
    ) -> Result<Client> {
        let wit_options = options.to_wit()?;
        let command_timeout = link.policy.command_timeout;
        let max_compute_ticks = compute_ticks(link.policy.max_compute);
        let mut store = Store::new(component.engine(), HostState::new(link));
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            let now = Instant::now();
            if state.deadline.is_some_and(|deadline| now >= deadline) {
                return Err(wasmtime::Error::msg(
                    "the component ran past its time budget",
                ));
            }
            if state.compute.tick(now) > max_compute_ticks {
                return Err(wasmtime::Error::msg(
                    "the component computed too long without calling Redis or sleeping",
                ));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        // Instantiation runs the component's start functions, so it is bounded too.
        store.data_mut().begin_call(deadline_after(command_timeout));
        let api = component
            .pre()
            .instantiate_async(&mut store)
            .await
            .map_err(Error::Component)?;
        store.data_mut().begin_call(deadline_after(command_timeout));
        let client = api
            .dlock_lock_lock()
            .client()
            .call_create(&mut store, &wit_options)
            .await
            .map_err(Error::Trap)??;
        store.data_mut().end_call();
        Ok(Client {
            shared: Arc::new(Shared {
                session: Mutex::new(Session {
                    store,
                    api,
                    client,
                    poisoned: false,
                }),
                dropped: StdMutex::new(Vec::new()),
                has_dropped: AtomicBool::new(false),
                options,
                command_timeout,
            }),
        })
    }

    /// The options this client was created with.
    pub fn options(&self) -> &LockOptions {
        &self.shared.options
    }

    /// Acquires `key` for `ttl`, retrying with exponential backoff as the options say.
    /// [`Error::NotAcquired`] when every attempt found the lock held.
    pub async fn acquire(&self, key: &str, ttl: Duration) -> Result<LockHandle> {
        let budget = self.shared.acquire_budget();
        let mut s = self.shared.session().await?;
        let handle = guest_call!(s, budget, |store, api, client| api.client().call_acquire(
            &mut *store,
            client,
            key,
            millis(ttl)
        ))??;
        Ok(self.handle(handle))
    }

    /// One attempt, no retry: `None` when someone else holds the lock.
    pub async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<LockHandle>> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let handle = guest_call!(s, budget, |store, api, client| api
            .client()
            .call_try_acquire(&mut *store, client, key, millis(ttl)))??;
        Ok(handle.map(|h| self.handle(h)))
    }

    /// Polls until the lock is acquired or `timeout` has passed (backoff capped at 1 s, never
    /// sleeping past the deadline, one last attempt at the deadline). A timeout over 10^12 ms
    /// is [`Error::InvalidArgument`], whatever the component would make of it.
    pub async fn wait_for_lock(
        &self,
        key: &str,
        timeout: Duration,
        ttl: Duration,
    ) -> Result<LockHandle> {
        if timeout > MAX_WAIT {
            return Err(Error::InvalidArgument(format!(
                "the wait timeout of {timeout:?} is over the limit of {} ms",
                MAX_WAIT.as_millis()
            )));
        }
        let budget = timeout.saturating_add(self.shared.single_call_budget());
        let mut s = self.shared.session().await?;
        let handle = guest_call!(s, budget, |store, api, client| api
            .client()
            .call_wait_for_lock(&mut *store, client, key, millis(timeout), millis(ttl)))??;
        Ok(self.handle(handle))
    }

    /// True when the key exists in Redis (held by anyone).
    pub async fn is_locked(&self, key: &str) -> Result<bool> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        Ok(guest_call!(s, budget, |store, api, client| api
            .client()
            .call_is_locked(&mut *store, client, key))??)
    }

    /// The key's state in Redis and the time left on its lease.
    pub async fn lock_state(&self, key: &str) -> Result<LockState> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let state = guest_call!(s, budget, |store, api, client| api
            .client()
            .call_lock_state(&mut *store, client, key))??;
        Ok(state.into())
    }

    /// A handle for a lock acquired elsewhere with `token` (another process, an earlier run).
    /// No Redis call; its `release` and `extend` succeed only if the key holds `token`, and
    /// `is_held` stays false until a successful `extend` tells it the lease.
    pub async fn attach(&self, key: &str, token: &str) -> Result<LockHandle> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let handle = guest_call!(s, budget, |store, api, client| api.client().call_attach(
            &mut *store,
            client,
            key,
            token
        ))??;
        Ok(self.handle(handle))
    }

    /// The defaults the component itself documents (its `default-options`); for the bundled
    /// component they equal [`LockOptions::default`].
    pub async fn component_default_options(&self) -> Result<LockOptions> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let options = guest_call!(s, budget, |store, api, _client| api
            .call_default_options(&mut *store))?;
        Ok(LockOptions::from_wit(options))
    }

    fn handle(&self, resource: ResourceAny) -> LockHandle {
        LockHandle {
            shared: self.shared.clone(),
            resource,
        }
    }
}

/// `limit` in epoch ticks (at least one).
fn compute_ticks(limit: Duration) -> u32 {
    let ticks = limit.as_nanos() / crate::engine::EPOCH_TICK.as_nanos();
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

impl Shared {
    /// The session, once it is free, with dropped handles cleaned up.
    async fn session(&self) -> Result<MutexGuard<'_, Session>> {
        let mut session = self.session.lock().await;
        if session.poisoned {
            return Err(Error::Poisoned);
        }
        if !self.has_dropped.swap(false, Ordering::Acquire) {
            return Ok(session);
        }
        let dropped = std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|e| e.into_inner()));
        let budget = self.single_call_budget();
        for resource in dropped {
            guest_call!(session, budget, |store, _api, _client| resource
                .resource_drop_async(&mut *store))?;
        }
        Ok(session)
    }

    /// A call that makes a few Redis calls at most (load, eval, cleanup).
    fn single_call_budget(&self) -> Duration {
        self.command_timeout
            .saturating_mul(3)
            .saturating_add(CALL_SLACK)
    }

    /// Each attempt may make two Redis calls: the acquire, and giving back a grant that came
    /// after its lease ended.
    fn acquire_budget(&self) -> Duration {
        let attempts = self.options.retry_count.saturating_add(2);
        self.command_timeout
            .saturating_mul(attempts)
            .saturating_mul(2)
            .saturating_add(self.options.total_backoff())
            .saturating_add(self.single_call_budget())
    }
}

impl LockHandle {
    /// Deletes the lock if Redis still holds this handle's token. [`Error::NotHeld`] if the
    /// handle was released or lost before (no Redis call), or if the key no longer holds the
    /// token (the handle is then lost). A Redis error leaves the handle as it was, so the
    /// release can be retried.
    pub async fn release(&self) -> Result<()> {
        let mut s = self.shared.session().await?;
        let budget = self.shared.single_call_budget();
        let resource = self.resource;
        Ok(guest_call!(s, budget, |store, api, _client| api
            .lock_handle()
            .call_release(&mut *store, resource))??)
    }

    /// Sets the lock's TTL to `ttl` from now if Redis still holds this handle's token; the
    /// handle's validity restarts from when the call was sent. Errors as for `release`;
    /// [`Error::InvalidArgument`] for a zero `ttl`.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let mut s = self.shared.session().await?;
        let budget = self.shared.single_call_budget();
        let resource = self.resource;
        Ok(guest_call!(s, budget, |store, api, _client| api
            .lock_handle()
            .call_extend(&mut *store, resource, millis(ttl)))??)
    }

    /// True while the handle holds the lock as far as it knows, without asking Redis: not
    /// released, not lost, and its validity (measured from when the acquire or last extend
    /// was sent, on the monotonic clock) has not run out.
    pub async fn is_held(&self) -> Result<bool> {
        let mut s = self.shared.session().await?;
        let budget = self.shared.single_call_budget();
        let resource = self.resource;
        guest_call!(s, budget, |store, api, _client| api
            .lock_handle()
            .call_is_held(&mut *store, resource))
    }

    /// A snapshot of what the handle knows.
    pub async fn info(&self) -> Result<LockInfo> {
        let mut s = self.shared.session().await?;
        let budget = self.shared.single_call_budget();
        let resource = self.resource;
        let info = guest_call!(s, budget, |store, api, _client| api
            .lock_handle()
            .call_info(&mut *store, resource))?;
        Ok(info.into())
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
