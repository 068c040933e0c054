//! The runtime: built once per Redis, it makes cheap clients.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::client::Client;
use crate::component::LockComponent;
use crate::error::Result;
use crate::options::LockOptions;
use crate::redis::{DEFAULT_CONNECT_TIMEOUT, Link, Policy, RedisCtx, redact_url};

/// Everything built once: the compiled component (engine, linker, `InstancePre`) and one
/// multiplexed, reconnecting Redis connection shared by all clients. Cheap to clone.
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
    url: String,
    component: Option<LockComponent>,
    policy: Policy,
    connect_timeout: Duration,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("url", &redact_url(&self.url))
            .field("component", &self.component)
            .field("policy", &self.policy)
            .field("connect_timeout", &self.connect_timeout)
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

    /// Connects to Redis and compiles the bundled component (once per process) unless one
    /// was given. Fails with [`crate::Error::InvalidArgument`] for a malformed URL and
    /// [`crate::Error::Connect`] when Redis cannot be reached; it gives up within a few
    /// connect timeouts.
    pub async fn build(self) -> Result<Runtime> {
        let link = Link::connect(&self.url, self.policy, self.connect_timeout).await?;
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
    pub async fn connect(redis_url: &str) -> Result<Runtime> {
        Self::builder(redis_url).build().await
    }

    /// Starts configuring a runtime for the Redis at `redis_url` (`redis://`, `rediss://`,
    /// `unix://`; user and password may be in the URL).
    pub fn builder(redis_url: &str) -> RuntimeBuilder {
        RuntimeBuilder {
            url: redis_url.to_owned(),
            component: None,
            policy: Policy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// A new client (one component instance, microseconds to create) that acquires locks
    /// with `options`.
    pub async fn client(&self, options: LockOptions) -> Result<Client> {
        Client::new(&self.component, self.redis_ctx(), options).await
    }

    /// The same runtime (component and connection) under another policy: for each plugin of
    /// a plugin host, its own namespace, caps and rates on one shared connection.
    pub fn with_policy(&self, policy: Policy) -> Runtime {
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

    /// The Redis URL with any password replaced by `***`.
    pub fn redis_url(&self) -> &str {
        self.link.url()
    }

    /// A handle on the runtime's Redis connection (multiplexed, reconnecting; cheap to clone),
    /// for reading or arranging Redis state beside the locks. It has no timeout of its own:
    /// bound your calls on it.
    pub fn connection(&self) -> ConnectionManager {
        self.link.connection()
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
