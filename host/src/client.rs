//! Lock clients (one component instance each) and lock handles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::bindings::Dlock;
use crate::bindings::exports::dlock::lock::lock::LockOptions as WitLockOptions;
use crate::cleanup::ReleaseOnFailure;
use crate::component::LockComponent;
use crate::contract::MAX_DURATION_MS;
use crate::error::{Error, Result};
use crate::options::{HandleStatus, KeyState, LockInfo, LockOptions, millis};
use crate::redis::RedisCtx;
use crate::sandbox::deadline_after;
use crate::store::HostState;

/// Extra time a guest call gets on top of what its arguments allow.
const CALL_SLACK: Duration = Duration::from_secs(1);
/// Longest `wait_for_lock` wait: the same limit as every lock duration (about 31.7 years).
const MAX_WAIT: Duration = Duration::from_millis(MAX_DURATION_MS);

/// When [`Client::wait_for_lock`] gives up: a point in time, or a wait measured from the call.
///
/// A type of its own, so that a wait and a TTL (both durations) cannot be swapped silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(DeadlineKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeadlineKind {
    After(Duration),
    At(Instant),
}

impl Deadline {
    /// This long after the call starts.
    pub fn after(wait: Duration) -> Self {
        Deadline(DeadlineKind::After(wait))
    }

    /// At `instant` (already passed: one attempt).
    pub fn at(instant: Instant) -> Self {
        Deadline(DeadlineKind::At(instant))
    }

    /// How long is left from `now`.
    fn left(self, now: Instant) -> Duration {
        match self.0 {
            DeadlineKind::After(wait) => wait,
            DeadlineKind::At(at) => at.saturating_duration_since(now),
        }
    }
}

/// A lock client: one instance of the lock component, with its own store.
///
/// Creating one takes microseconds. Calls on one client (and on its handles) run one at a
/// time; use one client per concurrent task. A client and its handles are `Send + Sync`, and
/// their futures are `Send`.
///
/// Each guest call runs under a time budget derived from its arguments (the retry schedule,
/// the wait, and the Redis command timeout). A call that traps, runs past its budget, or whose
/// future is dropped before it completes leaves the client unusable ([`Error::Poisoned`]),
/// and the host then releases (compare-and-delete, in the background) the locks *that call*
/// may have taken with the bundled component's scripts; locks whose handles earlier calls
/// returned stay in Redis, and locks of other components expire with their TTL.
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
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
/// [`LockHandle::release`] to free it early. [`LockHandle::is_held`] and
/// [`LockHandle::info`] answer at once, from what the handle learnt at its last call, without
/// waiting for other calls on the client.
pub struct LockHandle {
    shared: Arc<Shared>,
    resource: ResourceAny,
    /// What the component said about this handle after its last call.
    info: StdMutex<LockInfo>,
}

