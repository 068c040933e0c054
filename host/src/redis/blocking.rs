//! Connections of their own for blocking commands: a `BLPOP` holds its connection until it
//! returns, so it never runs on the multiplexed connection every client shares.

use std::sync::Mutex;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

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
