//! One Redis store a runtime runs scripts on (a primary, the primary Sentinel names, or a Redis
//! Cluster), with its connection: multiplexed, reconnecting, and replaced when it goes silent
//! or, behind Sentinel, when its primary is gone or demoted.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::io::tcp::{TcpSettings, socket2};
use redis::sentinel::SentinelClient;

use crate::error::{Error, Result};
use crate::redis::blocking::{BlockingPool, ClusterPools};
use crate::redis::connection::RedisConnection;
use crate::redis::sentinel::{self, SentinelUrl};
use crate::redis::tls::{self, TlsConfig};
use crate::redis::url::redact_url;

/// After this many `redis-eval` timeouts in a row on one connection, the connection is taken
/// for dead (a peer gone without a reset, a firewall that drops packets) and replaced by a
/// fresh one. Three, so that one slow script or a short pause of Redis does not cost a
/// reconnect, while a dead connection costs at most three command timeouts.
pub(crate) const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// How connections are opened: the same for every node of a runtime.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Bound on one attempt to open a connection.
    pub(crate) connect_timeout: Duration,
    /// The policy's command timeout (a Redis Cluster's own per-attempt bound).
    pub(crate) command_timeout: Duration,
    pub(crate) tls: TlsConfig,
}

/// How a call on a node's connection ended, as far as replacing the connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Redis answered (a reply or an error reply of its own).
    Answered,
    /// No answer within the command timeout.
    TimedOut,
    /// The connection failed or the server cannot serve (refused, reset, read-only replica,
    /// loading, failing over).
    Unavailable,
}

/// Where a replacement connection comes from.
enum Source {
    /// A fixed address.
    Direct {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    /// The primary Sentinel names, asked again for every replacement.
    Sentinel {
        sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
        config: ConnectionManagerConfig,
    },
    /// A Redis Cluster: its client follows slot moves and failovers itself.
    Cluster { client: ClusterClient },
}

/// One Redis store and its current connection.
pub(crate) struct Node {
    /// The current connection, with its generation (counting replacements).
    conn: RwLock<(u64, RedisConnection)>,
    source: Source,
    /// `redis-eval` timeouts in a row since the last reply on the current connection.
    timeouts_in_a_row: AtomicU32,
    /// Set while a replacement is being made in the background (one at a time).
    replacing: AtomicBool,
    /// Connections of their own for blocking waits (release signals), to the primary (the
    /// one Sentinel names now).
    blocking: Option<Arc<BlockingPool>>,
    /// In a Cluster, the same per primary.
    cluster_blocking: Option<ClusterPools>,
    /// Where Redis is, for spans (empty for Sentinel and Cluster).
    server: Server,
}

/// Where a connection goes, as OpenTelemetry's `server.address`, `server.port` and
/// `db.namespace` name it.
pub(crate) type Server = (String, Option<u16>, i64);

fn manager_config(connect_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        // `redis-eval` bounds every call with the policy's command timeout itself, and
        // replaces a connection that keeps timing out.
        .set_response_timeout(None)
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200))
}

