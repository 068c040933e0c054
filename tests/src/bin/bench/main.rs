//! `bench`: what the sandbox costs, measured against plain Rust and rslock in the same run.
//!
//! Acquire+release pairs on distinct keys (uncontended) and on one hot key (contended), at
//! each concurrency, through each path, in one run: ops/s, latency percentiles, client CPU per
//! op and the ratio to the native path. Starts its own redis-server unless --redis (or
//! DLOCK_REDIS_URL) is given. `bench startup`, `bench instantiate`, `bench calls` and `bench
//! memory` measure start-up, client creation, one call into the component and memory. Build
//! with --release for real numbers: `cargo run --release -p dlock-tests --bin bench`.

mod handoff;
mod paths;
mod process;
mod throughput;
mod topology;

use std::time::Duration;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use dlock_host::Allocation;
use dlock_tests::outln;
use dlock_tests::tool::{self, EXIT_OK, Origin, ToolResult, parse_duration};
use paths::{Fixtures, Path};
use throughput::{Cell, Workload};
use topology::{Mode, Target};

/// Measure what the sandbox costs: the component against plain Rust and rslock.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    args_conflicts_with_subcommands = true,
    max_term_width = 100
)]
struct BenchArgs {
    /// The Redis to measure against. [default: one started here]
    #[arg(
        long,
        global = true,
        env = "DLOCK_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    redis: Option<String>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// How long each cell is measured (after a short warm-up).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    duration: Duration,
    /// Concurrency levels (workers, each its own client), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    concurrency: Vec<u32>,
    /// Paths to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "component,floor,native,rslock,plugin-host,plugin-composed"
    )]
    paths: Vec<Path>,
    /// Workloads, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "uncontended,contended"
    )]
    workloads: Vec<Workload>,
    /// Deployment modes to measure, comma-separated: the single Redis, quorum mode over
    /// --nodes redis-servers, a Redis Cluster of --nodes primaries (both started here). Only
    /// the component path runs in quorum and cluster modes; "vs single" compares each
    /// component cell with the single-Redis component cell of the same workload and
    /// concurrency.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "single")]
    modes: Vec<Mode>,
    /// Primaries in quorum and cluster modes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Clients the component's instance pool has room for. [default: dlock's default]
    /// A pool of at most dlock_host::Allocation::ELIDED_CHECKS_CLIENTS reserves 4 GiB of address space
    /// per client: under valgrind, give it little more than the highest --concurrency.
    #[arg(long, value_name = "CLIENTS")]
    pool: Option<u32>,
    #[command(subcommand)]
    other: Option<Other>,
}

#[derive(Debug, Subcommand)]
enum Other {
    /// Process start to first lock acquired, with and without the cached compiled component.
    Startup {
        /// Runs of each kind.
        #[arg(long, default_value_t = 10)]
        runs: u32,
    },
    /// Cost of creating a client (one component instance), pooling vs on-demand allocation.
    Instantiate {
        /// Clients created per allocation strategy.
        #[arg(long, default_value_t = 500)]
        clients: u32,
    },
    /// Cost of one call into the component: `is_held` on a held lock (one export call, one
    /// WASI clock import, no Redis), from one task.
    Calls {
        /// Calls to make.
        #[arg(long, default_value_t = 200_000)]
        calls: u32,
    },
    /// What one plugin instance costs, host-provided vs composed (time and memory).
    Plugins {
        /// Plugin instances to create and keep alive per path.
        #[arg(long, default_value_t = 200)]
        instances: u32,
    },
    /// Hand-off latency and fairness: workers on one key, each waiting for the lock, holding
    /// it for a yield and releasing it; release signals (push) against polling.
    Handoff {
        /// Waiting workers, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2,8,32")]
        waiters: Vec<u32>,
        /// Hand-offs measured per cell.
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
        /// How waiters learn of a release, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "push,polling"
        )]
        wake: Vec<handoff::Wake>,
    },
    /// Resident memory: per idle client, and with 10,000 locks held in one process.
    Memory {
        /// Locks to hold at once.
        #[arg(long, default_value_t = 10_000)]
        locks: u32,
    },
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    tool::main("bench", run(args))
}

async fn run(args: BenchArgs) -> ToolResult<u8> {
    let json_out = args.json;
    let redis = tool::origin(args.redis.as_deref(), "bench").await?;
    match args.other {
        Some(Other::Startup { runs }) => process::startup(&redis, runs, json_out).await,
        Some(Other::Instantiate { clients }) => {
            process::instantiate(&redis, clients, json_out).await
        }
        Some(Other::Calls { calls }) => process::calls(&redis, calls, json_out).await,
        Some(Other::Memory { locks }) => process::memory(&redis, locks, json_out).await,
        Some(Other::Handoff {
            waiters,
            rounds,
            wake,
        }) => handoff_table(&redis, &waiters, rounds, &wake, json_out).await,
        Some(Other::Plugins { instances }) => process::plugins(&redis, instances, json_out).await,
        None => throughput_table(args, &redis, json_out).await,
    }
}

