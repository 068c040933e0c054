//! A handle on one of a runtime's Redis connections, whatever the deployment.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A multiplexed, reconnecting Redis connection (cheap to clone): to one primary (found
/// through Sentinel or not), or to a Redis Cluster, where each command goes to its key's
/// primary. Run commands on it with redis-rs (`redis::cmd(..).query_async(&mut conn)`); it has
/// no timeout of its own, so bound your calls on it.
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisConnection {
    /// One primary.
    Primary(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Primary(_) => "RedisConnection::Primary",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Primary(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Primary(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Primary(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}
