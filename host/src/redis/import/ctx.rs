//! The store side of the Redis import: the [`RedisCtx`] a store holds, the [`RedisView`] it
//! lends out, and [`add_to_linker`].

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::component::{
    ComponentNamedList, Linker, LinkerInstance, Lower, Resource, ResourceTable, ResourceType,
    WasmList, WasmStr,
};

use crate::cancel::Cancel;
use crate::error::Result;
use crate::observe::{self, Denial};
use crate::rate::TokenBucket;
use crate::redis::ScriptEntry;
use crate::redis::link::{DEFAULT_CONNECT_TIMEOUT, Link};
use crate::redis::request::Request;
use crate::redis::wit::dlock::lock::redis::{Host, HostScript};
use crate::redis::wit::{Value, WitRedisError};
use crate::redis::{Grants, Policy, TlsConfig, Topology};

/// The Redis capability of one store: a connection (shared with every other `RedisCtx` made
/// from the same runtime or connection), the policy, and this store's meters (calls of the
/// current call into the component, bytes sent over its life, what the current call
/// acquired).
pub struct RedisCtx {
    pub(crate) link: Arc<Link>,
    /// `redis-eval` calls of the current call into the component.
    pub(crate) evals: TokenBucket,
    /// Bytes of keys and arguments sent over this context's life.
    pub(crate) bytes: TokenBucket,
    /// Calls that reached Redis so far (the compute watchdog resets when this moves).
    pub(crate) calls: u64,
    /// Locks the bundled acquire script may have taken in the current call.
    pub(crate) grants: Arc<Grants>,
    /// Runs of the bundled acquire script in the current call.
    pub(crate) acquire_attempts: u64,
    /// When the current call must end (its waits end then at the latest), if it has a
    /// deadline.
    pub(crate) deadline: Option<Instant>,
    /// Whether the caller cancelled the current call (its waits then end at once).
    pub(crate) cancel: Cancel,
    /// The buffers `redis-eval` reads its keys and arguments into.
    pub(crate) request: Request,
}

impl std::fmt::Debug for RedisCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCtx")
            .field("url", &self.link.url())
            .field("policy", &self.link.policy)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl RedisCtx {
    pub(crate) fn new(link: Arc<Link>) -> Self {
        let policy = &link.policy;
        RedisCtx {
            evals: TokenBucket::new(policy.max_evals_per_second.into()),
            bytes: TokenBucket::new(policy.max_bytes_per_second),
            calls: 0,
            grants: Arc::default(),
            acquire_attempts: 0,
            deadline: None,
            cancel: Cancel::NEVER,
            request: Request::default(),
            link,
        }
    }

    /// A context on its own connections to the Redis of `topology` (a URL for one Redis),
    /// under `policy`, with `tls` for `rediss://` URLs (`TlsConfig::default()` trusts the
    /// system's roots). Fails with
    /// [`crate::Error::InvalidArgument`] for a malformed URL and [`crate::Error::Connect`] when
    /// Redis cannot be reached. Prefer [`crate::Runtime::redis_ctx`] to share one connection
    /// among many stores.
    pub async fn connect(
        topology: impl Into<Topology>,
        policy: Policy,
        tls: TlsConfig,
    ) -> Result<Self> {
        let link = Link::connect(&topology.into(), policy, DEFAULT_CONNECT_TIMEOUT, tls).await?;
        Ok(RedisCtx::new(Arc::new(link)))
    }

    /// Another context on the same connection and policy, with meters of its own (for another
    /// store).
    pub fn share(&self) -> Self {
        RedisCtx::new(self.link.clone())
    }

    /// Starts a new call into the component: its `redis-eval` rate bucket is full again and
    /// the locks it noted for release on failure are forgotten. Call it before each call into
    /// the component if you want the per-call rate of [`Policy::with_max_evals_per_second`];
    /// without it the bucket simply refills at that rate. A call started this way has no
    /// deadline of its own: each `wait-for-release` then waits at most
    /// [`MAX_UNSCOPED_WAIT`](crate::redis::MAX_UNSCOPED_WAIT).
    pub fn begin_call(&mut self) {
        self.begin_scoped_call(None, Cancel::NEVER);
    }

    /// [`RedisCtx::begin_call`] for a call that must end by `deadline` and that `cancel` may
    /// cancel.
    pub(crate) fn begin_scoped_call(&mut self, deadline: Option<Instant>, cancel: Cancel) {
        self.evals = TokenBucket::new(self.link.policy.max_evals_per_second.into());
        self.grants.clear();
        self.acquire_attempts = 0;
        self.deadline = deadline;
        self.cancel = cancel;
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.link.policy
    }

    /// Takes `calls` from this call's `redis-eval` bucket.
    pub(crate) fn admit_eval(&mut self, now: Instant, calls: u64) -> bool {
        self.evals.take(now, calls)
    }
}

/// A store's Redis context lent out with its resource table, for the duration of one call.
pub struct RedisView<'a> {
    /// The store's Redis context.
    pub ctx: &'a mut RedisCtx,
    /// The store's resource table (holds the component's `script` resources).
    pub table: &'a mut ResourceTable,
}

impl std::fmt::Debug for RedisView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisView").field("ctx", &self.ctx).finish()
    }
}

/// Store data that can lend out a [`RedisView`]: what [`add_to_linker`] needs of `T`.
pub trait RedisHostView: Send {
    /// The store's Redis context and resource table.
    fn redis(&mut self) -> RedisView<'_>;
}

pub(crate) use crate::contract::REDIS_INTERFACE;

