//! Lock clients: one component instance each, its session and the calls into it; their
//! handles are in `client/handle.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use tracing::{Instrument, field};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::bindings::Dlock;
use crate::bindings::exports::dlock::lock::lock::{Guest, LockOptions as WitLockOptions, Permits};
use crate::cancel::Cancel;
use crate::cleanup::ReleaseOnFailure;
use crate::component::LockComponent;
use crate::contract::MAX_DURATION_MS;
use crate::error::{Error, Result};
use crate::observe;
use crate::options::{KeyState, LockInfo, LockOptions, millis};
use crate::redis::RedisCtx;
use crate::sandbox::deadline_after;
use crate::store::HostState;

/// Extra time a guest call gets on top of what its arguments allow.
const CALL_SLACK: Duration = Duration::from_secs(1);
/// How long a cancelled call waits before it tries again to give back a lock it took.
const GIVE_BACK_RETRY: Duration = Duration::from_millis(50);
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
/// the wait, and the Redis command timeout).
///
/// Waits can be cancelled: dropping the future of [`Client::acquire`] or
/// [`Client::wait_for_lock`] (or completing the cancellation given to
/// [`Client::wait_for_lock_or_cancel`]) cancels the call: it winds down in the background
/// (the component's pause ends at once and it returns `cancelled`; a lock it took in that
/// instant is released, the release tried again while Redis cannot be reached, until the
/// lease ends) and the client stays usable. The client's next call runs only after that, so
/// it never finds the cancelled call's lock in its way. The call winds down on the
/// tokio runtime the future was dropped in, or on a thread of its own when it was dropped
/// outside any runtime's context.
///
/// A call that traps, runs past its budget, or (for the other calls, which make one Redis call
/// each) whose future is dropped before it completes leaves the client unusable
/// ([`Error::Poisoned`]), and the host then releases (compare-and-delete, in the background,
/// as above) the locks *that call* may have taken with the bundled component's scripts; locks
/// whose handles earlier calls returned stay in Redis, and locks of other components expire
/// with their TTL. Nothing runs in the background once the runtime whose connections the
/// client uses has shut down: a call in flight then leaves its lock to expire with its TTL.
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

impl Session {
    /// Runs one guest call under a time budget, poisoning the session if the call does not
    /// complete; `cancel` may cancel it. `call` gets the store, the lock interface's funcs and
    /// the client resource.
    ///
    /// No timer wraps the call: the epoch callback traps a guest computing past the deadline,
    /// the guest's sleeps end at the deadline (`clock.rs`), and each `redis-eval` has the
    /// command timeout; so the call ends within the budget plus one command timeout.
    async fn call<T>(
        &mut self,
        budget: Duration,
        cancel: Cancel,
        call: impl AsyncFnOnce(&mut Store<HostState>, &Guest, ResourceAny) -> wasmtime::Result<T>,
    ) -> Result<T> {
        self.poisoned = true;
        let state = self.store.data_mut();
        state.begin_call(deadline_after(budget), cancel);
        let release_on_failure = ReleaseOnFailure::arm(&state.redis);
        let outcome = call(&mut self.store, self.api.dlock_lock_lock(), self.client).await;
        self.store.data_mut().sandbox.end_call();
        let value = outcome.map_err(Error::Trap)?;
        self.poisoned = false;
        release_on_failure.disarm();
        Ok(value)
    }
}

