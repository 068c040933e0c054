//! Connections of their own for blocking commands: a `BLPOP` holds its connection until it
//! returns, so it never runs on the multiplexed connection every client shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, Value};

use crate::contract::hash_slot;
use crate::redis::connection::RedisConnection;
use crate::redis::tls::{self, TlsConfig};

/// Idle connections for blocking waits, opened on demand to the node's primary. How many may
/// be in use at once is bounded by whoever hands out the permits (a link's semaphore); this
/// keeps at most that many idle for reuse. Behind Sentinel the primary moves: after
/// [`BlockingPool::retarget`] new connections go to the new one, and connections to the old
/// one are closed as they come back.
pub(crate) struct BlockingPool {
    target: Mutex<Target>,
    connect_timeout: Duration,
}

/// Where the pool's connections go, and the idle ones that go there.
struct Target {
    client: redis::Client,
    /// Counts retargets; a connection is kept only if it was opened in the current one.
    generation: u64,
    idle: Vec<MultiplexedConnection>,
}

/// A connection taken from a [`BlockingPool`], to give back when its last command was
/// answered.
pub(crate) struct Taken {
    pub(crate) conn: MultiplexedConnection,
    generation: u64,
}

impl BlockingPool {
    /// A pool whose connections `client` opens, each attempt bounded by `connect_timeout`.
    pub(crate) fn new(client: redis::Client, connect_timeout: Duration) -> Self {
        BlockingPool {
            target: Mutex::new(Target {
                client,
                generation: 0,
                idle: Vec::new(),
            }),
            connect_timeout,
        }
    }

    /// From now on, connections go where `client` opens them; idle ones are closed.
    pub(crate) fn retarget(&self, client: redis::Client) {
        let mut target = self.target.lock().unwrap_or_else(|e| e.into_inner());
        target.client = client;
        target.generation += 1;
        target.idle.clear();
    }

    /// An idle connection, or a new one.
    pub(crate) async fn take(&self) -> redis::RedisResult<Taken> {
        let (client, generation) = {
            let mut target = self.target.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(conn) = target.idle.pop() {
                let generation = target.generation;
                return Ok(Taken { conn, generation });
            }
            (target.client.clone(), target.generation)
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // The caller bounds every command itself (a blocking one by its own timeout).
            .set_response_timeout(None);
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Taken { conn, generation })
    }

    /// Takes back a connection whose last command was answered, keeping at most `keep` idle
    /// (the rest, and any opened before the last retarget, are closed).
    pub(crate) fn give_back(&self, taken: Taken, keep: usize) {
        let mut target = self.target.lock().unwrap_or_else(|e| e.into_inner());
        if taken.generation == target.generation && target.idle.len() < keep {
            target.idle.push(taken.conn);
        }
    }
}

/// Blocking pools for a Redis Cluster, one per primary: a signal list is blocked on at the
/// primary serving its slot. Where slots are is asked with `CLUSTER SLOTS` on the first wait
/// and again after a wait failed (a slot moved, a primary failed over); pools of nodes no
/// longer primaries are dropped then.
pub(crate) struct ClusterPools {
    /// The first seed's credentials and TLS mode, for connections to any node.
    template: ConnectionInfo,
    tls: TlsConfig,
    connect_timeout: Duration,
    /// The slot ranges and their primaries; empty until asked, and after a failure.
    slots: Mutex<Vec<SlotRange>>,
    pools: Mutex<HashMap<Address, Arc<BlockingPool>>>,
}

type Address = (String, u16);

/// Slots `first..=last` and the primary serving them.
struct SlotRange {
    first: u16,
    last: u16,
    primary: Address,
}

