//! `dlock worker` (hidden): a lock client driven over stdin/stdout, one JSON object per line,
//! for `dlock torture` and the reliability tests, which run several as separate processes and
//! pause, kill or partition them.
//!
//! Requests (`{"cmd": ...}`): `ping` (answered once connected); `acquire {key, ttl_ms,
//! wait_ms?}` (fenced); `extend {ttl_ms}` and `release` on the handle the last acquire
//! returned; `fenced_write {resource, element}` (the `examples/fenced-write.lua` verifier with
//! the handle's fence); `guarded_read {set}` and `guarded_write {set, element, fenced?}` (a
//! read-modify-write of a comma-separated set, split in two so a pause can fall between them;
//! `fenced` refuses the write once a newer fence has written). Each gets one reply:
//! `{"outcome": "ok"|"fail"|"unknown", ...}`; times are `CLOCK_MONOTONIC` nanoseconds,
//! comparable across processes.

use std::time::{Duration, Instant};

use dlock_host::{Error, LockHandle, LockOptions, Runtime};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{CliResult, EXIT_INTERNAL, EXIT_OK, Failure};

const FENCED_WRITE: &str = include_str!("../../../examples/fenced-write.lua");

#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Request {
    Ping,
    Acquire {
        key: String,
        ttl_ms: u64,
        wait_ms: Option<u64>,
    },
    Extend {
        ttl_ms: u64,
    },
    Release,
    FencedWrite {
        resource: String,
        element: String,
    },
    GuardedRead {
        set: String,
    },
    GuardedWrite {
        set: String,
        element: String,
        #[serde(default)]
        fenced: bool,
    },
}

/// A fenced register write: `KEYS[1]` the value, `KEYS[2]` the highest fence seen, `ARGV[1]` the
/// writer's fence, `ARGV[2]` the new value. 1 written, 0 refused (a newer holder has written).
const FENCED_SET: &str = "local highest = tonumber(redis.call('GET', KEYS[2]) or '0') \
    if tonumber(ARGV[1]) < highest then return 0 end \
    redis.call('SET', KEYS[2], ARGV[1]) redis.call('SET', KEYS[1], ARGV[2]) return 1";

#[derive(Default, Serialize)]
struct Reply {
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Reply {
    fn ok() -> Reply {
        Reply {
            outcome: "ok",
            ..Reply::default()
        }
    }

    fn fail(error: impl ToString) -> Reply {
        Reply {
            outcome: "fail",
            error: Some(error.to_string()),
            ..Reply::default()
        }
    }

    fn from_lock_error(e: &Error) -> Reply {
        let outcome = if e.is_retryable() { "unknown" } else { "fail" };
        Reply {
            outcome,
            error: Some(e.to_string()),
            ..Reply::default()
        }
    }

    fn from_redis_error(e: &redis::RedisError) -> Reply {
        Reply {
            outcome: "unknown",
            error: Some(e.to_string()),
            ..Reply::default()
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the one clock all processes on the machine share.
pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
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

    async fn held(&self, lock: &LockHandle) -> Reply {
        match lock.info().await {
            Ok(info) => Reply {
                outcome: "ok",
                token: Some(info.token),
                fence: info.fence,
                valid_until_ns: Some(self.monotonic_at(info.valid_until)),
                error: None,
            },
            Err(e) => Reply::from_lock_error(&e),
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
                        self.client
                            .wait_for_lock(&key, Duration::from_millis(wait), ttl)
                            .await
                    }
                    None => self.client.acquire(&key, ttl).await,
                };
                match acquired {
                    Ok(lock) => {
                        let reply = self.held(&lock).await;
                        self.fence = reply.fence;
                        self.lock = Some(lock);
                        reply
                    }
                    Err(e) => Reply::from_lock_error(&e),
                }
            }
            Request::Extend { ttl_ms } => match &self.lock {
                None => Reply::fail("no lock"),
                Some(lock) => match lock.extend(Duration::from_millis(ttl_ms)).await {
                    Ok(()) => self.held(lock).await,
                    Err(e) => Reply::from_lock_error(&e),
                },
            },
            Request::Release => match self.lock.take() {
                None => Reply::fail("no lock"),
                Some(lock) => match lock.release().await {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::from_lock_error(&e),
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
                    Err(e) => Reply::from_redis_error(&e),
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
                    Err(e) => Reply::from_redis_error(&e),
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
                        Err(e) => Reply::from_redis_error(&e),
                    };
                }
                match redis::cmd("SET")
                    .arg(&set)
                    .arg(value)
                    .query_async::<()>(&mut self.conn)
                    .await
                {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::from_redis_error(&e),
                }
            }
        }
    }
}

/// Serves requests from stdin until it closes; locks live at `redis_url`, the fenced resource
/// and guarded sets at `resource_url`.
pub(super) async fn run(redis_url: &str, resource_url: &str) -> CliResult<u8> {
    let internal = |e: String| Failure::new(EXIT_INTERNAL, e);
    let runtime = Runtime::connect(redis_url)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let options = LockOptions {
        fencing: true,
        ..LockOptions::default()
    };
    let client = runtime
        .client(options)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let conn = redis::Client::open(resource_url)
        .map_err(|e| internal(e.to_string()))?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| internal(e.to_string()))?;
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
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| internal(e.to_string()))?
    {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(request) => worker.handle(request).await,
            Err(e) => Reply::fail(format!("bad request: {e}")),
        };
        let mut out = serde_json::to_vec(&reply).map_err(|e| internal(e.to_string()))?;
        out.push(b'\n');
        stdout
            .write_all(&out)
            .await
            .map_err(|e| internal(e.to_string()))?;
        stdout.flush().await.map_err(|e| internal(e.to_string()))?;
    }
    Ok(EXIT_OK)
}
