//! Support for dlock's end-to-end tests: real `redis-server` processes and a plain Redis
//! connection for looking at what the lock left in Redis.
//!
//! Every suite starts its own servers; nothing here mocks Redis.

pub mod cluster;
pub mod driver;
pub mod node;
pub mod protocol;
pub mod repository;
pub mod stats;
pub mod tls;
pub mod tool;
pub mod workers;

pub use dlock_testing::RedisServer;

pub mod proxy;

pub mod sentinel;

pub mod history;

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

/// A plain multiplexed connection to `server`, for inspecting and arranging Redis state. A
/// connection the server refuses or resets while it is being made (a server restarting, or one
/// whose clients a Sentinel just disconnected after a failover) is made again, for up to 30 s.
pub async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    let start = std::time::Instant::now();
    loop {
        match client.get_multiplexed_async_connection().await {
            Ok(conn) => return conn,
            Err(e) if e.is_io_error() && start.elapsed() < std::time::Duration::from_secs(30) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot connect to {}: {e}", server.url()),
        }
    }
}

/// Runs `query` on a fresh connection to `server` until it succeeds, on a new connection each
/// time, for up to 30 s: for reading a server whose clients may be disconnected under the
/// test (a Sentinel reconfiguring it after a failover).
pub async fn query_retrying<T, F, Fut>(server: &RedisServer, mut query: F) -> T
where
    F: FnMut(redis::aio::MultiplexedConnection) -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let start = std::time::Instant::now();
    loop {
        match query(raw(server).await).await {
            Ok(value) => return value,
            Err(_) if start.elapsed() < std::time::Duration::from_secs(30) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{} kept failing: {e}", server.url()),
        }
    }
}

/// `GET key` as a string, or `None`.
pub async fn get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

