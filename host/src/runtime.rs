//! The runtime: built once per Redis, it makes cheap clients.

use std::sync::Arc;
use std::time::Duration;

use crate::client::Client;
use crate::component::LockComponent;
use crate::error::Result;
use crate::options::LockOptions;
use crate::redis::{
    DEFAULT_CONNECT_TIMEOUT, Link, Policy, RedisConnection, RedisCtx, TlsConfig, Topology,
};

/// Everything built once: the compiled component (engine, linker, `InstancePre`) and the
/// Redis connections shared by all clients (one multiplexed, reconnecting connection per
/// store: a primary, a Sentinel-managed primary, a Redis Cluster, or each primary of a
/// quorum). Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> dlock_host::Result<()> {
/// let runtime = dlock_host::Runtime::connect("redis://127.0.0.1:6379").await?;
/// let client = runtime.client(Default::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runtime {
    component: LockComponent,
    link: Arc<Link>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("url", &self.link.url())
            .field("policy", &self.link.policy)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Runtime`]; see [`Runtime::builder`]. Its `Debug` shows the URL redacted.
#[derive(Clone)]
pub struct RuntimeBuilder {
    topology: Topology,
    component: Option<LockComponent>,
    policy: Policy,
    connect_timeout: Duration,
    tls: TlsConfig,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("topology", &self.topology)
            .field("component", &self.component)
            .field("policy", &self.policy)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl RuntimeBuilder {
    /// Runs this component instead of the bundled one. It must implement the `dlock` world;
    /// the policy still decides which of its scripts may run.
    pub fn with_component(mut self, component: LockComponent) -> Self {
        self.component = Some(component);
        self
    }

    /// Replaces the default [`Policy`].
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long one attempt to open a connection may take. Default 1 s.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// For `rediss://`: trust only this certificate authority (PEM), instead of the system's
    /// root certificates. A server whose certificate it did not sign is refused
    /// ([`crate::Error::Connect`]).
    pub fn with_tls_root_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.root_ca = Some(pem.into());
        self
    }

    /// For `rediss://` servers that authenticate clients (`tls-auth-clients yes`): show
    /// this certificate (chain) and private key, both PEM.
    pub fn with_tls_client_cert(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((cert.into(), key.into()));
        self
    }

    /// Connects to Redis and compiles the bundled component (once per process) unless one
    /// was given. Fails with [`crate::Error::InvalidArgument`] for a malformed URL or
    /// topology and [`crate::Error::Connect`] when Redis (in quorum mode: a majority of the
    /// primaries) cannot be reached; it gives up within a few connect timeouts.
    ///
    /// It also reads each server's eviction settings (tolerating a user not allowed to) and
    /// logs a warning (`tracing`) for each server that can evict locks under memory pressure
    /// (see [`Runtime::weaknesses`]).
    pub async fn build(self) -> Result<Runtime> {
        let link =
            Link::connect(&self.topology, self.policy, self.connect_timeout, self.tls).await?;
        for weakness in link.weaknesses(true).await {
            tracing::warn!("{weakness}");
        }
        let component = match self.component {
            Some(component) => component,
            None => LockComponent::bundled()?,
        };
        Ok(Runtime {
            component,
            link: Arc::new(link),
        })
    }
}

impl Runtime {
    /// A runtime on the bundled component with the default policy.
    pub async fn connect(redis: impl Into<Topology>) -> Result<Runtime> {
        Self::builder(redis).build().await
    }

    /// Starts configuring a runtime for the Redis at `redis`: a URL (`redis://`, `rediss://`,
    /// `unix://`, `redis+sentinel://`; user and password may be in the URL), or a
    /// [`Topology`] (a Redis Cluster, or quorum mode over independent primaries).
    pub fn builder(redis: impl Into<Topology>) -> RuntimeBuilder {
        RuntimeBuilder {
            topology: redis.into(),
            component: None,
            policy: Policy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: TlsConfig::default(),
        }
    }

    /// A new client (one component instance, microseconds to create) that acquires locks
    /// with `options`.
    pub async fn client(&self, options: LockOptions) -> Result<Client> {
        Client::new(&self.component, self.redis_ctx(), options).await
    }

    /// The same runtime (component and connection) under another policy: for each plugin of
    /// a plugin host, its own namespace, caps and rates on one shared connection. (The
    /// builder's [`RuntimeBuilder::with_policy`] sets the policy of a new runtime.)
    pub fn under_policy(&self, policy: Policy) -> Runtime {
        Runtime {
            component: self.component.clone(),
            link: Arc::new(self.link.with_policy(policy)),
        }
    }

    /// A Redis context on this runtime's connection and policy, for a store of your own (see
    /// [`crate::redis`]).
    pub fn redis_ctx(&self) -> RedisCtx {
        RedisCtx::new(self.link.clone())
    }

    /// The Redis URL (or, for a Cluster or a quorum, the URLs and the mode) with any
    /// password replaced by `***`.
    pub fn redis_url(&self) -> &str {
        self.link.url()
    }

    /// A handle on the runtime's Redis connection (multiplexed, reconnecting; cheap to clone),
    /// for reading or arranging Redis state beside the locks; in quorum mode, the first
    /// primary's (see [`Runtime::connections`]). It has no timeout of its own: bound your
    /// calls on it.
    pub fn connection(&self) -> RedisConnection {
        self.link.nodes()[0].current().1
    }

    /// The connection of every store, in the order the topology gave them: one, or one per
    /// primary in quorum mode.
    pub fn connections(&self) -> Vec<RedisConnection> {
        self.link.connections()
    }

    /// Every setting of the Redis server(s) that weakens the lock's guarantees, and every one
    /// that could not be read (a user without `+config|get` or `+info`): an eviction policy
    /// that can drop locks or fence counters, persistence that a restart loses recent locks
    /// with (`appendonly no`, `appendfsync` other than `always`), replicas without
    /// `min-replicas-to-write`. Empty when nothing weakens them. Each read is bounded by the
    /// command timeout; a Cluster's primaries are each checked.
    pub async fn weaknesses(&self) -> Vec<crate::redis::Weakness> {
        self.link.weaknesses(false).await
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.link.policy
    }

    /// The component this runtime instantiates.
    pub fn component(&self) -> &LockComponent {
        &self.component
    }
}