/// Adds `dlock:lock/redis` (the `script` resource, `redis-eval`, `redis-eval-all`,
/// `node-count` and `wait-for-release`), as this crate implements it, to `linker`. The
/// functions are async: instantiate and call with the `_async` methods.
///
/// Linked here rather than through the generated `add_to_linker` so that `redis-eval` reads its
/// keys and arguments in place (see `request.rs`) instead of lifting them into fresh vectors of
/// strings on every call; the other functions go to the generated traits' implementations.
pub fn add_to_linker<T: RedisHostView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut redis = linker.instance(REDIS_INTERFACE)?;
    redis.resource_async(
        "script",
        ResourceType::host::<ScriptEntry>(),
        |mut store, rep| {
            Box::new(async move {
                HostScript::drop(&mut store.data_mut().redis(), Resource::new_own(rep)).await
            })
        },
    )?;
    redis.func_wrap_async(
        "[static]script.load",
        |mut store: StoreContextMut<'_, T>, (source,): (String,)| {
            Box::new(async move {
                Ok((HostScript::load(&mut store.data_mut().redis(), source).await?,))
            })
        },
    )?;
    redis.func_wrap_async(
        "wait-for-release",
        |mut store: StoreContextMut<'_, T>, (key, timeout_ms, listen): (String, u64, bool)| {
            Box::new(async move {
                let mut view = store.data_mut().redis();
                Ok((Host::wait_for_release(&mut view, key, timeout_ms, listen).await?,))
            })
        },
    )?;
    redis.func_wrap_async("node-count", |mut store: StoreContextMut<'_, T>, (): ()| {
        Box::new(async move { Ok((Host::node_count(&mut store.data_mut().redis()).await?,)) })
    })?;
    link_eval::<T, EvalOne>(&mut redis, "redis-eval")?;
    link_eval::<T, EvalAll>(&mut redis, "redis-eval-all")?;
    Ok(())
}

/// `redis-eval` or `redis-eval-all`: how a request read in place is run, and its reply.
trait Eval: 'static {
    /// What the WIT function returns when the script ran.
    type Answer: Send;

    /// Runs `script` with `keys` and `args` in `view`'s store.
    fn run<'a>(
        view: &'a mut RedisView<'_>,
        script: &'a Resource<ScriptEntry>,
        keys: &'a [String],
        args: &'a [String],
    ) -> impl Future<Output = wasmtime::Result<Result<Self::Answer, WitRedisError>>> + Send;
}

/// `redis-eval`: the script on the one store.
struct EvalOne;

impl Eval for EvalOne {
    type Answer = Value;

    fn run<'a>(
        view: &'a mut RedisView<'_>,
        script: &'a Resource<ScriptEntry>,
        keys: &'a [String],
        args: &'a [String],
    ) -> impl Future<Output = wasmtime::Result<Result<Self::Answer, WitRedisError>>> + Send {
        view.eval_one(script, keys, args)
    }
}

/// `redis-eval-all`: the script on every store.
struct EvalAll;

impl Eval for EvalAll {
    type Answer = Vec<Result<Value, WitRedisError>>;

    fn run<'a>(
        view: &'a mut RedisView<'_>,
        script: &'a Resource<ScriptEntry>,
        keys: &'a [String],
        args: &'a [String],
    ) -> impl Future<Output = wasmtime::Result<Result<Self::Answer, WitRedisError>>> + Send {
        view.eval_all(script, keys, args)
    }
}

/// Links `name` (`redis-eval` or `redis-eval-all`): the request is read in place (see
/// `request.rs`), then run by `E`.
fn link_eval<T: RedisHostView + 'static, E: Eval>(
    redis: &mut LinkerInstance<'_, T>,
    name: &str,
) -> wasmtime::Result<()>
where
    (Result<E::Answer, WitRedisError>,): ComponentNamedList + Lower + 'static,
{
    redis.func_wrap_async(
        name,
        |mut store: StoreContextMut<'_, T>, (script, keys, args): EvalParams| {
            Box::new(async move {
                let request = match take_request(&mut store, &keys, &args)? {
                    Ok(request) => request,
                    Err(denied) => return Ok((Err(denied),)),
                };
                let mut view = store.data_mut().redis();
                let reply = E::run(&mut view, &script, request.keys(), request.args()).await;
                give_back(view, request);
                Ok((reply?,))
            })
        },
    )
}

/// `redis-eval`'s and `redis-eval-all`'s parameters, the strings left in the component's
/// memory.
type EvalParams = (Resource<ScriptEntry>, WasmList<WasmStr>, WasmList<WasmStr>);

/// The store's request buffers with `keys` and `args` read into them, or the policy's refusal
/// (counted) when they are over its caps.
fn take_request<T: RedisHostView + 'static>(
    store: &mut StoreContextMut<'_, T>,
    keys: &WasmList<WasmStr>,
    args: &WasmList<WasmStr>,
) -> wasmtime::Result<Result<Request, WitRedisError>> {
    let view = store.data_mut().redis();
    let link = view.ctx.link.clone();
    let mut request = std::mem::take(&mut view.ctx.request);
    match request.read(store, keys, args, &link.policy.limits)? {
        Ok(()) => Ok(Ok(request)),
        Err(reason) => {
            give_back(store.data_mut().redis(), request);
            observe::denied(Denial::Policy);
            Ok(Err(WitRedisError::Denied(reason)))
        }
    }
}

/// Returns the request buffers to the store for its next call.
fn give_back(view: RedisView<'_>, mut request: Request) {
    request.finish();
    view.ctx.request = request;
}
