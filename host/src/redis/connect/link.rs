//! What every context of one runtime shares for Redis: the stores it runs scripts on (one,
//! or several independent primaries in quorum mode), the policy, and the scripts the policy
//! allows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::bundled::BundledScript;
use crate::contract::quorum;
use crate::error::{Error, Result};
use crate::redis::blocking::BlockingPool;
use crate::redis::connection::RedisConnection;
use crate::redis::node::{Node, Settings};
use crate::redis::policy::{Policy, sha1_hex};
use crate::redis::topology::Topology;

/// How long one attempt to open a connection may take, unless configured otherwise.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A script the policy allows: its SHA1 (computed once), its source (for `SCRIPT LOAD`), and
/// which of the bundled scripts it is, if any.
#[derive(Debug)]
pub(crate) struct AllowedScript {
    pub(in crate::redis) sha1: String,
    pub(in crate::redis) source: Box<str>,
    pub(in crate::redis) role: Option<BundledScript>,
}

/// The stores of one topology, shared by every [`Link`] made on them.
pub(crate) struct Stores {
    /// One node (a primary, Sentinel's primary, a Cluster), or one per quorum member.
    pub(crate) nodes: Box<[Arc<Node>]>,
    /// A Redis Cluster: a script's keys must share one hash slot.
    pub(crate) cluster: bool,
    /// The topology without passwords, for messages.
    description: String,
}

impl Stores {
    /// Connects to every store of `topology`. In quorum mode the members are connected to
    /// at once, and a member that cannot be reached is connected to lazily (it counts as
    /// unavailable until it answers) as long as a majority could be reached.
    async fn open(topology: &Topology, settings: &Settings) -> Result<Stores> {
        topology.check()?;
        let nodes: Vec<Arc<Node>> = match topology {
            Topology::Single(url) => vec![Arc::new(Node::open(url, settings, false).await?)],
            Topology::Cluster(seeds) => vec![Arc::new(Node::open_cluster(seeds, settings).await?)],
            Topology::Quorum(urls) => {
                let opened = futures_util::future::join_all(
                    urls.iter().map(|url| Node::open(url, settings, false)),
                )
                .await;
                let reached = opened.iter().filter(|node| node.is_ok()).count();
                let needed = quorum(u32::try_from(urls.len()).unwrap_or(u32::MAX)) as usize;
                if reached < needed {
                    let mut unreachable = Vec::new();
                    let mut first = None;
                    for node in opened {
                        match node {
                            Err(Error::Connect { url, source }) => {
                                unreachable.push(url);
                                first.get_or_insert(source);
                            }
                            Err(other) => return Err(other),
                            Ok(_) => {}
                        }
                    }
                    return Err(Error::Connect {
                        url: format!(
                            "a quorum of {} primaries (no quorum: {reached} reachable, {needed} \
                             needed; unreachable: {})",
                            urls.len(),
                            unreachable.join(", ")
                        ),
                        source: first.expect("an unreachable primary"),
                    });
                }
                let mut nodes = Vec::with_capacity(urls.len());
                for (url, node) in urls.iter().zip(opened) {
                    let node = match node {
                        Ok(node) => node,
                        Err(Error::Connect { .. }) => Node::open(url, settings, true).await?,
                        Err(other) => return Err(other),
                    };
                    nodes.push(Arc::new(node));
                }
                nodes
            }
        };
        Ok(Stores {
            nodes: nodes.into(),
            cluster: matches!(topology, Topology::Cluster(_)),
            description: topology.describe(),
        })
    }
}

/// What every context of one runtime shares for Redis: the connection, the policy, and the
/// scripts the policy allows.
pub(crate) struct Link {
    pub(crate) stores: Arc<Stores>,
    pub(crate) policy: Policy,
    known: HashMap<Box<str>, Arc<AllowedScript>>,
    /// The longest allowed source: anything longer is refused without being hashed.
    longest_source: usize,
    /// Blocking connections this link's waits may hold at once (the policy's bound).
    waits: Arc<tokio::sync::Semaphore>,
}