mod handle;
mod semaphore;
mod waiting;
pub use handle::LockHandle;
pub use semaphore::{Semaphore, SemaphoreState};
use waiting::{Detached, Waiting, run_waiting};

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
        store
            .data_mut()
            .begin_call(deadline_after(command_timeout), Cancel::NEVER);
        let api = component
            .pre()
            .instantiate_async(&mut store)
            .await
            .map_err(Error::Component)?;
        store
            .data_mut()
            .begin_call(deadline_after(command_timeout), Cancel::NEVER);
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
    /// [`Error::NotAcquired`] when every attempt found the lock held. Dropping the future
    /// cancels the call without harm to the client (see [`Client`]).
    pub async fn acquire(&self, key: &str, ttl: Duration) -> Result<LockHandle> {
        self.acquire_take(key, Take::Lock, ttl).await
    }

    /// [`Client::acquire`] of `take`.
    pub(crate) async fn acquire_take(
        &self,
        key: &str,
        take: Take,
        ttl: Duration,
    ) -> Result<LockHandle> {
        let budget = self.shared.acquire_budget();
        let span = tracing::info_span!(
            "dlock.acquire",
            dlock.key = key,
            dlock.outcome = field::Empty
        );
        self.waiting(
            Waiting::Acquire,
            take,
            key,
            ttl,
            budget,
            std::future::pending(),
        )
        .instrument(span)
        .await
    }

    /// One attempt, no retry: `None` when someone else holds the lock.
    pub async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<LockHandle>> {
        self.try_take(key, Take::Lock, ttl).await
    }

    /// One attempt at `take`: `None` when the key is held (too few permits free).
    pub(crate) async fn try_take(
        &self,
        key: &str,
        take: Take,
        ttl: Duration,
    ) -> Result<Option<LockHandle>> {
        let span = tracing::info_span!(
            "dlock.try_acquire",
            dlock.key = key,
            dlock.outcome = field::Empty
        );
        async {
            let started = Instant::now();
            let budget = self.shared.single_call_budget();
            let mut s = self.shared.session().await?;
            let ttl_ms = millis(ttl);
            let handle = s
                .call(
                    budget,
                    Cancel::NEVER,
                    async |store, api, client| match take {
                        Take::Lock => {
                            api.client()
                                .call_try_acquire(&mut *store, client, key, ttl_ms)
                                .await
                        }
                        Take::Permits(permits) => {
                            api.client()
                                .call_try_acquire_permits(&mut *store, client, key, permits, ttl_ms)
                                .await
                        }
                    },
                )
                .await;
            let attempts = s.store.data().redis.acquire_attempts;
            let handle = match handle.map(|r| r.map_err(Error::from)) {
                Ok(Ok(Some(handle))) => Ok(Some(LockHandle::new(&self.shared, handle))),
                Ok(Ok(None)) => Ok(None),
                Ok(Err(e)) | Err(e) => Err(e),
            };
            let outcome = match &handle {
                Ok(Some(_)) => "acquired",
                Ok(None) => "busy",
                Err(e) => observe::error_outcome(e),
            };
            observe::acquired("try_acquire", outcome, started.elapsed(), attempts);
            tracing::Span::current().record("dlock.outcome", outcome);
            handle
        }
        .instrument(span)
        .await
    }

    /// Waits until the lock is acquired for `ttl` or `deadline` has passed (backoff capped at
    /// 1 s, never sleeping past the deadline, one last attempt at the deadline); with
    /// [`crate::WakeOnRelease`] other than `Never` (the default) each wait ends as soon as the
    /// holder releases. A wait over 10^12 ms is [`Error::InvalidArgument`], whatever the
    /// component would make of it. Dropping the future cancels the wait without harm to the
    /// client (see [`Client`]).
    pub async fn wait_for_lock(
        &self,
        key: &str,
        ttl: Duration,
        deadline: Deadline,
    ) -> Result<LockHandle> {
        self.wait_for_lock_or_cancel(key, ttl, deadline, std::future::pending())
            .await
    }

    /// [`Client::wait_for_lock`], cancelled when `cancel` completes (for example
    /// `token.cancelled()` of a `tokio_util` `CancellationToken`): then it returns
    /// [`Error::Cancelled`] once the call has wound down, with no lock taken (a lock granted
    /// in that instant is released first) and the client usable.
    pub async fn wait_for_lock_or_cancel(
        &self,
        key: &str,
        ttl: Duration,
        deadline: Deadline,
        cancel: impl Future<Output = ()>,
    ) -> Result<LockHandle> {
        self.wait_take(key, Take::Lock, ttl, deadline, cancel).await
    }

    /// [`Client::wait_for_lock_or_cancel`] of `take`.
    pub(crate) async fn wait_take(
        &self,
        key: &str,
        take: Take,
        ttl: Duration,
        deadline: Deadline,
        cancel: impl Future<Output = ()>,
    ) -> Result<LockHandle> {
        let span = tracing::info_span!(
            "dlock.wait_for_lock",
            dlock.key = key,
            dlock.outcome = field::Empty
        );
        let wait = deadline.left(Instant::now());
        if wait > MAX_WAIT {
            return Err(Error::InvalidArgument(format!(
                "a wait of {wait:?} is over the limit of {} ms",
                MAX_WAIT.as_millis()
            )));
        }
        let budget = wait.saturating_add(self.shared.single_call_budget());
        self.waiting(Waiting::Wait(wait), take, key, ttl, budget, cancel)
            .instrument(span)
            .await
    }

    /// Runs an acquire that may wait, so that giving it up (dropping this future, or `cancel`
    /// completing) cancels it instead of tearing it down; records its metrics.
    async fn waiting(
        &self,
        op: Waiting,
        take: Take,
        key: &str,
        ttl: Duration,
        budget: Duration,
        cancel: impl Future<Output = ()>,
    ) -> Result<LockHandle> {
        let started = Instant::now();
        let flag = Cancel::new();
        let mut call = Detached::new(
            Box::pin(run_waiting(
                self.shared.clone(),
                op,
                take,
                key.to_owned(),
                millis(ttl),
                budget,
                flag.clone(),
            )),
            flag,
        );
        let (handle, attempts) = tokio::select! {
            done = call.run() => done,
            () = cancel => {
                call.cancel();
                call.run().await
            }
        };
        let outcome = match &handle {
            Ok(_) => "acquired",
            Err(e) => observe::error_outcome(e),
        };
        let operation = match op {
            Waiting::Acquire => "acquire",
            Waiting::Wait(_) => "wait_for_lock",
        };
        observe::acquired(operation, outcome, started.elapsed(), attempts);
        tracing::Span::current().record("dlock.outcome", outcome);
        handle
    }

    /// True when the key exists in Redis (held by anyone).
    pub async fn is_locked(&self, key: &str) -> Result<bool> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        Ok(s.call(budget, Cancel::NEVER, async |store, api, client| {
            api.client().call_is_locked(&mut *store, client, key).await
        })
        .await??)
    }

    /// The key's state in Redis and the time left on its lease.
    pub async fn key_state(&self, key: &str) -> Result<KeyState> {
        let span = tracing::info_span!("dlock.key_state", dlock.key = key);
        async {
            let budget = self.shared.single_call_budget();
            let mut s = self.shared.session().await?;
            let state = s
                .call(budget, Cancel::NEVER, async |store, api, client| {
                    api.client().call_key_state(&mut *store, client, key).await
                })
                .await??;
            Ok(state.into())
        }
        .instrument(span)
        .await
    }

    /// A handle for a lock acquired elsewhere with `token` (another process, an earlier run).
    /// No Redis call; its `release` and `extend` succeed only if the key holds `token`, and
    /// `is_held` stays false until a successful `extend` tells it the lease.
    pub async fn attach(&self, key: &str, token: &str) -> Result<LockHandle> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let handle = s
            .call(budget, Cancel::NEVER, async |store, api, client| {
                api.client()
                    .call_attach(&mut *store, client, key, token)
                    .await
            })
            .await??;
        Ok(LockHandle::new(&self.shared, handle))
    }

    /// The defaults the component itself documents (its `default-options`); for the bundled
    /// component they equal [`LockOptions::default`].
    pub async fn component_default_options(&self) -> Result<LockOptions> {
        let budget = self.shared.single_call_budget();
        let mut s = self.shared.session().await?;
        let options = s
            .call(budget, Cancel::NEVER, async |store, api, _client| {
                api.call_default_options(&mut *store).await
            })
            .await?;
        Ok(options.into())
    }
}

/// What an acquisition takes: the key as a lock, or permits of a counting semaphore.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Take {
    /// The lock.
    Lock,
    /// Permits of a counting semaphore.
    Permits(Permits),
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
            session
                .call(budget, Cancel::NEVER, async |store, _api, _client| {
                    resource.resource_drop_async(&mut *store).await
                })
                .await?;
        }
        Ok(session)
    }

    /// What the component knows about the handle `resource`.
    async fn info(&self, session: &mut Session, resource: ResourceAny) -> Result<LockInfo> {
        let budget = self.single_call_budget();
        let info = session
            .call(budget, Cancel::NEVER, async |store, api, _client| {
                api.lock_handle().call_info(&mut *store, resource).await
            })
            .await?;
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