impl Node {
    /// Connects to the Redis at `url` (`redis://`, `rediss://`, `unix://`,
    /// `redis+sentinel://`). With `lazy`, no connection is made until the first command (for
    /// a quorum member that is down while the runtime starts), except behind Sentinel, whose
    /// primary must be named now. Fails with
    /// [`Error::InvalidArgument`] for a malformed URL and [`Error::Connect`] when Redis cannot
    /// be reached; it gives up within a few connect timeouts.
    pub(crate) async fn open(url: &str, settings: &Settings, lazy: bool) -> Result<Node> {
        let shown = redact_url(url);
        let invalid = |e: String| {
            Error::InvalidArgument(format!("invalid Redis URL {shown}: {}", redact_url(&e)))
        };
        let connect = |source: redis::RedisError| Error::Connect {
            url: format!("{shown}{}", tls::hint(&source)),
            source,
        };
        let config = manager_config(settings.connect_timeout);
        tls::install_crypto_provider();
        let mut server = (String::new(), None, 0);
        let (source, client, lazy) = if url.starts_with(sentinel::SCHEME) {
            let parsed = SentinelUrl::parse(url).map_err(invalid)?;
            let mut sentinel = parsed
                .client(&settings.tls, tcp_settings())
                .map_err(|e| invalid(e.to_string()))?;
            let client =
                tokio::time::timeout(settings.connect_timeout * 3, sentinel.async_get_client())
                    .await
                    .map_err(|_| connect(timed_out("no Sentinel named a primary in time")))?
                    .map_err(connect)?;
            let source = Source::Sentinel {
                sentinel: Arc::new(tokio::sync::Mutex::new(sentinel)),
                config: config.clone(),
            };
            (source, client, false)
        } else {
            let info = url
                .into_connection_info()
                .map_err(|e| invalid(e.to_string()))?
                .set_tcp_settings(tcp_settings());
            let address = match info.addr() {
                redis::ConnectionAddr::Tcp(host, port)
                | redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), Some(*port)),
                redis::ConnectionAddr::Unix(path) => (path.display().to_string(), None),
                _ => (String::new(), None),
            };
            server = (address.0, address.1, info.redis_settings().db());
            let client = tls::client(info, &settings.tls).map_err(|e| invalid(e.to_string()))?;
            let source = Source::Direct {
                client: client.clone(),
                config: config.clone(),
            };
            (source, client, lazy)
        };
        let blocking = Arc::new(BlockingPool::new(client.clone(), settings.connect_timeout));
        let manager = if lazy {
            ConnectionManager::new_lazy_with_config(client, config).map_err(connect)?
        } else {
            ConnectionManager::new_with_config(client, config)
                .await
                .map_err(connect)?
        };
        let mut node = Node::new(source, RedisConnection::Primary(manager));
        node.blocking = Some(blocking);
        node.server = server;
        Ok(node)
    }

    /// Connects to the Redis Cluster that `seeds` belong to.
    pub(crate) async fn open_cluster(seeds: &[String], settings: &Settings) -> Result<Node> {
        let shown = seeds
            .iter()
            .map(|s| redact_url(s))
            .collect::<Vec<_>>()
            .join(",");
        let invalid = |e: redis::RedisError| {
            Error::InvalidArgument(format!(
                "invalid Redis Cluster seeds {shown}: {}",
                redact_url(&e.to_string())
            ))
        };
        tls::install_crypto_provider();
        let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str))
            .connection_timeout(settings.connect_timeout)
            .response_timeout(settings.command_timeout)
            .overall_response_timeout(None)
            // MOVED, ASK, TRYAGAIN and broken connections during a failover are retried a
            // few times, quickly; `redis-eval`'s command timeout bounds the whole call.
            .retries(4)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .retry_wait_formula(10, 2)
            .tcp_settings(tcp_settings());
        if let Some(certificates) = settings.tls.certificates() {
            builder = builder.certs(certificates);
        }
        let client = builder.build().map_err(invalid)?;
        let template = seeds
            .first()
            .map(|seed| seed.as_str().into_connection_info())
            .transpose()
            .map_err(invalid)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|source| Error::Connect {
                url: format!("cluster {shown}{}", tls::hint(&source)),
                source,
            })?;
        let mut node = Node::new(Source::Cluster { client }, RedisConnection::Cluster(conn));
        node.cluster_blocking = template.map(|template| {
            ClusterPools::new(template, settings.tls.clone(), settings.connect_timeout)
        });
        Ok(node)
    }

    fn new(source: Source, conn: RedisConnection) -> Node {
        Node {
            conn: RwLock::new((0, conn)),
            source,
            timeouts_in_a_row: AtomicU32::new(0),
            replacing: AtomicBool::new(false),
            blocking: None,
            cluster_blocking: None,
            server: (String::new(), None, 0),
        }
    }

    /// The connections for blocking on the signal list `signal`: to the primary, or in a
    /// Cluster to the primary serving its slot (`None` when the cluster cannot say within
    /// `timeout`).
    pub(crate) async fn blocking_pool(
        &self,
        signal: &str,
        timeout: Duration,
    ) -> Option<Arc<BlockingPool>> {
        if let Some(pool) = &self.blocking {
            return Some(pool.clone());
        }
        let cluster = self.cluster_blocking.as_ref()?;
        cluster.pool_for(signal, self.current().1, timeout).await
    }

    /// A blocking wait on `key` at this node failed with `error`: in a Cluster its slot may
    /// have moved, so the next wait goes where a `MOVED` redirect says, or asks where slots
    /// are.
    pub(crate) fn blocking_failed(&self, key: &str, error: &redis::RedisError) {
        let Some(cluster) = &self.cluster_blocking else {
            return;
        };
        let moved = matches!(
            error.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::Moved)
        );
        let to = error
            .redirect_node()
            .filter(|_| moved)
            .and_then(|(address, _slot)| address.rsplit_once(':'))
            .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)));
        match to {
            Some(to) => cluster.moved(key, to),
            None => cluster.forget_slots(),
        }
    }

    /// Where Redis is, for spans.
    pub(crate) fn server(&self) -> &Server {
        &self.server
    }

    /// The current connection and its generation.
    pub(crate) fn current(&self) -> (u64, RedisConnection) {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Notes how a call on generation `used` of the connection ended. After
    /// [`TIMEOUTS_BEFORE_RECONNECT`] timeouts in a row the connection is replaced (once:
    /// callers that still hold the dead one find a new one in place already): a connection
    /// that times out forever never reports an error of its own, so its manager would never
    /// reconnect by itself. Behind Sentinel, an unavailable primary (refusing connections, or
    /// a replica now) has the Sentinels asked again, in the background.
    pub(crate) fn note_outcome(self: &Arc<Self>, used: u64, outcome: Outcome) {
        let replace = match outcome {
            Outcome::Answered => {
                self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                return;
            }
            Outcome::TimedOut => {
                self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1
                    >= TIMEOUTS_BEFORE_RECONNECT
            }
            Outcome::Unavailable => matches!(self.source, Source::Sentinel { .. }),
        };
        if replace {
            self.replace(used);
        }
    }

    /// Puts `fresh` in place of generation `used`, unless it was replaced already.
    fn swap(&self, used: u64, fresh: RedisConnection) {
        let mut current = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if current.0 == used {
            *current = (used + 1, fresh);
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    fn replace(self: &Arc<Self>, used: u64) {
        match &self.source {
            Source::Direct { client, config } => {
                if let Ok(fresh) =
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                {
                    self.swap(used, RedisConnection::Primary(fresh));
                }
            }
            Source::Sentinel { .. } | Source::Cluster { .. } => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                if self.replacing.swap(true, Ordering::AcqRel) {
                    return;
                }
                let node = self.clone();
                runtime.spawn(async move {
                    if let Some(fresh) = node.reconnect().await {
                        node.swap(used, fresh);
                    }
                    node.replacing.store(false, Ordering::Release);
                });
            }
        }
    }

    /// A new connection from the source: the primary the Sentinels name now, or the cluster
    /// found again from its seeds.
    async fn reconnect(&self) -> Option<RedisConnection> {
        match &self.source {
            Source::Direct { .. } => None,
            Source::Sentinel { sentinel, config } => {
                let client = sentinel.lock().await.async_get_client().await.ok()?;
                if let Some(pool) = &self.blocking {
                    pool.retarget(client.clone());
                }
                let fresh = ConnectionManager::new_lazy_with_config(client, config.clone()).ok()?;
                Some(RedisConnection::Primary(fresh))
            }
            Source::Cluster { client } => client
                .get_async_connection()
                .await
                .ok()
                .map(RedisConnection::Cluster),
        }
    }
}

fn timed_out(what: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
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
