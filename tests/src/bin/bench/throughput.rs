//! The throughput bench: acquire+release pairs per path, workload and concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::paths::{Fixtures, Path, Worker};
use super::topology::{Mode, Target};
use dlock_tests::stats::percentile;

/// Which keys the workers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Every worker its own key: every attempt succeeds.
    Uncontended,
    /// All workers one key: most attempts find it busy (one attempt, no retry, is one op).
    Contended,
    /// All workers one permit each of one counting semaphore with room for all (limit
    /// [`SEM_LIMIT`](super::paths::SEM_LIMIT)): every attempt succeeds. Component and native
    /// paths only.
    Semaphore,
}

/// One measured cell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Cell {
    pub mode: Mode,
    pub path: Path,
    pub workload: Workload,
    pub concurrency: u32,
    /// Operations per second: an uncontended op is an acquire and its release; a contended op
    /// is one attempt, plus the release when it acquired.
    pub ops_per_sec: f64,
    /// How many of the ops acquired the lock.
    pub acquired: u64,
    pub ops: u64,
    /// Every op the workers ran, the warm-up and the wind-down around the measured window
    /// included: what `scripts/instructions-per-op` divides a process's instructions by.
    pub total_ops: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// CPU time this process (the lock clients) spent per op, in microseconds.
    pub client_cpu_us_per_op: f64,
    /// CPU time Redis spent per op, in microseconds (from `INFO cpu`).
    pub redis_cpu_us_per_op: f64,
    /// `ops_per_sec` over the native path's in the same workload and concurrency.
    pub ratio_to_native: Option<f64>,
    /// A component cell's client CPU per op and p50 over the single-Redis component cell's
    /// of the same workload and concurrency.
    pub vs_single: Option<(f64, f64)>,
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
pub(super) fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // /proc reports in USER_HZ, which Linux fixes at 100.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the Redis servers at `urls` have used together, from `INFO cpu`.
async fn redis_cpu_secs(urls: &[String]) -> f64 {
    let mut total = 0.0;
    for url in urls {
        let Ok(client) = redis::Client::open(url.as_str()) else {
            continue;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        total += info
            .lines()
            .filter_map(|l| {
                l.strip_prefix("used_cpu_user:")
                    .or_else(|| l.strip_prefix("used_cpu_sys:"))
            })
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

/// Runs one cell: `concurrency` workers for `duration`, after a short warm-up.
#[allow(
    clippy::too_many_arguments,
    reason = "one cell's whole setting, passed once"
)]
pub async fn cell(
    target: &Target,
    fixtures: &Fixtures,
    url: &str,
    path: Path,
    workload: Workload,
    concurrency: u32,
    duration: Duration,
    progress: &ProgressBar,
) -> Result<Cell, String> {
    let runtime = &target.runtime;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        workers.push(Worker::new(path, runtime, url, fixtures).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let acquired = Arc::new(AtomicU64::new(0));
    let total_ops = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(i, mut worker)| {
            let key = match workload {
                Workload::Uncontended => format!("bench:{path:?}:{i}"),
                Workload::Contended => format!("bench:{path:?}:hot"),
                Workload::Semaphore => format!("bench:{path:?}:sem"),
            };
            let (stop, measuring, acquired) = (stop.clone(), measuring.clone(), acquired.clone());
            let total_ops = total_ops.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let held = worker.try_acquire(&key, workload).await?;
                    let got = held.is_some();
                    if let Some(held) = held {
                        worker.release(held).await?;
                    }
                    total_ops.fetch_add(1, Ordering::Relaxed);
                    if measuring.load(Ordering::Relaxed) {
                        latencies.push(start.elapsed());
                        acquired.fetch_add(u64::from(got), Ordering::Relaxed);
                    }
                }
                Ok::<_, String>(latencies)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200).min(duration / 4)).await;
    let (client_cpu, redis_cpu) = (process_cpu_secs(), redis_cpu_secs(&target.servers).await);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let client_cpu = process_cpu_secs() - client_cpu;
    let redis_cpu = redis_cpu_secs(&target.servers).await - redis_cpu;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    progress.inc(1);
    latencies.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let per_op = |secs: f64| secs * 1e6 / (latencies.len().max(1) as f64);
    Ok(Cell {
        mode: target.mode,
        path,
        workload,
        concurrency,
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        acquired: acquired.load(Ordering::Relaxed),
        ops: latencies.len() as u64,
        total_ops: total_ops.load(Ordering::Relaxed),
        p50_us: us(percentile(&latencies, 0.5)),
        p99_us: us(percentile(&latencies, 0.99)),
        max_us: us(latencies.last().copied().unwrap_or_default()),
        client_cpu_us_per_op: per_op(client_cpu),
        redis_cpu_us_per_op: per_op(redis_cpu),
        ratio_to_native: None,
        vs_single: None,
    })
}

/// Fills in each cell's ratio to the native cell of the same workload and concurrency.
pub fn add_ratios(cells: &mut [Cell]) {
    let natives: Vec<(Workload, u32, f64)> = cells
        .iter()
        .filter(|c| c.path == Path::Native && c.mode == Mode::Single)
        .map(|c| (c.workload, c.concurrency, c.ops_per_sec))
        .collect();
    let singles: Vec<(Workload, u32, f64, f64)> = cells
        .iter()
        .filter(|c| c.path == Path::Component && c.mode == Mode::Single)
        .map(|c| (c.workload, c.concurrency, c.client_cpu_us_per_op, c.p50_us))
        .collect();
    for cell in cells.iter_mut() {
        cell.vs_single = singles
            .iter()
            .find(|(w, c, _, _)| {
                cell.path == Path::Component
                    && cell.mode != Mode::Single
                    && *w == cell.workload
                    && *c == cell.concurrency
            })
            .map(|(_, _, cpu, p50)| (cell.client_cpu_us_per_op / cpu, cell.p50_us / p50));
    }
    for cell in cells {
        cell.ratio_to_native = natives
            .iter()
            .find(|(w, c, _)| *w == cell.workload && *c == cell.concurrency)
            .map(|(_, _, native)| cell.ops_per_sec / native);
    }
}