impl std::fmt::Debug for LockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockHandle")
            .field("info", &self.info())
            .finish_non_exhaustive()
    }
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
        let release_on_failure = ReleaseOnFailure::arm(&state.redis);
        let Session {
            store: $store,
            api,
            client: $client,
            ..
        } = &mut *session;
        let $api = api.dlock_lock_lock();
        let $client = *$client;
        let outcome = $call.await;
        session.store.data_mut().sandbox.end_call();
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
        redis: RedisCtx,
        options: LockOptions,
    ) -> Result<Client> {
        let wit_options = WitLockOptions::try_from(&options)?;
        let command_timeout = redis.policy().command_timeout();
        let mut store = HostState::store(component.engine(), redis);
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
        store.data_mut().sandbox.end_call();
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
        self.handle(&mut s, handle).await
    }

    /// One attempt, no retry: `None` when someone else holds the lock.
    pub async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<LockHandle>> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let handle = guest_call!(s, budget, |store, api, client| api
            .client()
            .call_try_acquire(&mut *store, client, key, millis(ttl)))??;
        match handle {
            Some(handle) => Ok(Some(self.handle(&mut s, handle).await?)),
            None => Ok(None),
        }
    }

    /// Polls until the lock is acquired for `ttl` or `deadline` has passed (backoff capped at
    /// 1 s, never sleeping past the deadline, one last attempt at the deadline). A wait over
    /// 10^12 ms is [`Error::InvalidArgument`], whatever the component would make of it.
    pub async fn wait_for_lock(
        &self,
        key: &str,
        ttl: Duration,
        deadline: Deadline,
    ) -> Result<LockHandle> {
        let wait = deadline.left(Instant::now());
        if wait > MAX_WAIT {
            return Err(Error::InvalidArgument(format!(
                "a wait of {wait:?} is over the limit of {} ms",
                MAX_WAIT.as_millis()
            )));
        }
        let budget = wait.saturating_add(self.shared.single_call_budget());
        let mut s = self.shared.session().await?;
        let handle = guest_call!(s, budget, |store, api, client| api
            .client()
            .call_wait_for_lock(&mut *store, client, key, millis(wait), millis(ttl)))??;
        self.handle(&mut s, handle).await
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
    pub async fn key_state(&self, key: &str) -> Result<KeyState> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let state = guest_call!(s, budget, |store, api, client| api.client().call_key_state(
            &mut *store,
            client,
            key
        ))??;
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
        self.handle(&mut s, handle).await
    }

    /// The defaults the component itself documents (its `default-options`); for the bundled
    /// component they equal [`LockOptions::default`].
    pub async fn component_default_options(&self) -> Result<LockOptions> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let options = guest_call!(s, budget, |store, api, _client| api
            .call_default_options(&mut *store))?;
        Ok(options.into())
    }

    /// The handle of a resource the component just returned, with what it knows.
    async fn handle(&self, session: &mut Session, resource: ResourceAny) -> Result<LockHandle> {
        let info = self.shared.info(session, resource).await?;
        Ok(LockHandle {
            shared: self.shared.clone(),
            resource,
            info: StdMutex::new(info),
        })
    }
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

    /// What the component knows about the handle `resource`.
    async fn info(&self, session: &mut Session, resource: ResourceAny) -> Result<LockInfo> {
        let budget = self.single_call_budget();
        let info = guest_call!(session, budget, |store, api, _client| api
            .lock_handle()
            .call_info(&mut *store, resource))?;
        Ok(info.into())
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
    /// token (the handle is then lost). When the outcome is unknown (a timeout, a broken
    /// connection) the handle becomes [`crate::HandleStatus::Releasing`] and only `release`
    /// may be retried; a refused call leaves it as it was.
    pub async fn release(&self) -> Result<()> {
        let mut s = self.shared.session().await?;
        let budget = self.shared.single_call_budget();
        let resource = self.resource;
        let released = guest_call!(s, budget, |store, api, _client| api
            .lock_handle()
            .call_release(&mut *store, resource))?;
        match released {
            // Released is all that changed: no need to ask the component.
            Ok(()) => {
                self.info.lock().unwrap_or_else(|e| e.into_inner()).status = HandleStatus::Released
            }
            Err(_) => self.refresh(&mut s).await?,
        }
        Ok(released?)
    }

    /// Sets the lock's TTL to `ttl` from now if Redis still holds this handle's token; the
    /// handle's validity restarts from when the call was sent. Errors as for `release`;
    /// [`Error::InvalidArgument`] for a zero `ttl`. When the outcome is unknown, the handle's
    /// validity can only shrink.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let mut s = self.shared.session().await?;
        let budget = self.shared.single_call_budget();
        let resource = self.resource;
        let extended = guest_call!(s, budget, |store, api, _client| api
            .lock_handle()
            .call_extend(&mut *store, resource, millis(ttl)))?;
        self.refresh(&mut s).await?;
        Ok(extended?)
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
