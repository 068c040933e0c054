//! `torture`: worker processes contend for a few locks while a nemesis injects a fault every
//! few seconds; every operation is recorded and the history checked at the end.
//!
//! Starts its own redis-servers (the lock's with `appendfsync always`, one per member with
//! `--quorum N`, and one for the protected resources). Worker processes (the `worker` binary
//! beside this one, and with `--node-workers N` the Node package's protocol worker,
//! `node/tools/protocol-worker.mjs`, with the Node of `$DLOCK_NODE` or `PATH`) reach the lock's
//! Redis through in-process TCP proxies. Each process runs `--lanes` lock clients at once
//! (API-level nemeses): in a Rust process one lane gives its acquires up at random moments
//! (and then waits for the same key at once), the others wait, write fenced and add under the
//! lock; a Node process runs every lane on one `DistributedLock` with fewer instances
//! (`--node-max-instances`) than lanes; `--keep-workers` processes keep their lock alive with
//! the watchdog while they add to a set unfenced. A killed process is replaced by one of the
//! same kind. With `--redis redis://...` the lock's Redis is that one (password, database and
//! options kept) and only worker and network faults are injected. Every `--nemesis-interval`
//! one fault (see `nemesis::Nemesis`): pause or kill a worker, close a Node worker's lock,
//! latency, blackhole, reset connections, and on its own Redis only: pause Redis, CLIENT PAUSE,
//! SCRIPT FLUSH, crash and restart Redis; over a quorum, one primary at a time refusing writes
//! (ACL), out of memory, holding hashes in the lock keys, blackholed or crashed.
//!
//! Checks (`dlock_tests::history`): I1 one holder at a time, I2 fences increasing (and not
//! shared between keys), stale writes refused, I3 ownership, I4 no lost update, T1 every call
//! returning in time, C1 nothing left behind, R1 a released lock held by no majority, E1
//! acquires failing only as busy, W1 a wait giving up only while someone could hold the lock,
//! J1 no job process running without its lock, K1 no watchdog saying kept past its lease.
//!
//! Exit codes: 0 no violation, 1 a violation (listed), 2 bad input, 3 redis-server missing or
//! Redis unreachable, 4 internal failure.

mod jobs;
mod nemesis;
mod rig;
mod workload;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use dlock_testing::RedisServer;
use dlock_tests::history::FinalState;
use dlock_tests::node::NodeWorkers;
use dlock_tests::outln;
use dlock_tests::proxy::{Fault, Proxy};
use dlock_tests::tool::{
    self, EXIT_OK, EXIT_REDIS, EXIT_USAGE, EXIT_VIOLATION, Failure, ToolResult, parse_duration,
};
use indicatif::{ProgressBar, ProgressStyle};
use rustix::process::Signal;

use nemesis::Nemesis;
use rig::{GivenRedis, Kind, LockRedis, Rig, fail, signal};

/// The keys plain and cancelling lanes contend for: two of them are one key and the same key
/// in braces (distinct locks that must not share a fence counter or waiters).
const KEYS: [&str; 3] = [
    "dlock-torture:hot",
    "{dlock-torture:hot}",
    "dlock-torture:warm",
];
/// The key keeping lanes contend for.
const KEPT: &str = "dlock-torture:kept";
/// The lease of plain lanes' locks on one Redis.
const TTL: Duration = Duration::from_secs(2);
/// The lease of plain lanes' locks over a quorum: longer than a release round with a primary
/// that does not answer (a command timeout), so that what a release left behind is still there
/// when R1 looks.
const QUORUM_TTL: Duration = Duration::from_secs(6);
/// The lease of cancelling lanes' acquires: longer than a wait, so that a call that waited on
/// its own cancelled call's lock would give up.
const LONG_TTL: Duration = Duration::from_secs(30);
/// The lease keeping lanes take, and the one their watchdog extends to: the first extend
/// shortens the lease, so an extend whose reply is cut then leaves a lease shorter than the
/// one the lane had.
const KEEP_LEASE: Duration = Duration::from_secs(30);
const KEEP_TTL: Duration = Duration::from_secs(4);
/// How long a lane waits for a busy lock.
const WAIT: Duration = Duration::from_secs(10);
/// How many violations a failed run shows the timeline of, and how many lines each.
const EXCERPTS: usize = 3;
const EXCERPT_LINES: usize = 120;
/// The bound on one worker call (the wait, its retries and Redis timeouts).
const CALL_BOUND: Duration = Duration::from_secs(30);

/// The fenced resource guarded by `KEYS[index]`.
fn resource_of(index: usize) -> String {
    format!("dlock-torture:fenced:{index}")
}