impl ClusterPools {
    /// Pools whose connections are made like `template`'s (credentials, TLS) to each primary.
    pub(crate) fn new(template: ConnectionInfo, tls: TlsConfig, connect_timeout: Duration) -> Self {
        ClusterPools {
            template,
            tls,
            connect_timeout,
            slots: Mutex::new(Vec::new()),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The pool of the primary serving `key`'s slot, asking the cluster over `conn` (within
    /// `timeout`) where slots are when this does not know; `None` when it cannot tell.
    pub(crate) async fn pool_for(
        &self,
        key: &str,
        mut conn: RedisConnection,
        timeout: Duration,
    ) -> Option<Arc<BlockingPool>> {
        let slot = hash_slot(key.as_bytes());
        let primary = match self.primary_of(slot) {
            Some(primary) => primary,
            None => {
                let reply = tokio::time::timeout(
                    timeout,
                    redis::cmd("CLUSTER")
                        .arg("SLOTS")
                        .query_async::<Value>(&mut conn),
                )
                .await
                .ok()?
                .ok()?;
                let ranges = slot_ranges(&reply);
                self.pools
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|address, _| ranges.iter().any(|r| &r.primary == address));
                // A redirect learnt meanwhile stays first: it is newer than any node's map.
                self.slots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(ranges);
                self.primary_of(slot)?
            }
        };
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(&primary) {
            return Some(pool.clone());
        }
        let (host, port) = primary.clone();
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let client = tls::client(self.template.clone().set_addr(addr), &self.tls).ok()?;
        let pool = Arc::new(BlockingPool::new(client, self.connect_timeout));
        pools.insert(primary, pool.clone());
        Some(pool)
    }

    /// Forgets where slots are: the next wait asks the cluster.
    pub(crate) fn forget_slots(&self) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// A wait on `key` was redirected (`MOVED`) to the primary at `to`: the next wait on
    /// `key`'s slot goes there, whatever the other nodes still say (a node that has not heard
    /// of a failover yet answers `CLUSTER SLOTS` with the old primary); where the other slots
    /// are is asked again.
    pub(crate) fn moved(&self, key: &str, to: Address) {
        let slot = hash_slot(key.as_bytes());
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.clear();
        slots.push(SlotRange {
            first: slot,
            last: slot,
            primary: to,
        });
    }

    fn primary_of(&self, slot: u16) -> Option<Address> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .find(|r| (r.first..=r.last).contains(&slot))
            .map(|r| r.primary.clone())
    }
}

/// The slot ranges of a `CLUSTER SLOTS` reply whose primary has a known address (Redis
/// names an unknown one `""` or `"?"`).
fn slot_ranges(reply: &Value) -> Vec<SlotRange> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(fields) = entry else {
                return None;
            };
            let [Value::Int(first), Value::Int(last), Value::Array(node), ..] = fields.as_slice()
            else {
                return None;
            };
            let [host, Value::Int(port), ..] = node.as_slice() else {
                return None;
            };
            let host = match host {
                Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
                Value::SimpleString(text) => text.clone(),
                _ => return None,
            };
            if host.is_empty() || host == "?" {
                return None;
            }
            Some(SlotRange {
                first: u16::try_from(*first).ok()?,
                last: u16::try_from(*last).ok()?,
                primary: (host, u16::try_from(*port).ok()?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redis::{IntoConnectionInfo, Value};

    use super::{ClusterPools, SlotRange, TlsConfig, hash_slot, slot_ranges};
    use crate::contract::HASH_SLOTS;

    #[test]
    fn a_moved_redirect_wins_over_every_slot_map() {
        let template = "redis://127.0.0.1:7000".into_connection_info().unwrap();
        let pools = ClusterPools::new(template, TlsConfig::default(), Duration::from_secs(1));
        *pools.slots.lock().unwrap() = vec![SlotRange {
            first: 0,
            last: 16383,
            primary: ("127.0.0.1".into(), 7000),
        }];
        pools.moved("job", ("127.0.0.1".into(), 7005));
        let slot = hash_slot(b"job");
        assert_eq!(pools.primary_of(slot), Some(("127.0.0.1".into(), 7005)));
        // Every other slot is asked again.
        assert_eq!(pools.primary_of((slot + 1) % HASH_SLOTS), None);
    }

    #[test]
    fn slot_ranges_keep_primaries_with_a_known_address() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node("?", 7001)]),
            Value::Array(vec![Value::Int(10923), Value::Int(16383), node("", 7002)]),
            Value::Array(vec![Value::Int(0), Value::Int(70000), node("h", 1)]),
            Value::Int(3),
        ]);
        let ranges = slot_ranges(&reply);
        assert_eq!(ranges.len(), 1);
        assert_eq!((ranges[0].first, ranges[0].last), (0, 5460));
        assert_eq!(ranges[0].primary, ("127.0.0.1".to_owned(), 7000));
    }
}
