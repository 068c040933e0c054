//! The connection every context of one runtime shares, and the scripts its policy allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2};

use super::blocking::BlockingPool;
use super::policy::{Policy, sha1_hex};
use super::url::redact_url;
use crate::bundled::BundledScript;
use crate::error::{Error, Result};

/// How long one attempt to open a connection may take, unless configured otherwise.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// After this many `redis-eval` timeouts in a row on one connection, the connection is taken
/// for dead (a peer gone without a reset, a firewall that drops packets) and replaced by a
/// fresh one. Three, so that one slow script or a short pause of Redis does not cost a
/// reconnect, while a dead connection costs at most three command timeouts.
pub(crate) const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// A script the policy allows: its SHA1 (computed once), its source (for `SCRIPT LOAD`), and
/// which of the bundled scripts it is, if any.
#[derive(Debug)]
pub(crate) struct AllowedScript {
    pub(super) sha1: String,
    pub(super) source: Box<str>,
    pub(super) role: Option<BundledScript>,
}

/// One Redis connection (multiplexed, reconnecting, replaced when it goes silent), shared by
/// every [`Link`] made on it.
pub(crate) struct Connection {
    /// The current connection, with its generation (counting replacements).
    conn: RwLock<(u64, ConnectionManager)>,
    /// What a replacement connection is made from.
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// `redis-eval` timeouts in a row since the last reply on the current connection.
    timeouts_in_a_row: AtomicU32,
    /// The Redis URL without its password.
    url: String,
    /// Connections of their own for blocking waits (release signals).
    blocking: BlockingPool,
    /// Where Redis is: host (or socket path), port, database index; for spans.
    server: Server,
}

/// Where a connection goes, as OpenTelemetry's `server.address`, `server.port` and
/// `db.namespace` name it.
pub(crate) type Server = (String, Option<u16>, i64);

