//! `worker`: lock clients driven over stdin/stdout by the worker protocol
//! (`dlock_tests::protocol`), for `torture` and the reliability tests, which run several as
//! separate processes and pause, kill or partition them. Each lane is a client of its own on
//! one runtime; lanes run concurrently.
//!
//! `worker [--resource URL]`, with the lock's Redis in `DLOCK_REDIS_URL` (not on the command
//! line, where `ps` would show a password; a comma list is quorum mode, or the seeds of a
//! Redis Cluster with `DLOCK_REDIS_CLUSTER` set); the fenced resource and guarded sets live
//! at `--resource` (default: the lock's Redis).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dlock_host::{
    Deadline, Error, KeepAlive, KeepAliveOptions, LockHandle, LockOptions, Runtime, Topology,
};
use dlock_tests::protocol::{Envelope, Reply, Request, monotonic_ns};
use dlock_tests::tool::{self, EXIT_OK, EXIT_USAGE, Failure, ToolResult};
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, mpsc};

const FENCED_WRITE: &str = include_str!("../../../examples/fenced-write.lua");

/// A fenced register write: `KEYS[1]` the value, `KEYS[2]` the highest fence seen, `ARGV[1]` the
/// writer's fence, `ARGV[2]` the new value. 1 written, 0 refused (a newer holder has written).
const FENCED_SET: &str = "local highest = tonumber(redis.call('GET', KEYS[2]) or '0') \
    if tonumber(ARGV[1]) < highest then return 0 end \
    redis.call('SET', KEYS[2], ARGV[1]) redis.call('SET', KEYS[1], ARGV[2]) return 1";

/// A reply for a lock error: `unknown` when a retry might help (the outcome may be either),
/// `fail` (busy) when the lock was held, else `fail`.
fn from_lock_error(e: &Error) -> Reply {
    if e.is_retryable() {
        Reply::unknown(e)
    } else if matches!(e, Error::NotAcquired) {
        Reply::busy(e)
    } else {
        Reply::fail(e)
    }
}

/// The lock a lane holds: a handle, or a handle kept alive in the background.
enum Held {
    Handle(LockHandle),
    Kept(KeepAlive),
}

impl Held {
    fn handle(&self) -> &LockHandle {
        match self {
            Held::Handle(h) => h,
            Held::Kept(k) => k.handle(),
        }
    }
}

