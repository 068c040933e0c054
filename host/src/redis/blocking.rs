//! Connections of their own for blocking commands: a `BLPOP` holds its connection until it
//! returns, so it never runs on the multiplexed connection every client shares.

use std::sync::Mutex;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

/// Idle connections for blocking waits, opened on demand. How many may be in use at once is
/// bounded by whoever hands out the permits (a link's semaphore); this keeps at most that many
/// idle for reuse.
pub(crate) struct BlockingPool {
    client: redis::Client,
    connect_timeout: Duration,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl BlockingPool {
    /// A pool whose connections `client` opens, each attempt bounded by `connect_timeout`.
    pub(crate) fn new(client: redis::Client, connect_timeout: Duration) -> Self {
        BlockingPool {
            client,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection, or a new one.
    pub(crate) async fn take(&self) -> redis::RedisResult<MultiplexedConnection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // The caller bounds every command itself (a blocking one by its own timeout).
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Takes back a connection whose last command was answered, keeping at most `keep` idle
    /// (the rest are closed).
    pub(crate) fn give_back(&self, conn: MultiplexedConnection, keep: usize) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < keep {
            idle.push(conn);
        }
    }
}