/// The guarded set of `KEYS[index]` (of [`KEPT`] for `index == KEYS.len()`).
fn set_of(index: usize) -> String {
    format!("dlock-torture:set:{index}")
}

/// Soak test: worker processes contend for a few locks while faults are injected; then every
/// invariant is checked on the recorded history.
#[derive(Debug, Parser)]
#[command(name = "torture", max_term_width = 100)]
struct TortureArgs {
    /// The lock's Redis (redis://HOST:PORT[/DB], password allowed); only worker and network
    /// faults are injected on it. [default: one started here]
    #[arg(
        long,
        env = "DLOCK_REDIS_URL",
        hide_env_values = true,
        value_name = "URL",
        conflicts_with = "quorum"
    )]
    redis: Option<String>,
    /// Take the locks over this many independent primaries started here (quorum mode,
    /// Redlock; no fencing), with one primary at a time misbehaving.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(3..=7))]
    quorum: Option<u32>,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
    /// How long the workers run (then one TTL for the cleanup check).
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    duration: Duration,
    /// How many worker processes contend for the locks (keeping ones included).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(2..=64))]
    workers: u32,
    /// How many of the workers run the Node package (`$DLOCK_NODE`, else `node` on PATH, Node
    /// 22 or later) instead of the Rust `worker` binary.
    #[arg(long, default_value_t = 0)]
    node_workers: u32,
    /// How many of the (Rust) workers keep their lock alive with the watchdog while they work.
    #[arg(long, default_value_t = 1)]
    keep_workers: u32,
    /// How many processes run `dlock run` jobs that check they never run without their lock
    /// (beside --workers; not in quorum mode).
    #[arg(long, default_value_t = 1)]
    run_workers: u32,
    /// Lock clients per worker process, running at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    lanes: u32,
    /// Instances of each Node worker's `DistributedLock` (fewer than --lanes: calls wait for
    /// an instance, and handles must stay with theirs).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    node_max_instances: u32,
    /// After each release a lane waits a random time up to this before its next acquire, so
    /// that the lock changes hands more often than when the holder re-acquires at once.
    /// Default 0: no wait.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    think: Duration,
    /// How often the nemesis injects a fault.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    nemesis_interval: Duration,
    /// Only these faults (names as the report prints them, comma-separated), among those the
    /// run allows. [default: all it allows]
    #[arg(long, value_delimiter = ',', value_name = "FAULT")]
    faults: Vec<String>,
    /// Seed for the workload and the order of faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the recorded history to this file: one line per op, with the faults injected and
    /// the worker processes started, in time order (to read why a run failed).
    #[arg(long, value_name = "FILE")]
    history: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = TortureArgs::parse();
    tool::main("torture", run(args))
}

async fn spawn_server(extra: &'static [&'static str]) -> ToolResult<RedisServer> {
    tokio::task::spawn_blocking(move || RedisServer::start_with(extra))
        .await
        .map_err(fail)?
        .map_err(|e| Failure::new(EXIT_REDIS, format!("cannot start redis-server: {e}")))
}

/// The lock's Redis: the one given, or servers started here (one, or `quorum` of them), each
/// behind a proxy; and which faults the run allows on it.
async fn lock_redis(args: &TortureArgs) -> ToolResult<(LockRedis, &'static [Nemesis])> {
    let (servers, given, faults) = match (&args.redis, args.quorum) {
        (Some(url), _) => (
            Vec::new(),
            vec![GivenRedis::parse(url)?],
            nemesis::ON_A_GIVEN_REDIS,
        ),
        (None, quorum) => {
            let mut servers = Vec::new();
            for _ in 0..quorum.unwrap_or(1) {
                servers
                    .push(spawn_server(&["--appendonly", "yes", "--appendfsync", "always"]).await?);
            }
            let given = servers
                .iter()
                .map(|s| GivenRedis::parse(&s.url()))
                .collect::<ToolResult<Vec<_>>>()?;
            let faults = if quorum.is_some() {
                nemesis::ON_A_QUORUM
            } else {
                nemesis::ON_ITS_OWN_REDIS
            };
            (servers, given, faults)
        }
    };
    let mut proxies = Vec::new();
    let mut urls = Vec::new();
    let mut direct = Vec::new();
    let direct_urls: Vec<String> = given.iter().map(GivenRedis::direct).collect();
    for redis in &given {
        let proxy = Proxy::start(redis.addr).await.map_err(fail)?;
        urls.push(redis.through(proxy.addr()));
        proxies.push(proxy);
        let client = redis::Client::open(redis.direct())
            .map_err(|e| Failure::new(EXIT_USAGE, e.to_string()))?;
        let manager = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(|e| Failure::new(EXIT_REDIS, e.to_string()))?;
        direct.push(manager);
    }
    // On one server, each keeping worker gets a proxy of its own.
    let mut keepers = Vec::new();
    if let [redis] = given.as_slice() {
        for _ in 0..args.keep_workers {
            let proxy = Proxy::start(redis.addr).await.map_err(fail)?;
            let url = redis.through(proxy.addr());
            keepers.push((proxy, url));
        }
    }
    let lock = LockRedis {
        servers: Mutex::new(servers),
        proxies,
        url: urls.join(","),
        direct,
        direct_urls,
        keepers,
    };
    Ok((lock, faults))
}