/// One lane: a lock client of its own and what it holds.
struct Worker {
    client: dlock_host::Client,
    conn: MultiplexedConnection,
    lock: Option<Held>,
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
            Request::Ping | Request::Close => Reply::ok(),
            Request::Acquire {
                key,
                ttl_ms,
                wait_ms,
                cancel_after_ms,
            } => {
                let ttl = Duration::from_millis(ttl_ms);
                let acquiring = async {
                    match wait_ms {
                        Some(wait) => {
                            let deadline = Deadline::after(Duration::from_millis(wait));
                            self.client.wait_for_lock(&key, ttl, deadline).await
                        }
                        None => self.client.acquire(&key, ttl).await,
                    }
                };
                let acquired = match cancel_after_ms {
                    Some(ms) => {
                        match tokio::time::timeout(Duration::from_millis(ms), acquiring).await {
                            Ok(acquired) => acquired,
                            Err(_) => return Reply::cancelled(),
                        }
                    }
                    None => acquiring.await,
                };
                match acquired {
                    Ok(lock) => {
                        let reply = self.held(&lock);
                        self.fence = reply.fence;
                        self.lock = Some(Held::Handle(lock));
                        reply
                    }
                    Err(e) => from_lock_error(&e),
                }
            }
            Request::Extend { ttl_ms } => match &self.lock {
                None => Reply::fail("no lock"),
                Some(held) => match held.handle().extend(Duration::from_millis(ttl_ms)).await {
                    Ok(()) => self.held(held.handle()),
                    Err(e) => from_lock_error(&e),
                },
            },
            Request::Keep { ttl_ms } => match self.lock.take() {
                Some(Held::Handle(lock)) => {
                    let options = KeepAliveOptions::new(Duration::from_millis(ttl_ms));
                    self.lock = Some(Held::Kept(lock.keep_alive(options)));
                    Reply::ok()
                }
                other => {
                    self.lock = other;
                    Reply::fail("no lock to keep")
                }
            },
            Request::Lost => match &self.lock {
                Some(Held::Kept(kept)) => match kept.lost_signal().get() {
                    Some(lost) => Reply {
                        error: Some(lost.to_string()),
                        ..Reply::ok()
                    },
                    // Still kept: with the validity the handle counts on now.
                    None => Reply {
                        outcome: dlock_tests::protocol::Outcome::Fail,
                        error: Some("kept".into()),
                        ..self.held(kept.handle())
                    },
                },
                _ => Reply::fail("no kept lock"),
            },
            Request::Release => {
                let released = match self.lock.take() {
                    None => return Reply::fail("no lock"),
                    Some(Held::Handle(lock)) => lock.release().await,
                    Some(Held::Kept(kept)) => kept.release().await,
                };
                match released {
                    Ok(dlock_host::ReleaseOutcome::Released) => Reply::ok(),
                    // Nothing changed: the lease had run out, or the key changed hands.
                    Ok(other) => Reply::fail(format!("not released: {other:?}")),
                    Err(e) => from_lock_error(&e),
                }
            }
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

/// Serves requests from stdin until it closes, each lane in a task of its own (its requests in
/// order); locks live at `redis_url`, the fenced resource and guarded sets at `resource_url`.
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
    let conn = redis::Client::open(resource_url)
        .map_err(Failure::internal)?
        .get_multiplexed_async_connection()
        .await
        .map_err(Failure::internal)?;
    let base = (Instant::now(), monotonic_ns());
    let stdout = Arc::new(Mutex::new(tokio::io::stdout()));
    let mut lanes: HashMap<u32, mpsc::UnboundedSender<Request>> = HashMap::new();
    let mut tasks = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(Failure::internal)? {
        let envelope = match serde_json::from_str::<Envelope>(&line) {
            Ok(envelope) => envelope,
            Err(e) => {
                let reply = Reply::fail(format!("bad request: {e}"));
                write_reply(&stdout, reply).await?;
                continue;
            }
        };
        let lane = envelope.lane;
        if let std::collections::hash_map::Entry::Vacant(slot) = lanes.entry(lane) {
            let client = runtime
                .client(options.clone())
                .await
                .map_err(Failure::internal)?;
            let worker = Worker {
                client,
                conn: conn.clone(),
                lock: None,
                fence: None,
                read: None,
                base,
            };
            let (tx, rx) = mpsc::unbounded_channel();
            slot.insert(tx);
            tasks.push(tokio::spawn(run_lane(worker, lane, rx, stdout.clone())));
        }
        let _ = lanes[&lane].send(envelope.request);
    }
    drop(lanes);
    for task in tasks {
        task.await.map_err(Failure::internal)??;
    }
    Ok(EXIT_OK)
}

/// Answers lane `lane`'s requests in order.
async fn run_lane(
    mut worker: Worker,
    lane: u32,
    mut requests: mpsc::UnboundedReceiver<Request>,
    stdout: Arc<Mutex<tokio::io::Stdout>>,
) -> ToolResult<()> {
    while let Some(request) = requests.recv().await {
        let reply = Reply {
            lane,
            ..worker.handle(request).await
        };
        write_reply(&stdout, reply).await?;
    }
    Ok(())
}

async fn write_reply(stdout: &Mutex<tokio::io::Stdout>, reply: Reply) -> ToolResult<()> {
    let mut out = serde_json::to_vec(&reply).map_err(Failure::internal)?;
    out.push(b'\n');
    let mut stdout = stdout.lock().await;
    stdout.write_all(&out).await.map_err(Failure::internal)?;
    stdout.flush().await.map_err(Failure::internal)
}