impl Connection {
    /// Connects to the Redis at `url` (each connection attempt bounded by `connect_timeout`).
    /// Fails with [`Error::InvalidArgument`] for a malformed URL and [`Error::Connect`] when
    /// Redis cannot be reached; it gives up within a few connect timeouts.
    pub(crate) async fn open(url: &str, connect_timeout: Duration) -> Result<Self> {
        let shown = redact_url(url);
        let invalid = |e: redis::RedisError| {
            Error::InvalidArgument(format!(
                "invalid Redis URL {shown}: {}",
                redact_url(&e.to_string())
            ))
        };
        let info = url.into_connection_info().map_err(invalid)?;
        let server = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port)
            | redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), Some(*port)),
            redis::ConnectionAddr::Unix(path) => (path.display().to_string(), None),
            _ => (String::new(), None),
        };
        let server = (server.0, server.1, info.redis_settings().db());
        let client = redis::Client::open(info.set_tcp_settings(tcp_settings())).map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // `redis-eval` bounds every call with the policy's command timeout itself, and
            // replaces a connection that keeps timing out.
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(|source| Error::Connect {
                url: shown.clone(),
                source,
            })?;
        Ok(Connection {
            conn: RwLock::new((0, conn)),
            blocking: BlockingPool::new(client.clone(), connect_timeout),
            client,
            config,
            timeouts_in_a_row: AtomicU32::new(0),
            url: shown,
            server,
        })
    }

    /// The current connection and its generation.
    fn current(&self) -> (u64, ConnectionManager) {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Notes how a call on generation `used` of the connection ended. After
    /// [`TIMEOUTS_BEFORE_RECONNECT`] timeouts in a row the connection is replaced (once:
    /// callers that still hold the dead one find a new one in place already). A connection
    /// that times out forever never reports an error of its own, so its manager would never
    /// reconnect by itself.
    fn note_outcome(&self, used: u64, timed_out: bool) {
        if !timed_out {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        if self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 < TIMEOUTS_BEFORE_RECONNECT {
            return;
        }
        let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        else {
            return;
        };
        let mut current = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if current.0 == used {
            *current = (used + 1, fresh);
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
        }
    }
}

/// What every context of one runtime shares for Redis: the connection, the policy, and the
/// scripts the policy allows.
pub(crate) struct Link {
    connection: Arc<Connection>,
    pub(crate) policy: Policy,
    known: HashMap<Box<str>, Arc<AllowedScript>>,
    /// The longest allowed source: anything longer is refused without being hashed.
    longest_source: usize,
    /// Blocking connections this link's waits may hold at once (the policy's bound).
    waits: Arc<tokio::sync::Semaphore>,
}

impl Link {
    /// A link to the Redis at `url`; see [`Connection::open`].
    pub(crate) async fn connect(
        url: &str,
        policy: Policy,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let connection = Connection::open(url, connect_timeout).await?;
        Ok(Link::new(Arc::new(connection), policy))
    }

    /// A link on `connection` under `policy`.
    pub(crate) fn new(connection: Arc<Connection>, policy: Policy) -> Self {
        let known: HashMap<Box<str>, Arc<AllowedScript>> = policy
            .known_sources()
            .map(|source| (source.into(), Arc::new(AllowedScript::new(source))))
            .collect();
        let longest_source = known.keys().map(|s| s.len()).max().unwrap_or(0);
        let waits = Arc::new(tokio::sync::Semaphore::new(
            policy
                .max_blocking_connections
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        Link {
            connection,
            policy,
            known,
            longest_source,
            waits,
        }
    }

    /// Another link on the same connection, under `policy`.
    pub(crate) fn with_policy(&self, policy: Policy) -> Self {
        Link::new(self.connection.clone(), policy)
    }

    /// The Redis URL without its password.
    pub(crate) fn url(&self) -> &str {
        &self.connection.url
    }

    /// The current connection (multiplexed, reconnecting; cheap to clone).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.connection.current().1
    }

    /// The current connection and its generation.
    pub(super) fn current(&self) -> (u64, ConnectionManager) {
        self.connection.current()
    }

    /// Where Redis is, for spans.
    pub(super) fn server(&self) -> &Server {
        &self.connection.server
    }

    /// A permit to hold one connection of [`Link::blocking_pool`]: `None` when this link's
    /// waits hold as many as its policy allows.
    pub(super) fn blocking_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.waits.clone().try_acquire_owned().ok()
    }

    /// The connections for blocking waits (shared by every link on this connection).
    pub(super) fn blocking_pool(&self) -> &BlockingPool {
        &self.connection.blocking
    }

    /// See [`Connection::note_outcome`].
    pub(super) fn note_outcome(&self, used: u64, timed_out: bool) {
        self.connection.note_outcome(used, timed_out);
    }

    /// The bundled release script, when the policy allows it.
    pub(crate) fn release_script(&self) -> Option<Arc<AllowedScript>> {
        self.known
            .values()
            .find(|s| s.role == Some(BundledScript::Release))
            .cloned()
    }

    /// The allowed script with this source, or `denied`. Every allowed script's source is
    /// known, so admitting is a map lookup; a refused source is hashed only to name it, and
    /// only when it is no longer than the longest allowed one.
    pub(super) fn admit(&self, source: &str) -> std::result::Result<Arc<AllowedScript>, String> {
        if let Some(script) = self.known.get(source) {
            return Ok(script.clone());
        }
        Err(if source.len() > self.longest_source {
            format!(
                "a script of {} bytes is not in the host's allowlist (it is longer than any \
                 allowed script)",
                source.len()
            )
        } else {
            format!("script {} is not in the host's allowlist", sha1_hex(source))
        })
    }
}

impl AllowedScript {
    fn new(source: &str) -> Self {
        let sha1 = sha1_hex(source);
        let role = BundledScript::ALL.into_iter().find(|s| s.sha1() == sha1);
        AllowedScript {
            sha1,
            source: source.into(),
            role,
        }
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
