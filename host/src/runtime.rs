//! The runtime: built once per Redis, it makes cheap clients.

use std::sync::Arc;
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2};

use crate::client::Client;
use crate::engine::LockComponent;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::redis_eval::RedisLink;
use crate::types::LockOptions;

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
    link: Arc<RedisLink>,
    url: String,
}

/// Configures a [`Runtime`]; see [`Runtime::builder`].
#[derive(Clone, Debug)]
pub struct RuntimeBuilder {
    url: String,
    component: Option<LockComponentSlot>,
    policy: Policy,
    connect_timeout: Duration,
}

#[derive(Clone)]
struct LockComponentSlot(LockComponent);

impl std::fmt::Debug for LockComponentSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockComponent")
    }
}

impl RuntimeBuilder {
    /// Runs this component instead of the bundled one. It must implement the `dlock` world;
    /// the policy still decides which of its scripts may run.
    pub fn component(mut self, component: LockComponent) -> Self {
        self.component = Some(LockComponentSlot(component));
        self
    }

    /// Replaces the default [`Policy`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long one attempt to open a connection may take. Default 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Compiles (or reuses) the component and connects to Redis. Fails with
    /// [`Error::InvalidArgument`] for a malformed URL and [`Error::Connect`] when Redis cannot
    /// be reached; it gives up within a few connect timeouts.
    pub async fn build(self) -> Result<Runtime> {
        let url = redact_url(&self.url);
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| Error::InvalidArgument(format!("invalid Redis URL {url}: {e}")))?;
        let client = redis::Client::open(info.clone().set_tcp_settings(tcp_settings()))
            .map_err(|e| Error::InvalidArgument(format!("invalid Redis URL {url}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // `redis-eval` bounds every call with the policy's command timeout itself, and
            // replaces a connection that keeps timing out.
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(|e| Error::Connect {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let component = match self.component {
            Some(LockComponentSlot(c)) => c,
            None => LockComponent::bundled()?,
        };
        Ok(Runtime {
            component,
            link: Arc::new(RedisLink::new(conn, client, config, self.policy)),
            url,
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
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// A new client (one component instance, microseconds to create) that acquires locks
    /// with `options`.
    pub async fn client(&self, options: LockOptions) -> Result<Client> {
        Client::new(&self.component, self.link.clone(), options).await
    }

    /// The Redis URL with any password replaced by `***`.
    pub fn redis_url(&self) -> &str {
        &self.url
    }

    /// A handle on the runtime's Redis connection (multiplexed, reconnecting; cheap to clone),
    /// for reading or arranging Redis state beside the locks.
    pub fn connection(&self) -> ConnectionManager {
        self.link.connection()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.link.policy
    }
}

/// TCP settings of every connection: keepalive probes and a bound on unacknowledged data, so
/// that the kernel notices a peer that vanished without a reset (a host gone, a firewall
/// dropping packets) within about ten seconds instead of fifteen minutes.
fn tcp_settings() -> TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(1))
        .with_retries(5);
    TcpSettings::default()
        .set_keepalive(keepalive)
        .set_user_timeout(Duration::from_secs(10))
}

/// `url` with the password (if any) replaced by `***`, fit for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_appear_in_redacted_urls() {
        assert_eq!(
            redact_url("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(redact_url("rediss://me:s3cret@h"), "rediss://me:***@h");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("redis://me@h"), "redis://me@h");
        assert_eq!(redact_url("unix:///tmp/r.sock"), "unix:///tmp/r.sock");
        assert_eq!(redact_url("redis://u:p@ss@h"), "redis://u:***@h");
    }
}
