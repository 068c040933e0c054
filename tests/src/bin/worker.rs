//! `worker`: a lock client driven over stdin/stdout by the worker protocol
//! (`dlock_tests::protocol`), for `torture` and the reliability tests, which run several as
//! separate processes and pause, kill or partition them.
//!
//! `worker [--resource URL]`, with the lock's Redis in `DLOCK_REDIS_URL` (not on the command
//! line, where `ps` would show a password; a comma list is quorum mode, or the seeds of a
//! Redis Cluster with `DLOCK_REDIS_CLUSTER` set); the fenced resource and guarded sets live
//! at `--resource` (default: the lock's Redis).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use dlock_host::{Deadline, Error, LockHandle, LockOptions, Runtime, Topology};
use dlock_tests::protocol::{Reply, Request, monotonic_ns};
use dlock_tests::tool::{self, EXIT_OK, EXIT_USAGE, Failure, ToolResult};
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const FENCED_WRITE: &str = include_str!("../../../examples/fenced-write.lua");

/// A fenced register write: `KEYS[1]` the value, `KEYS[2]` the highest fence seen, `ARGV[1]` the
/// writer's fence, `ARGV[2]` the new value. 1 written, 0 refused (a newer holder has written).
const FENCED_SET: &str = "local highest = tonumber(redis.call('GET', KEYS[2]) or '0') \
    if tonumber(ARGV[1]) < highest then return 0 end \
    redis.call('SET', KEYS[2], ARGV[1]) redis.call('SET', KEYS[1], ARGV[2]) return 1";

/// A reply for a lock error: `unknown` when a retry might help (the outcome may be either),
/// else `fail`.
fn from_lock_error(e: &Error) -> Reply {
    if e.is_retryable() {
        Reply::unknown(e)
    } else {
        Reply::fail(e)
    }
}

struct Worker {
    client: dlock_host::Client,
    conn: MultiplexedConnection,
    lock: Option<LockHandle>,
    fence: Option<u64>,
    read: Option<String>,
    /// An `Instant` and the `CLOCK_MONOTONIC` reading taken with it.
    base: (Instant, u64),
}

impl Worker {
    fn monotonic_at(&self, at: Instant) -> u64 {
        let (base_instant, base_ns) = self.base;
        match at.checked_duration_since(base_instant) {
            Some(after) => base_ns + u64::try_from(after.as_nanos()).unwrap_or(u64::MAX / 2),
            None => {
                base_ns.saturating_sub(u64::try_from((base_instant - at).as_nanos()).unwrap_or(0))
            }
        }
    }

    fn held(&self, lock: &LockHandle) -> Reply {
        let info = lock.info();
        Reply {
            token: Some(info.token),
            fence: info.fence,
            valid_until_ns: Some(self.monotonic_at(info.valid_until)),
            ..Reply::ok()
        }
    }