impl Link {
    /// A link to the stores of `topology`, with TLS as `tls` says. Fails with
    /// [`Error::InvalidArgument`] for a malformed URL or topology and [`Error::Connect`] when
    /// Redis (in quorum mode: a majority) cannot be reached; it gives up within a few connect
    /// timeouts.
    pub(crate) async fn connect(
        topology: &Topology,
        policy: Policy,
        connect_timeout: Duration,
        tls: crate::redis::TlsConfig,
    ) -> Result<Self> {
        let settings = Settings {
            connect_timeout,
            command_timeout: policy.command_timeout,
            tls,
        };
        let stores = Stores::open(topology, &settings).await?;
        Ok(Link::new(Arc::new(stores), policy))
    }

    /// A link on `stores` under `policy`.
    pub(crate) fn new(stores: Arc<Stores>, policy: Policy) -> Self {
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
            stores,
            policy,
            known,
            longest_source,
            waits,
        }
    }

    /// Another link on the same stores, under `policy`.
    pub(crate) fn with_policy(&self, policy: Policy) -> Self {
        Link::new(self.stores.clone(), policy)
    }

    /// The topology without passwords.
    pub(crate) fn url(&self) -> &str {
        &self.stores.description
    }

    /// The stores scripts run on: one, or one per quorum member.
    pub(crate) fn nodes(&self) -> &[Arc<Node>] {
        &self.stores.nodes
    }

    /// The settings of every store's server(s) that weaken the lock's guarantees (with
    /// `eviction_only`: only a policy that can evict locks now, skipping what cannot be read),
    /// read from all stores at once, each read bounded by the command timeout.
    pub(crate) async fn weaknesses(&self, eviction_only: bool) -> Vec<crate::redis::Weakness> {
        let timeout = self.policy.command_timeout;
        let checks = self.stores.nodes.iter().map(|node| {
            let name = match node.server() {
                (host, Some(port), _) if !host.is_empty() => format!("{host}:{port}"),
                (path, None, _) if !path.is_empty() => path.clone(),
                _ => self.url().to_owned(),
            };
            let mut conn = node.current().1;
            async move {
                if eviction_only {
                    crate::redis::weakness::eviction_risks(&mut conn, &name, timeout).await
                } else {
                    crate::redis::weakness::weaknesses(&mut conn, &name, timeout).await
                }
            }
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// A permit to hold one connection of a blocking pool: `None` when this link's waits hold
    /// as many as its policy allows.
    pub(in crate::redis) fn blocking_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.waits.clone().try_acquire_owned().ok()
    }

    /// The connections for blocking on the signal list `signal` at `node` (one of
    /// [`Self::nodes`]), shared by every link on the same stores: to its primary (at a fixed
    /// address, or the one Sentinel names now), or in a Cluster to the primary serving the
    /// list's slot.
    pub(in crate::redis) async fn blocking_pool(
        &self,
        node: &Node,
        signal: &str,
    ) -> Option<Arc<BlockingPool>> {
        node.blocking_pool(signal, self.policy.command_timeout)
            .await
    }

    /// The current connection of every store (multiplexed, reconnecting; cheap to clone).
    pub(crate) fn connections(&self) -> Vec<RedisConnection> {
        self.stores.nodes.iter().map(|n| n.current().1).collect()
    }

    /// The bundled script `script`, when the policy allows it.
    pub(crate) fn bundled_script(&self, script: BundledScript) -> Option<Arc<AllowedScript>> {
        self.known
            .values()
            .find(|s| s.role == Some(script))
            .cloned()
    }

    /// The allowed script with this source, or `denied`. Every allowed script's source is
    /// known, so admitting is a map lookup; a refused source is hashed only to name it, and
    /// only when it is no longer than the longest allowed one.
    pub(in crate::redis) fn admit(
        &self,
        source: &str,
    ) -> std::result::Result<Arc<AllowedScript>, String> {
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
