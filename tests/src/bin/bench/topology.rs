//! Where the throughput bench takes its locks: the single Redis, a quorum of independent
//! primaries, or a Redis Cluster, each started here on loopback (but the single one, which
//! may be given).

use dlock_host::{Allocation, LockComponent, Runtime, Topology, bundled};
use dlock_tests::RedisServer;
use dlock_tests::cluster::Cluster;

/// A deployment mode of the bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One redis-server (the given one, or one started here).
    Single,
    /// Quorum mode (Redlock) over `--nodes` redis-servers started here.
    Quorum,
    /// A Redis Cluster of `--nodes` primaries (no replicas) started here.
    Cluster,
}

/// A mode's runtime, and the servers whose CPU time counts as Redis CPU.
pub struct Target {
    pub mode: Mode,
    pub runtime: Runtime,
    /// Plain URLs of every server behind the runtime, for `INFO cpu`.
    pub servers: Vec<String>,
    _quorum: Vec<RedisServer>,
    _cluster: Option<Cluster>,
}

impl Target {
    /// The runtime for `mode`, its clients allocated as `allocation` says: on `single_url` for
    /// [`Mode::Single`], else on `nodes` servers started here.
    pub async fn start(
        mode: Mode,
        single_url: &str,
        nodes: usize,
        allocation: Allocation,
    ) -> Result<Target, String> {
        let fail = |e: dlock_host::Error| e.to_string();
        let connect = async |topology: Topology| {
            let component = LockComponent::from_bytes(bundled::COMPONENT, allocation)?;
            Runtime::builder(topology)
                .with_component(component)
                .build()
                .await
        };
        Ok(match mode {
            Mode::Single => Target {
                mode,
                runtime: connect(single_url.into()).await.map_err(fail)?,
                servers: vec![single_url.to_owned()],
                _quorum: Vec::new(),
                _cluster: None,
            },
            Mode::Quorum => {
                let servers = (0..nodes)
                    .map(|_| RedisServer::start().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
                Target {
                    mode,
                    runtime: connect(Topology::quorum(urls.clone()))
                        .await
                        .map_err(fail)?,
                    servers: urls,
                    _quorum: servers,
                    _cluster: None,
                }
            }
            Mode::Cluster => {
                let cluster = Cluster::start(nodes, 0).await;
                let urls = cluster.seeds();
                Target {
                    mode,
                    runtime: connect(Topology::cluster(urls.clone()))
                        .await
                        .map_err(fail)?,
                    servers: urls,
                    _quorum: Vec::new(),
                    _cluster: Some(cluster),
                }
            }
        })
    }
}