    async fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Ping => Reply::ok(),
            Request::Acquire {
                key,
                ttl_ms,
                wait_ms,
            } => {
                let ttl = Duration::from_millis(ttl_ms);
                let acquired = match wait_ms {
                    Some(wait) => {
                        let deadline = Deadline::after(Duration::from_millis(wait));
                        self.client.wait_for_lock(&key, ttl, deadline).await
                    }
                    None => self.client.acquire(&key, ttl).await,
                };
                match acquired {
                    Ok(lock) => {
                        let reply = self.held(&lock);
                        self.fence = reply.fence;
                        self.lock = Some(lock);
                        reply
                    }
                    Err(e) => from_lock_error(&e),
                }
            }
            Request::Extend { ttl_ms } => match &self.lock {
                None => Reply::fail("no lock"),
                Some(lock) => match lock.extend(Duration::from_millis(ttl_ms)).await {
                    Ok(()) => self.held(lock),
                    Err(e) => from_lock_error(&e),
                },
            },
            Request::Release => match self.lock.take() {
                None => Reply::fail("no lock"),
                Some(lock) => match lock.release().await {
                    Ok(dlock_host::ReleaseOutcome::Released) => Reply::ok(),
                    // Nothing changed: the lease had run out, or the key changed hands.
                    Ok(other) => Reply::fail(format!("not released: {other:?}")),
                    Err(e) => from_lock_error(&e),
                },
            },
            Request::FencedWrite { resource, element } => {
                let Some(fence) = self.fence else {
                    return Reply::fail("no fence");
                };
                let accepted: redis::RedisResult<i64> = redis::Script::new(FENCED_WRITE)
                    .key(&resource)
                    .key(format!("{resource}:max-fence"))
                    .arg(fence)
                    .arg(&element)
                    .invoke_async(&mut self.conn)
                    .await;
                match accepted {
                    Ok(1) => Reply::ok(),
                    Ok(_) => Reply::fail(format!("fence {fence} rejected as stale")),
                    Err(e) => Reply::unknown(e),
                }
            }
            Request::GuardedRead { set } => {
                match redis::cmd("GET")
                    .arg(&set)
                    .query_async::<Option<String>>(&mut self.conn)
                    .await
                {
                    Ok(value) => {
                        self.read = Some(value.unwrap_or_default());
                        Reply::ok()
                    }
                    Err(e) => Reply::unknown(e),
                }
            }
            Request::GuardedWrite {
                set,
                element,
                fenced,
            } => {
                let Some(read) = self.read.take() else {
                    return Reply::fail("guarded_write without guarded_read");
                };
                let value = if read.is_empty() {
                    element
                } else {
                    format!("{read},{element}")
                };
                if fenced {
                    let written: redis::RedisResult<i64> = redis::Script::new(FENCED_SET)
                        .key(&set)
                        .key(format!("{set}:max-fence"))
                        .arg(self.fence.unwrap_or(0))
                        .arg(value)
                        .invoke_async(&mut self.conn)
                        .await;
                    return match written {
                        Ok(1) => Reply::ok(),
                        Ok(_) => Reply::fail("a newer holder has written"),
                        Err(e) => Reply::unknown(e),
                    };
                }
                match redis::cmd("SET")
                    .arg(&set)
                    .arg(value)
                    .query_async::<()>(&mut self.conn)
                    .await
                {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::unknown(e),
                }
            }
        }
    }
}

fn main() -> ExitCode {
    tool::main("worker", async {
        let redis_url = std::env::var("DLOCK_REDIS_URL")
            .map_err(|_| Failure::new(EXIT_USAGE, "DLOCK_REDIS_URL is not set"))?;
        let mut args = std::env::args().skip(1);
        let resource_url = match (args.next().as_deref(), args.next()) {
            (Some("--resource"), Some(url)) => url,
            (None, _) => redis_url.clone(),
            _ => return Err(Failure::new(EXIT_USAGE, "usage: worker [--resource URL]")),
        };
        serve(&redis_url, &resource_url).await
    })
}

/// Serves requests from stdin until it closes; locks live at `redis_url`, the fenced resource
/// and guarded sets at `resource_url`.
async fn serve(redis_url: &str, resource_url: &str) -> ToolResult<u8> {
    let urls = Topology::split_urls(redis_url);
    let topology = if std::env::var_os("DLOCK_REDIS_CLUSTER").is_some() {
        Topology::cluster(urls)
    } else if urls.len() > 1 {
        Topology::quorum(urls)
    } else {
        Topology::Single(redis_url.to_owned())
    };
    // Fencing cannot be made safe over a quorum (and is refused there).
    let fencing = topology.nodes() == 1;
    let runtime = Runtime::connect(topology)
        .await
        .map_err(Failure::internal)?;
    let options = LockOptions::default().with_fencing(fencing);
    let client = runtime.client(options).await.map_err(Failure::internal)?;
    let conn = redis::Client::open(resource_url)
        .map_err(Failure::internal)?
        .get_multiplexed_async_connection()
        .await
        .map_err(Failure::internal)?;
    let mut worker = Worker {
        client,
        conn,
        lock: None,
        fence: None,
        read: None,
        base: (Instant::now(), monotonic_ns()),
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await.map_err(Failure::internal)? {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(request) => worker.handle(request).await,
            Err(e) => Reply::fail(format!("bad request: {e}")),
        };
        let mut out = serde_json::to_vec(&reply).map_err(Failure::internal)?;
        out.push(b'\n');
        stdout.write_all(&out).await.map_err(Failure::internal)?;
        stdout.flush().await.map_err(Failure::internal)?;
    }
    Ok(EXIT_OK)
}
