//! A Redis Cluster on loopback for the tests: `redis-server`s with `--cluster-enabled yes`,
//! joined by `redis-cli --cluster create`, killed when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{RedisServer, eventually, raw};

/// How long a cluster may take to agree on its slots (a hang guard).
const FORMING: Duration = Duration::from_secs(30);

/// The `redis-cli` binary: `$DLOCK_REDIS_CLI` if set, else `redis-cli` on `PATH`.
fn redis_cli() -> PathBuf {
    std::env::var_os("DLOCK_REDIS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-cli"))
}

/// The nodes of a cluster.
pub struct Cluster {
    /// Every node, primaries first as created (roles change with failovers).
    pub nodes: Vec<RedisServer>,
}

async fn info(server: &RedisServer, command: &[&str]) -> String {
    let mut conn = raw(server).await;
    redis::cmd(command[0])
        .arg(&command[1..])
        .query_async(&mut conn)
        .await
        .unwrap_or_default()
}

impl Cluster {
    /// Starts `primaries` primaries with `replicas` replicas each, and waits until every node
    /// reports `cluster_state:ok` and every replica is in sync with its primary.
    pub async fn start(primaries: usize, replicas: usize) -> Cluster {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ];
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(&args)
                    .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
            })
            .collect();
        let out = Command::new(redis_cli())
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        cluster.wait_until_settled().await;
        cluster
    }

    /// Waits until every node says `cluster_state:ok` and sees every other node, and every
    /// replica's link to its primary is up.
    pub async fn wait_until_settled(&self) {
        eventually("the cluster settling", FORMING, || async {
            let known = format!("cluster_known_nodes:{}", self.nodes.len());
            for node in &self.nodes {
                let state = info(node, &["CLUSTER", "INFO"]).await;
                let replication = info(node, &["INFO", "replication"]).await;
                if !state.contains("cluster_state:ok")
                    || !state.contains(&known)
                    || replication.contains("master_link_status:down")
                    || replication.contains("master_sync_in_progress:1")
                {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Seed URLs: every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The index of the node that is now the primary serving `key`'s slot.
    pub async fn primary_of(&self, key: &str) -> usize {
        let slot = crate::key_slot(key);
        for (i, node) in self.nodes.iter().enumerate() {
            let role = info(node, &["INFO", "replication"]).await;
            if !role.contains("role:master") {
                continue;
            }
            let mine = info(node, &["CLUSTER", "NODES"]).await;
            let me = mine.lines().find(|l| l.contains("myself")).unwrap_or("");
            if owns(me, slot) {
                return i;
            }
        }
        panic!("no primary serves slot {slot}")
    }

    /// The index of a replica of the primary at index `primary`.
    pub async fn replica_of(&self, primary: usize) -> usize {
        let id: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut raw(&self.nodes[primary]).await)
            .await
            .unwrap();
        for (i, node) in self.nodes.iter().enumerate() {
            let nodes = info(node, &["CLUSTER", "NODES"]).await;
            let me = nodes.lines().find(|l| l.contains("myself")).unwrap_or("");
            if me.split(' ').nth(3) == Some(id.as_str()) {
                return i;
            }
        }
        panic!("node {primary} has no replica")
    }

    /// `CLUSTER FAILOVER` on the replica at index `replica` (the coordinated, manual kind: the
    /// replica catches up with its primary first), and waits until it is a primary.
    pub async fn failover(&self, replica: usize) {
        let () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query_async(&mut raw(&self.nodes[replica]).await)
            .await
            .unwrap();
        eventually("the failover", FORMING, || async {
            info(&self.nodes[replica], &["INFO", "replication"])
                .await
                .contains("role:master")
        })
        .await;
    }
}

/// Whether a `CLUSTER NODES` line lists `slot` among its slot ranges.
fn owns(line: &str, slot: u16) -> bool {
    line.split(' ').skip(8).any(|range| {
        let (from, to) = range.split_once('-').unwrap_or((range, range));
        match (from.parse::<u16>(), to.parse::<u16>()) {
            (Ok(from), Ok(to)) => (from..=to).contains(&slot),
            _ => false,
        }
    })
}