async fn handoff_table(
    redis: &Origin,
    waiters: &[u32],
    rounds: usize,
    wakes: &[handoff::Wake],
    json_out: bool,
) -> ToolResult<u8> {
    let mut rows = Vec::new();
    for &wake in wakes {
        for &n in waiters {
            rows.push(
                handoff::cell(&redis.url, wake, n, rounds)
                    .await
                    .map_err(|e| tool::redis_failure(redis, e))?,
            );
        }
    }
    if json_out {
        outln!(
            "{}",
            json!({ "redis": redis.description, "handoffs": rows })
        )?;
        return Ok(EXIT_OK);
    }
    outln!(
        "bench handoff: release to next acquisition, Redis {}",
        redis.description
    )?;
    outln!("")?;
    outln!(
        "{:<8} {:>7} {:>8} {:>9} {:>9} {:>10} {:>11} {:>11} {:>6}",
        "wake",
        "waiters",
        "handoffs",
        "p50 us",
        "p99 us",
        "max us",
        "handoffs/s",
        "share min/max",
        "jain"
    )?;
    for r in &rows {
        outln!(
            "{:<8} {:>7} {:>8} {:>9.0} {:>9.0} {:>10.0} {:>11.0} {:>13} {:>6.3}",
            format!("{:?}", r.wake).to_lowercase(),
            r.waiters,
            r.handoffs,
            r.p50_us,
            r.p99_us,
            r.max_us,
            r.handoffs_per_sec,
            format!("{}/{}", r.min_share, r.max_share),
            r.jain
        )?;
    }
    Ok(EXIT_OK)
}

async fn throughput_table(args: BenchArgs, redis: &Origin, json_out: bool) -> ToolResult<u8> {
    let fail = |e: String| tool::redis_failure(redis, e);
    let allocation =
        args.pool
            .map_or_else(Allocation::default, |max_clients| Allocation::Pooling {
                max_clients,
            });
    let mut targets = Vec::new();
    for &mode in &args.modes {
        targets.push(
            Target::start(mode, &redis.url, args.nodes, allocation)
                .await
                .map_err(fail)?,
        );
    }
    let fixtures = Fixtures::new(&redis.url, allocation).await.map_err(fail)?;
    let runs = |mode: Mode, path: Path| mode == Mode::Single || path == Path::Component;
    let total: usize = args.workloads.len()
        * args.concurrency.len()
        * targets
            .iter()
            .map(|t| args.paths.iter().filter(|&&p| runs(t.mode, p)).count())
            .sum::<usize>();
    let progress = if json_out {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut cells = Vec::new();
    for &workload in &args.workloads {
        for &concurrency in &args.concurrency {
            for target in &targets {
                for &path in args.paths.iter().filter(|&&p| runs(target.mode, p)) {
                    progress.set_message(format!(
                        "{:?} {path:?} {workload:?} x{concurrency}",
                        target.mode
                    ));
                    let cell = throughput::cell(
                        target,
                        &fixtures,
                        &redis.url,
                        path,
                        workload,
                        concurrency,
                        args.duration,
                        &progress,
                    )
                    .await
                    .map_err(fail)?;
                    cells.push(cell);
                }
            }
        }
    }
    progress.finish_and_clear();
    throughput::add_ratios(&mut cells);
    if json_out {
        outln!(
            "{}",
            json!({ "redis": redis.description, "duration_ms": args.duration.as_millis(), "cells": cells })
        )?;
    } else {
        print_table(&cells, redis)?;
    }
    Ok(EXIT_OK)
}

fn print_table(cells: &[Cell], redis: &Origin) -> ToolResult<()> {
    outln!("bench: acquire+release, Redis {}", redis.description)?;
    outln!("")?;
    outln!(
        "{:<12} {:>5}  {:<8} {:<15} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>14}",
        "workload",
        "conc",
        "mode",
        "path",
        "ops/s",
        "p50 us",
        "p99 us",
        "max us",
        "vs native",
        "cpu/op",
        "redis/op",
        "vs single cpu/p50"
    )?;
    for c in cells {
        let ratio = c
            .ratio_to_native
            .map(|r| format!("{r:.3}"))
            .unwrap_or_else(|| "-".into());
        let vs_single = c
            .vs_single
            .map(|(cpu, p50)| format!("{cpu:.2}x/{p50:.2}x"))
            .unwrap_or_else(|| "-".into());
        outln!(
            "{:<12} {:>5}  {:<8} {:<15} {:>10.0} {:>9.1} {:>9.1} {:>10.0} {:>9} {:>9.1} {:>9.1} {:>14}",
            format!("{:?}", c.workload).to_lowercase(),
            c.concurrency,
            format!("{:?}", c.mode).to_lowercase(),
            serde_json::to_value(c.path)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            c.ops_per_sec,
            c.p50_us,
            c.p99_us,
            c.max_us,
            ratio,
            c.client_cpu_us_per_op,
            c.redis_cpu_us_per_op,
            vs_single
        )?;
    }
    Ok(())
}
