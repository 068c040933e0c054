//! `dlock demo`: workers contend for a few locks; the summary checks fencing and counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use dlock_host::{Client, Deadline, LockOptions, Runtime, contract};
use indicatif::{ProgressBar, ProgressStyle};
use redis::aio::MultiplexedConnection;
use serde_json::json;

use super::origin::{self, Origin};
use super::output::outln;
use super::stats::{XorShift, human, percentile};
use super::telemetry::Metrics;
use super::{CliResult, EXIT_BUSY, EXIT_OK, duration};

/// Options of `dlock demo`.
#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// How many workers (each its own component instance).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=512))]
    workers: u32,
    /// How many keys they contend for.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keys: u32,
    /// How long the workers run.
    #[arg(long, value_parser = duration::parse, default_value = "5s")]
    duration: Duration,
}

/// What every worker records, shared.
#[derive(Default)]
struct Tally {
    acquisitions: AtomicU64,
    contended: AtomicU64,
    waits: Mutex<Vec<Duration>>,
    holds: Mutex<Vec<Duration>>,
    /// Per key: the last fence seen by a holder, and fence regressions found.
    last_fence: Mutex<HashMap<u32, u64>>,
    fence_violations: AtomicU64,
    /// Per key: increments made under the lock (compared with the counters in Redis).
    increments: Mutex<HashMap<u32, u64>>,
}

