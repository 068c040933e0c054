//! Support for dlock's end-to-end tests: real `redis-server` processes and a plain Redis
//! connection for looking at what the lock left in Redis.
//!
//! Every suite starts its own servers; nothing here mocks Redis.

pub use dlock_host::server::RedisServer;

use dlock_host::{Client, LockOptions, Runtime};

/// Starts a fresh server, failing loudly (never skipping) when `redis-server` is missing.
pub fn redis() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

/// A runtime on the bundled component, connected to `server`.
pub async fn runtime(server: &RedisServer) -> Runtime {
    Runtime::connect(&server.url()).await.unwrap()
}

/// A client with default options on `server`, and the runtime it came from.
pub async fn client(server: &RedisServer) -> (Runtime, Client) {
    let runtime = runtime(server).await;
    let client = runtime.client(LockOptions::default()).await.unwrap();
    (runtime, client)
}

/// A plain multiplexed connection to `server`, for inspecting and arranging Redis state.
pub async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `GET key` as a string, or `None`.
pub async fn get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

/// `PTTL key`.
pub async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}
