//! `bench handoff`: how fast a released lock reaches the next waiter, and how evenly the
//! waiters get it, with release signals (push) and with polling.
//!
//! N workers, each its own client, loop on one key: `wait_for_lock`, hold (one yield), release.
//! A hand-off is the time from just before the holder's `release` to the return of the next
//! `wait_for_lock` that got the lock (both on this process's monotonic clock), so it includes
//! the release's round trip, the wake-up and the winning attempt. Fairness: each worker's
//! share of the acquisitions, as min/max and Jain's index (1 = perfectly even).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dlock_host::{Deadline, LockOptions, Runtime, WakeOnRelease};
use dlock_tests::stats::percentile;
use serde::Serialize;
use tokio::sync::Mutex;

/// How waiters learn of a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wake {
    /// Release signals (`WakeOnRelease::WaitForLock`, the default).
    Push,
    /// Backoff polling (`WakeOnRelease::Never`).
    Polling,
}

/// One measured cell.
#[derive(Debug, Serialize)]
pub struct Row {
    pub wake: Wake,
    pub waiters: u32,
    pub handoffs: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub handoffs_per_sec: f64,
    /// Fewest and most acquisitions of one worker.
    pub min_share: u64,
    pub max_share: u64,
    /// Jain's fairness index of the workers' acquisitions.
    pub jain: f64,
}

/// Runs `rounds` hand-offs among `waiters` workers on `url`.
pub async fn cell(url: &str, wake: Wake, waiters: u32, rounds: usize) -> Result<Row, String> {
    let runtime = Runtime::connect(url).await.map_err(|e| e.to_string())?;
    let options = LockOptions::default().with_wake_on_release(match wake {
        Wake::Push => WakeOnRelease::WaitForLock,
        Wake::Polling => WakeOnRelease::Never,
    });
    let key = format!("bench:handoff:{}", std::process::id());
    // When the last release started; `None` before the first acquisition.
    let released_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..waiters {
        let client = runtime
            .client(options.clone())
            .await
            .map_err(|e| e.to_string())?;
        let (key, released_at, latencies, done) = (
            key.clone(),
            released_at.clone(),
            latencies.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = 0u64;
            loop {
                if done.load(Ordering::Relaxed) as usize >= rounds {
                    return Ok::<u64, String>(mine);
                }
                let deadline = Deadline::after(Duration::from_secs(30));
                let lock = client
                    .wait_for_lock(&key, Duration::from_secs(10), deadline)
                    .await
                    .map_err(|e| e.to_string())?;
                let got = Instant::now();
                if let Some(at) = released_at.lock().await.take() {
                    latencies.lock().await.push(got - at);
                }
                mine += 1;
                done.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
                *released_at.lock().await = Some(Instant::now());
                lock.release().await.map_err(|e| e.to_string())?;
            }
        }));
    }
    let mut shares = Vec::new();
    for task in tasks {
        shares.push(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    let mut latencies = std::mem::take(&mut *latencies.lock().await);
    latencies.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let sum: f64 = shares.iter().map(|&s| s as f64).sum();
    let squares: f64 = shares.iter().map(|&s| (s as f64).powi(2)).sum();
    Ok(Row {
        wake,
        waiters,
        handoffs: latencies.len(),
        p50_us: us(percentile(&latencies, 0.5)),
        p99_us: us(percentile(&latencies, 0.99)),
        max_us: us(latencies.last().copied().unwrap_or_default()),
        handoffs_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        min_share: shares.iter().copied().min().unwrap_or(0),
        max_share: shares.iter().copied().max().unwrap_or(0),
        jain: if squares > 0.0 {
            sum * sum / (shares.len() as f64 * squares)
        } else {
            0.0
        },
    })
}