pub(super) async fn run(args: DemoArgs, redis_url: Option<&str>, json_out: bool) -> CliResult<u8> {
    let origin = origin::get(redis_url, "the demo").await?;
    let redis_fail = |e: String| origin::failure(&origin, e);
    let runtime = Runtime::builder(&origin.url)
        .with_component(super::component().map_err(|e| redis_fail(e.to_string()))?)
        .build()
        .await
        .map_err(|e| redis_fail(e.to_string()))?;
    let conn = redis::Client::open(origin.url.as_str())
        .map_err(|e| redis_fail(e.to_string()))?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| redis_fail(e.to_string()))?;
    let version = redis_version(&mut conn.clone()).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let run_id = format!("{:08x}", std::process::id() ^ nanos);
    let prefix = format!("dlock-demo:{run_id}:");

    let progress = if json_out {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(millis(args.duration))
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} [{bar:30}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );

    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + args.duration;
    let mut workers = Vec::new();
    for id in 0..args.workers {
        // The default backoff: a waiter wakes when the holder releases, not when it polls.
        let options = LockOptions::default()
            .with_key_prefix(prefix.clone())
            .with_fencing(true);
        let client = runtime
            .client(options)
            .await
            .map_err(|e| redis_fail(e.to_string()))?;
        let worker = Worker {
            id,
            keys: args.keys,
            client,
            conn: conn.clone(),
            counter_prefix: format!("{prefix}counter:"),
            tally: tally.clone(),
        };
        workers.push(tokio::spawn(worker.run(deadline)));
    }
    while Instant::now() < deadline {
        progress.set_position(millis(
            args.duration.saturating_sub(deadline - Instant::now()),
        ));
        progress.set_message(format!(
            "{} acquisitions",
            tally.acquisitions.load(Ordering::Relaxed)
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut failures = Vec::new();
    for worker in workers {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("a worker panicked: {e}")),
        }
    }
    progress.finish_and_clear();

    let counted = read_counters(&mut conn.clone(), &prefix, args.keys)
        .await
        .map_err(redis_fail)?;
    cleanup(&mut conn.clone(), &prefix, args.keys).await;
    let summary = Summary::new(&tally, &counted, args.duration, Metrics::install());
    if json_out {
        summary.print_json(&args, &origin, &version, &failures)?;
    } else {
        summary.print_table(&args, &origin, &version, &failures)?;
    }
    Ok(if summary.passed() && failures.is_empty() {
        EXIT_OK
    } else {
        EXIT_BUSY
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct Worker {
    id: u32,
    keys: u32,
    client: Client,
    conn: MultiplexedConnection,
    counter_prefix: String,
    tally: Arc<Tally>,
}

impl Worker {
    async fn run(mut self, deadline: Instant) -> Result<(), String> {
        let mut rng =
            XorShift::new(u64::from(self.id).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd10c);
        let ttl = Duration::from_secs(5);
        while Instant::now() < deadline {
            let key_index = rng.below(u64::from(self.keys)) as u32;
            let key = format!("k{key_index}");
            let started = Instant::now();
            let lock = match self
                .client
                .try_acquire(&key, ttl)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(lock) => lock,
                None => {
                    self.tally.contended.fetch_add(1, Ordering::Relaxed);
                    let wait = Duration::from_secs(30);
                    self.client
                        .wait_for_lock(&key, ttl, Deadline::after(wait))
                        .await
                        .map_err(|e| e.to_string())?
                }
            };
            let acquired = Instant::now();
            let fence = lock.info().fence.unwrap_or(0);
            self.check_fence(key_index, fence);
            self.increment(key_index, rng.below(3)).await?;
            lock.release().await.map_err(|e| e.to_string())?;
            let tally = &self.tally;
            tally.acquisitions.fetch_add(1, Ordering::Relaxed);
            tally.waits.lock().unwrap().push(acquired - started);
            tally.holds.lock().unwrap().push(acquired.elapsed());
        }
        Ok(())
    }

    /// Under the lock: this holder's fence must be above every fence seen before on the key.
    fn check_fence(&self, key: u32, fence: u64) {
        let mut last = self.tally.last_fence.lock().unwrap();
        let seen = last.entry(key).or_insert(0);
        if fence <= *seen {
            self.tally.fence_violations.fetch_add(1, Ordering::Relaxed);
        }
        *seen = (*seen).max(fence);
    }

    /// Under the lock: read the key's counter, pause, write it back plus one. Two holders at
    /// once would lose an increment.
    async fn increment(&mut self, key: u32, pause_ms: u64) -> Result<(), String> {
        let counter = format!("{}{key}", self.counter_prefix);
        let value: Option<u64> = redis::cmd("GET")
            .arg(&counter)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let () = redis::cmd("SET")
            .arg(&counter)
            .arg(value.unwrap_or(0) + 1)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| e.to_string())?;
        *self
            .tally
            .increments
            .lock()
            .unwrap()
            .entry(key)
            .or_insert(0) += 1;
        Ok(())
    }
}

async fn redis_version(conn: &mut MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned()
}

async fn read_counters(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    keys: u32,
) -> Result<HashMap<u32, u64>, String> {
    let mut counted = HashMap::new();
    for key in 0..keys {
        let value: Option<u64> = redis::cmd("GET")
            .arg(format!("{prefix}counter:{key}"))
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        counted.insert(key, value.unwrap_or(0));
    }
    Ok(counted)
}

/// Deletes everything the run wrote: counters, any lock left behind and its companion keys
/// (fence counter, waiters' mark, signal list).
async fn cleanup(conn: &mut MultiplexedConnection, prefix: &str, keys: u32) {
    let mut cmd = redis::cmd("DEL");
    for key in 0..keys {
        let lock = format!("{prefix}k{key}");
        cmd.arg(format!("{prefix}counter:{key}")).arg(&lock);
        for companion in contract::Companion::ALL {
            if let Ok(name) = contract::companion_key(&lock, companion) {
                cmd.arg(name);
            }
        }
    }
    let _: Result<u64, _> = cmd.query_async(conn).await;
}

struct Summary {
    acquisitions: u64,
    contended: u64,
    per_second: f64,
    wait_p50: Duration,
    wait_p99: Duration,
    hold_p50: Duration,
    fence_violations: u64,
    increments: u64,
    counted: u64,
    /// What the lock library counted (`dlock_host::observe`).
    observed: Observed,
}

/// The library's metrics the demo shows.
struct Observed {
    /// Acquire attempts per `wait_for_lock` call.
    attempts_per_wait: f64,
    /// Attempts that found the lock busy.
    busy: u64,
    /// Waits ended by a release signal, by their timeout, and polled for want of a connection.
    by_signal: u64,
    by_timeout: u64,
    fallbacks: u64,
    /// `wait_for_lock` calls and their p50 / p99 duration.
    waits: usize,
    wait_p50: Duration,
    wait_p99: Duration,
    /// Acquire script calls to Redis: p50 / p99.
    redis_p50: Duration,
    redis_p99: Duration,
}

impl Observed {
    fn new(m: &Metrics) -> Self {
        let waits = m.spread("dlock.acquire.duration{operation=wait_for_lock,outcome=acquired}");
        let calls = m.spread(
            "db.client.operation.duration{db.system.name=redis,db.operation.name=EVALSHA,db.stored_procedure.name=acquire}",
        );
        Observed {
            attempts_per_wait: m
                .spread("dlock.acquire.attempts{operation=wait_for_lock}")
                .mean,
            busy: m.counter("dlock.acquire.busy"),
            by_signal: m.counter("dlock.wait.wakeups{by=signal}"),
            by_timeout: m.counter("dlock.wait.wakeups{by=timeout}"),
            fallbacks: m.counter("dlock.wait.fallbacks"),
            waits: waits.count,
            wait_p50: Duration::from_secs_f64(waits.p50),
            wait_p99: Duration::from_secs_f64(waits.p99),
            redis_p50: Duration::from_secs_f64(calls.p50),
            redis_p99: Duration::from_secs_f64(calls.p99),
        }
    }
}

impl Summary {
    fn new(tally: &Tally, counted: &HashMap<u32, u64>, duration: Duration, m: &Metrics) -> Self {
        let mut waits = tally.waits.lock().unwrap().clone();
        let mut holds = tally.holds.lock().unwrap().clone();
        waits.sort();
        holds.sort();
        let acquisitions = tally.acquisitions.load(Ordering::Relaxed);
        Summary {
            acquisitions,
            contended: tally.contended.load(Ordering::Relaxed),
            per_second: acquisitions as f64 / duration.as_secs_f64(),
            wait_p50: percentile(&waits, 0.5),
            wait_p99: percentile(&waits, 0.99),
            hold_p50: percentile(&holds, 0.5),
            fence_violations: tally.fence_violations.load(Ordering::Relaxed),
            increments: tally.increments.lock().unwrap().values().sum(),
            counted: counted.values().sum(),
            observed: Observed::new(m),
        }
    }

    fn fences_ok(&self) -> bool {
        self.fence_violations == 0
    }

    fn counters_ok(&self) -> bool {
        self.increments == self.counted
    }

    fn passed(&self) -> bool {
        self.fences_ok() && self.counters_ok() && self.acquisitions > 0
    }

    fn contention(&self) -> f64 {
        if self.acquisitions == 0 {
            0.0
        } else {
            100.0 * self.contended as f64 / self.acquisitions as f64
        }
    }

    fn print_table(
        &self,
        args: &DemoArgs,
        origin: &Origin,
        version: &str,
        failures: &[String],
    ) -> CliResult<()> {
        let mark = |ok: bool| if ok { "ok" } else { "FAILED" };
        outln!(
            "dlock demo: {} workers (one component instance each) on {} keys for {}",
            args.workers,
            args.keys,
            humantime::format_duration(args.duration)
        )?;
        outln!("Redis {version}, {}", origin.description)?;
        outln!("")?;
        outln!(
            "  acquisitions       {:>10}   ({:.0}/s)",
            self.acquisitions,
            self.per_second
        )?;
        outln!(
            "  contention         {:>9.1}%   found the lock busy and waited",
            self.contention()
        )?;
        outln!(
            "  wait p50 / p99     {:>10} / {}",
            human(self.wait_p50),
            human(self.wait_p99)
        )?;
        outln!("  hold p50           {:>10}", human(self.hold_p50))?;
        let o = &self.observed;
        outln!(
            "  waits              {:>10}   p50 {} / p99 {}, {:.1} attempts each",
            o.waits,
            human(o.wait_p50),
            human(o.wait_p99),
            o.attempts_per_wait
        )?;
        outln!(
            "  wake-ups           {:>10}   by a release signal; {} by timeout, {} polled (no connection free)",
            o.by_signal,
            o.by_timeout,
            o.fallbacks
        )?;
        outln!(
            "  busy attempts      {:>10}   acquire script p50 {} / p99 {} in Redis",
            o.busy,
            human(o.redis_p50),
            human(o.redis_p99)
        )?;
        outln!(
            "  fencing tokens     {:>10}   strictly increasing per key ({} violations)",
            mark(self.fences_ok()),
            self.fence_violations
        )?;
        outln!(
            "  guarded counters   {:>10}   {} increments under the lock, {} counted in Redis, {} lost",
            mark(self.counters_ok()),
            self.increments,
            self.counted,
            self.increments.saturating_sub(self.counted)
        )?;
        for failure in failures {
            outln!("  worker error: {failure}")?;
        }
        outln!("")?;
        outln!(
            "{}",
            if self.passed() && failures.is_empty() {
                "all checks passed"
            } else {
                "CHECKS FAILED"
            }
        )
    }

    fn print_json(
        &self,
        args: &DemoArgs,
        origin: &Origin,
        version: &str,
        failures: &[String],
    ) -> CliResult<()> {
        let out = json!({
            "workers": args.workers,
            "keys": args.keys,
            "duration_ms": millis(args.duration),
            "redis": { "version": version, "origin": origin.description },
            "acquisitions": self.acquisitions,
            "acquisitions_per_sec": self.per_second,
            "contention_pct": self.contention(),
            "wait_p50_us": self.wait_p50.as_micros(),
            "wait_p99_us": self.wait_p99.as_micros(),
            "hold_p50_us": self.hold_p50.as_micros(),
            "fence_violations": self.fence_violations,
            "waits": self.observed.waits,
            "wait_p50_us": self.observed.wait_p50.as_micros(),
            "wait_p99_us": self.observed.wait_p99.as_micros(),
            "attempts_per_wait": self.observed.attempts_per_wait,
            "busy_attempts": self.observed.busy,
            "wakeups_by_signal": self.observed.by_signal,
            "wakeups_by_timeout": self.observed.by_timeout,
            "wait_fallbacks": self.observed.fallbacks,
            "increments": self.increments,
            "counted": self.counted,
            "worker_errors": failures,
            "passed": self.passed() && failures.is_empty(),
        });
        outln!("{out}")
    }
}