/// `PTTL key`.
pub async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// Polls `check` every few milliseconds until it returns true; panics with `what` if that does
/// not happen within `limit`. For waiting on Redis-side events (a key expiring) that have no
/// notification; the limit is a hang guard, not a timing assertion.
pub async fn eventually<F, Fut>(what: &str, limit: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The minimal ACL rule for a dlock user confined to the key namespace `app:` (see
/// docs/SECURITY.md), after `ACL SETUSER NAME on >PASSWORD`.
pub const MINIMAL_ACL: &[&str] = &[
    "resetkeys",
    "~app:*",
    "~{app:*",
    "resetchannels",
    "-@all",
    "+evalsha",
    "+eval",
    "+get",
    "+set",
    "+del",
    "+pexpire",
    "+pttl",
    "+incr",
    "+llen",
    "+rpush",
    "+lpush",
    "+blpop",
];

/// `ACL SETUSER default` with `rules` on `server` (the user the tests' connections are).
pub async fn default_user(server: &RedisServer, rules: &[&str]) {
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg(rules)
        .query_async(&mut raw(server).await)
        .await
        .unwrap();
}

/// Creates (or resets) the user `name` with `password` and [`MINIMAL_ACL`] on `server`.
pub async fn minimal_acl_user(server: &RedisServer, name: &str, password: &str) {
    let mut admin = raw(server).await;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(name)
        .arg("on")
        .arg(format!(">{password}"))
        .arg(MINIMAL_ACL)
        .query_async(&mut admin)
        .await
        .unwrap();
}

/// Takes `key`'s expiry away (`PERSIST`): no wait on it is then cut at the holder's expiry.
async fn persist(conn: &mut redis::aio::MultiplexedConnection, key: &str) {
    let _: i64 = redis::cmd("PERSIST")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap();
}

/// `options` for a waiter that only a release can wake within a test: it wakes on release,
/// and its one retry is ten minutes away.
pub fn woken_only_by_release(options: LockOptions) -> LockOptions {
    let ten_minutes = std::time::Duration::from_secs(600);
    options
        .with_wake_on_release(dlock_host::WakeOnRelease::Always)
        .with_retry_count(1)
        .with_retry_delay(ten_minutes)
        .with_max_retry_delay(ten_minutes)
}

/// The push wake-up, end to end: `holder` takes `key` and its Redis key (`redis_key`, the key
/// with the holder's prefix) loses its expiry, so only a release can free it in time; `waiter`
/// (made with [`woken_only_by_release`]) marks the key and blocks on its signal list; the
/// release wakes it. `conn` reaches the Redis that holds the lock. Hands back the waiter and
/// the lock it got, checked to be the one in Redis, with the release's signal consumed.
pub async fn release_wakes_the_waiter(
    conn: &mut redis::aio::MultiplexedConnection,
    redis_key: &str,
    holder: &Client,
    waiter: Client,
    key: &str,
) -> (Client, dlock_host::LockHandle) {
    use dlock_host::contract::{Companion, companion_key};
    // Hang guard for events that must happen (never a timing assertion).
    const GUARD: std::time::Duration = std::time::Duration::from_secs(30);
    let ttl = std::time::Duration::from_secs(60);
    let lock = holder.acquire(key, ttl).await.unwrap();
    persist(conn, redis_key).await;
    let owned = key.to_owned();
    let waiting = tokio::spawn(async move {
        let got = waiter.acquire(&owned, ttl).await;
        (waiter, got)
    });
    eventually("the waiter to block on the signal list", GUARD, || {
        let mut c = conn.clone();
        async move { blocked_clients(&mut c).await == 1 }
    })
    .await;
    let waiters = companion_key(redis_key, Companion::Waiters).unwrap();
    assert!(exists(conn, &waiters).await, "the waiter marked the key");
    assert_eq!(
        lock.release().await.unwrap(),
        dlock_host::ReleaseOutcome::Released
    );
    let (waiter, got) = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("the release did not wake the waiter")
        .unwrap();
    let got = got.unwrap();
    assert!(got.is_held());
    assert_eq!(get(conn, redis_key).await, Some(got.info().token));
    let signal = companion_key(redis_key, Companion::Signal).unwrap();
    assert!(!exists(conn, &signal).await, "the waiter took the signal");
    (waiter, got)
}

/// Clients blocked in a command (BLPOP) on the server.
pub async fn blocked_clients(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// `EXISTS key`.
pub async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// `DBSIZE`.
pub async fn dbsize(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    redis::cmd("DBSIZE").query_async(conn).await.unwrap()
}

/// A proxy in front of `server`, and a runtime whose Redis connection runs through it with
/// this command timeout.
pub async fn via_proxy(
    server: &RedisServer,
    command_timeout: std::time::Duration,
) -> (proxy::Proxy, Runtime) {
    let proxy = proxy::Proxy::start(([127, 0, 0, 1], server.port()).into())
        .await
        .unwrap();
    let policy = dlock_host::Policy::default().with_command_timeout(command_timeout);
    let runtime = Runtime::builder(proxy.url())
        .with_policy(policy)
        .build()
        .await
        .unwrap();
    (proxy, runtime)
}

/// Options that give up fast: `retry_count` retries, 10 ms apart at first.
pub fn quick_options(retry_count: u32) -> LockOptions {
    LockOptions::default()
        .with_retry_count(retry_count)
        .with_retry_delay(std::time::Duration::from_millis(10))
        .with_max_retry_delay(std::time::Duration::from_millis(50))
}

/// The Redis Cluster hash slot of `key` (see [`dlock_host::contract::hash_slot`]).
pub fn key_slot(key: &str) -> u16 {
    dlock_host::contract::hash_slot(key.as_bytes())
}

/// Sends `signal` to the server process (SIGSTOP to freeze it, SIGCONT to resume it).
pub fn signal_server(server: &RedisServer, signal: rustix::process::Signal) {
    let pid = server.pid().expect("the server is running");
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a valid pid");
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Components built by `build.rs`: the hostile ones from `tests/hostile/` (their modes are
/// listed in `tests/hostile/modes/src/lib.rs`), a fresh build of `guest/` and the floor
/// component of `tests/floor/`.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));

    /// The Lua script of the hostile `huge-reply` mode (16 MiB reply).
    pub const HUGE_REPLY_SCRIPT: &str = include_str!("../hostile/huge-reply.lua");
}