async fn run(args: TortureArgs) -> ToolResult<u8> {
    if args.node_workers + args.keep_workers > args.workers {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "--node-workers {} and --keep-workers {} are more than --workers {}",
                args.node_workers, args.keep_workers, args.workers
            ),
        ));
    }
    let node = match args.node_workers {
        0 => None,
        _ => Some(NodeWorkers::find().map_err(|e| Failure::new(EXIT_USAGE, e))?),
    };
    let (lock, allowed) = lock_redis(&args).await?;
    let faults: Vec<Nemesis> = if args.faults.is_empty() {
        allowed.to_vec()
    } else {
        args.faults
            .iter()
            .map(|name| {
                Nemesis::named(name, allowed).ok_or_else(|| {
                    let names: Vec<String> = allowed.iter().map(|f| format!("{f:?}")).collect();
                    Failure::new(
                        EXIT_USAGE,
                        format!(
                            "--faults: {name:?} is not a fault of this run (it allows {})",
                            names.join(", ")
                        ),
                    )
                })
            })
            .collect::<ToolResult<_>>()?
    };
    let resource_server = spawn_server(&[]).await?;
    let run_workers = if args.quorum.is_some() {
        0
    } else {
        args.run_workers
    };
    let jobs = match run_workers {
        0 => None,
        _ => Some(Arc::new(jobs::Jobs::new()?)),
    };
    let rig = Arc::new(Rig::new(
        lock,
        resource_server,
        node,
        args.node_max_instances,
        args.lanes,
        jobs.clone(),
    )?);

    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.duration.as_secs())
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut tasks = Vec::new();
    let kinds = Kind::spread(args.workers, args.node_workers, args.keep_workers);
    for (i, kind) in (0..args.workers).zip(kinds) {
        let seed = args.seed.wrapping_add(u64::from(i) << 32);
        let keeper = (i + args.keep_workers).saturating_sub(args.workers) as usize;
        tasks.push(tokio::spawn(workload::process(
            rig.clone(),
            kind,
            keeper,
            args.think,
            seed,
        )));
    }
    if let Some(jobs) = &jobs {
        for i in 0..run_workers {
            let seed = args.seed.wrapping_add(u64::from(i) << 40);
            tasks.push(tokio::spawn(jobs::worker(rig.clone(), jobs.clone(), seed)));
        }
    }
    let counts = Arc::new(Mutex::new(vec![0u32; faults.len()]));
    let nemesis_task = tokio::spawn(nemesis::run(
        rig.clone(),
        faults.clone(),
        args.nemesis_interval,
        args.seed,
        counts.clone(),
    ));
    let deadline = Instant::now() + args.duration;
    while Instant::now() < deadline {
        let ops = rig.recorder.history().ops.len();
        progress.set_position(
            args.duration
                .saturating_sub(deadline - Instant::now())
                .as_secs(),
        );
        progress.set_message(format!("{ops} ops recorded"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    rig.stopping.store(true, Ordering::Relaxed);
    let _ = nemesis_task.await;
    for proxy in rig
        .lock
        .proxies
        .iter()
        .chain(rig.lock.keepers.iter().map(|(p, _)| p))
    {
        proxy.set_fault(Fault::None);
    }
    for worker in rig.pids.lock().unwrap().iter() {
        signal(worker.pid, Signal::CONT);
    }
    for task in tasks {
        task.await.map_err(fail)??;
    }
    let run_ended = Instant::now();
    progress.set_message("waiting for the leases to run out, for the cleanup check");
    tokio::time::sleep(LONG_TTL.max(KEEP_LEASE) + Duration::from_millis(500)).await;
    progress.finish_and_clear();

    let mut final_state = final_state(&rig, run_ended).await?;
    if jobs.is_some() {
        final_state.job_violations = jobs::violations(&rig).await?;
    }
    let history = rig.recorder.history();
    if let Some(path) = &args.history {
        std::fs::write(path, history.to_string()).map_err(|e| {
            fail(format!(
                "cannot write the history to {}: {e}",
                path.display()
            ))
        })?;
    }
    let report = history.check(&final_state);
    let counts = counts.lock().unwrap().clone();
    let holds = rig.holds.each_ref().map(|h| h.load(Ordering::Relaxed));
    let faults: Vec<String> = faults
        .iter()
        .zip(&counts)
        .map(|(fault, count)| format!("{fault:?} x{count}"))
        .collect();
    if args.json {
        let out = serde_json::json!({
            "duration_ms": args.duration.as_millis(),
            "workers": args.workers,
            "lanes": args.lanes,
            "node_workers": args.node_workers,
            "keep_workers": args.keep_workers,
            "quorum": args.quorum,
            "node": rig.node.as_ref().map(|n| n.version.clone()),
            "holds_by_runtime": { "rust": holds[0], "node": holds[1] },
            "jobs": jobs.as_ref().map(|j| serde_json::json!({
                "ran": j.ran.load(Ordering::Relaxed),
                "stopped": j.stopped.load(Ordering::Relaxed),
            })),
            "redis": if args.redis.is_none() { "started by torture (appendfsync always)" } else { "given" },
            "ops": report.ops,
            "holds": report.holds,
            "faults": faults,
            "violations": report.violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "excerpts": report.violations.iter().take(EXCERPTS)
                .map(|v| history.excerpt(v, EXCERPT_LINES)).collect::<Vec<_>>(),
            "passed": report.is_ok(),
        });
        outln!("{out}")?;
    } else {
        let node = match &rig.node {
            Some(n) => format!(" ({} on Node {})", args.node_workers, n.version),
            None => String::new(),
        };
        let mode = match args.quorum {
            Some(n) => format!(", quorum of {n}"),
            None => String::new(),
        };
        outln!(
            "torture: {} workers{node} of {} lanes{mode} for {}",
            args.workers,
            args.lanes,
            humantime::format_duration(args.duration)
        )?;
        outln!("faults injected: {}", faults.join(", "))?;
        outln!(
            "locks taken: {} by Rust lanes, {} by Node lanes",
            holds[0],
            holds[1]
        )?;
        if let Some(jobs) = &jobs {
            outln!(
                "dlock run: {} jobs ran, {} stopped (lock lost or --max-hold)",
                jobs.ran.load(Ordering::Relaxed),
                jobs.stopped.load(Ordering::Relaxed)
            )?;
        }
        outln!("{report}")?;
        for violation in report.violations.iter().take(EXCERPTS) {
            outln!(
                "timeline up to {violation}:\n{}",
                history.excerpt(violation, EXCERPT_LINES)
            )?;
        }
    }
    Ok(if report.is_ok() && report.holds > 0 {
        EXIT_OK
    } else {
        EXIT_VIOLATION
    })
}

/// The guarded sets' contents and the lock keys left on any primary, after the run.
async fn final_state(rig: &Rig, run_ended: Instant) -> ToolResult<FinalState> {
    let redis_fail = |e: redis::RedisError| Failure::new(EXIT_REDIS, e.to_string());
    let mut resource = redis::Client::open(rig.resource_url.as_str())
        .map_err(redis_fail)?
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_fail)?;
    let mut state = FinalState::default();
    for index in 0..=KEYS.len() {
        let set: Option<String> = redis::cmd("GET")
            .arg(set_of(index))
            .query_async(&mut resource)
            .await
            .map_err(redis_fail)?;
        let elements: Vec<String> = set
            .unwrap_or_default()
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        state = state.with_set(set_of(index), elements);
    }
    // Fresh connections: a crash and restart of a server may have broken the run's own.
    for url in &rig.lock.direct_urls {
        let mut conn = redis::Client::open(url.as_str())
            .map_err(redis_fail)?
            .get_multiplexed_async_connection()
            .await
            .map_err(redis_fail)?;
        for key in KEYS.iter().chain([&KEPT, &jobs::JOB_KEY]) {
            let left: bool = redis::cmd("EXISTS")
                .arg(*key)
                .query_async(&mut conn)
                .await
                .map_err(redis_fail)?;
            if left && !state.leftover_keys.iter().any(|k| k == key) {
                state.leftover_keys.push((*key).to_owned());
            }
        }
    }
    state.run_ended = Some(run_ended);
    state.strict = true;
    Ok(state)
}
