//! `torture`: worker processes contend for one lock while a nemesis injects a fault every few
//! seconds; every operation is recorded and the history checked at the end.
//!
//! Starts its own redis-servers (the lock's with `appendfsync always`, and one for the
//! protected resources). With `--node-workers N`, N of the workers run the Node package's
//! implementation of the worker protocol (`node/tools/protocol-worker.mjs`, with the Node of
//! `$DLOCK_NODE` or `PATH`; see `dlock_tests::node`) beside the Rust `worker` binary, on the
//! same lock; a killed worker is replaced by one of the same runtime. With `--redis redis://...` the lock's Redis is that one (password,
//! database and options kept) and only worker and network faults are injected: no pause,
//! CLIENT PAUSE, SCRIPT FLUSH or crash of a server other clients share. Workers (the `worker`
//! binary beside this one) reach the lock's Redis through an in-process TCP proxy. Every
//! `--nemesis-interval` one fault: pause a worker past the TTL, kill a worker, add latency,
//! blackhole, reset connections, and on its own Redis only: pause Redis, CLIENT PAUSE, SCRIPT
//! FLUSH, crash and restart Redis. Checks: one holder at a time, fences increasing and stale
//! writes refused, no lost update, every call returning in time, nothing left behind.
//!
//! Exit codes: 0 no violation, 1 a violation (listed), 2 bad input, 3 redis-server missing or
//! Redis unreachable, 4 internal failure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use dlock_host::server::RedisServer;
use dlock_tests::driver::Driven;
use dlock_tests::history::{FinalState, Recorder};
use dlock_tests::node::NodeWorkers;
use dlock_tests::outln;
use dlock_tests::proxy::{Fault, Proxy};
use dlock_tests::stats::XorShift;
use dlock_tests::tool::{
    self, EXIT_INTERNAL, EXIT_OK, EXIT_REDIS, EXIT_USAGE, EXIT_VIOLATION, Failure, ToolResult,
    parse_duration,
};
use dlock_tests::workers::{Outcome, Worker};
use indicatif::{ProgressBar, ProgressStyle};
use rustix::process::{Pid, Signal, kill_process};

const KEY: &str = "dlock-torture:hot";
const SET: &str = "dlock-torture:set";
const RESOURCE: &str = "dlock-torture:fenced";
const TTL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(10);
/// The bound on one worker call (the wait, its retries and Redis timeouts).
const CALL_BOUND: Duration = Duration::from_secs(30);

/// Soak test: worker processes contend for one lock while faults are injected; then every
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
        value_name = "URL"
    )]
    redis: Option<String>,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
    /// How long the workers run (then one TTL for the cleanup check).
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    duration: Duration,
    /// How many worker processes contend for the lock.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(2..=64))]
    workers: u32,
    /// How many of the workers run the Node package (`$DLOCK_NODE`, else `node` on PATH, Node
    /// 22 or later) instead of the Rust `worker` binary.
    #[arg(long, default_value_t = 0)]
    node_workers: u32,
    /// After each release a worker waits a random time up to this before its next acquire, so
    /// that the lock changes hands more often than when the holder re-acquires at once (waiters
    /// poll at most once a second). Default 0: no wait.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    think: Duration,
    /// How often the nemesis injects a fault.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    nemesis_interval: Duration,
    /// Seed for the workload and the order of faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The faults the nemesis cycles through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nemesis {
    PauseWorker,
    KillWorker,
    Latency,
    Blackhole,
    ResetConnections,
    PauseRedis,
    ClientPause,
    ScriptFlush,
    CrashRedis,
}

/// Every fault, in the nemesis's order, for the lock's Redis that torture started itself.
const FAULTS: [Nemesis; 9] = [
    Nemesis::PauseWorker,
    Nemesis::Latency,
    Nemesis::KillWorker,
    Nemesis::ResetConnections,
    Nemesis::ScriptFlush,
    Nemesis::PauseRedis,
    Nemesis::Blackhole,
    Nemesis::ClientPause,
    Nemesis::CrashRedis,
];

/// The faults that touch only the workers and the proxy in front of the Redis, for a given
/// Redis: nothing reaches its other clients (no pause, `CLIENT PAUSE`, `SCRIPT FLUSH` or crash).
const WORKER_AND_NETWORK_FAULTS: [Nemesis; 5] = [
    Nemesis::PauseWorker,
    Nemesis::Latency,
    Nemesis::KillWorker,
    Nemesis::ResetConnections,
    Nemesis::Blackhole,
];

struct Rig {
    /// The lock's Redis when torture started it (server-wide faults are allowed on it only).
    lock_server: Mutex<Option<RedisServer>>,
    _resource_server: RedisServer,
    proxy: Proxy,
    /// The lock's Redis as the workers reach it: through the proxy, with the credentials,
    /// database and options of the URL it was given.
    lock_url: String,
    resource_url: String,
    exe: std::path::PathBuf,
    /// The launcher of Node workers, when some run.
    node: Option<NodeWorkers>,
    recorder: Recorder,
    pids: Mutex<Vec<u32>>,
    /// Locks acquired by Rust workers and by Node workers.
    holds: [AtomicU32; 2],
    stopping: AtomicBool,
    next_id: AtomicU32,
}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::new(EXIT_INTERNAL, e.to_string())
}

fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = kill_process(pid, signal);
    }
}

impl Rig {
    async fn worker(&self, node: bool) -> ToolResult<Driven> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let program = match (&self.node, node) {
            (Some(launcher), true) => launcher.program(),
            _ => self.exe.as_path(),
        };
        let worker = Worker::spawn(program, &self.lock_url, &self.resource_url)
            .await
            .map_err(fail)?;
        self.pids.lock().unwrap().push(worker.pid());
        let mut driven = Driven::new(worker, id, &self.recorder);
        driven.patience = CALL_BOUND;
        Ok(driven)
    }

    fn some_worker(&self, rng: &mut XorShift) -> Option<u32> {
        let pids = self.pids.lock().unwrap();
        (!pids.is_empty()).then(|| pids[rng.below(pids.len() as u64) as usize])
    }

    fn redis_pid(&self) -> Option<u32> {
        self.lock_server
            .lock()
            .unwrap()
            .as_ref()
            .and_then(RedisServer::pid)
    }
}

/// One worker's loop: lock, fenced write, fenced guarded add, unlock; a killed worker is
/// replaced by a fresh one of the same runtime (a new client in the history).
async fn work(
    rig: Arc<Rig>,
    mut client: Driven,
    node: bool,
    think: Duration,
    seed: u64,
) -> ToolResult<()> {
    let mut rng = XorShift::new(seed);
    let mut round = 0u64;
    while !rig.stopping.load(Ordering::Relaxed) {
        round += 1;
        let element = format!("c{}r{round}", client.id);
        let got = client.acquire(KEY, TTL, WAIT, CALL_BOUND).await;
        match got.map(|r| r.outcome) {
            Some(Outcome::Ok) => {
                rig.holds[usize::from(node)].fetch_add(1, Ordering::Relaxed);
                client.fenced_write(RESOURCE, &element).await;
                if client.guarded_read(SET, &element).await.is_some() {
                    tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
                    client.guarded_write(SET, &element, true).await;
                }
                client.release().await;
                let think_ms = think.as_millis() as u64;
                if think_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(rng.below(think_ms + 1))).await;
                }
            }
            Some(_) => {}
            None => {
                // Gone (killed by the nemesis) or unanswered: replace the process.
                client.kill().await;
                client = rig.worker(node).await?;
            }
        }
    }
    Ok(())
}

async fn nemesis(
    rig: Arc<Rig>,
    faults: &'static [Nemesis],
    interval: Duration,
    seed: u64,
    counts: Arc<Mutex<Vec<u32>>>,
) {
    let mut rng = XorShift::new(seed ^ 0x5eed);
    let mut tick = 0usize;
    while !rig.stopping.load(Ordering::Relaxed) {
        tokio::time::sleep(interval).await;
        if rig.stopping.load(Ordering::Relaxed) {
            break;
        }
        let index = (tick + rng.below(2) as usize) % faults.len();
        tick += 1;
        let applied = apply(&rig, faults[index], &mut rng).await;
        if applied {
            counts.lock().unwrap()[index] += 1;
        }
    }
}

async fn apply(rig: &Rig, fault: Nemesis, rng: &mut XorShift) -> bool {
    match fault {
        Nemesis::PauseWorker => {
            let Some(pid) = rig.some_worker(rng) else {
                return false;
            };
            signal(pid, Signal::STOP);
            tokio::time::sleep(TTL + TTL / 2).await;
            signal(pid, Signal::CONT);
        }
        Nemesis::KillWorker => {
            let Some(pid) = rig.some_worker(rng) else {
                return false;
            };
            rig.pids.lock().unwrap().retain(|&p| p != pid);
            signal(pid, Signal::KILL);
        }
        Nemesis::Latency => {
            rig.proxy
                .set_fault(Fault::Latency(Duration::from_millis(50)));
            tokio::time::sleep(Duration::from_secs(2)).await;
            rig.proxy.set_fault(Fault::None);
        }
        Nemesis::Blackhole => {
            rig.proxy.set_fault(Fault::Blackhole);
            tokio::time::sleep(Duration::from_secs(1)).await;
            rig.proxy.set_fault(Fault::None);
            rig.proxy.reset_all();
        }
        Nemesis::ResetConnections => rig.proxy.reset_all(),
        Nemesis::PauseRedis => {
            let Some(pid) = rig.redis_pid() else {
                return false;
            };
            signal(pid, Signal::STOP);
            tokio::time::sleep(Duration::from_millis(500)).await;
            signal(pid, Signal::CONT);
        }
        Nemesis::ClientPause | Nemesis::ScriptFlush => {
            if rig.lock_server.lock().unwrap().is_none() {
                return false;
            }
            let Ok(client) = redis::Client::open(rig.lock_url.as_str()) else {
                return false;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let mut cmd = match fault {
                Nemesis::ClientPause => redis::cmd("CLIENT"),
                _ => redis::cmd("SCRIPT"),
            };
            match fault {
                Nemesis::ClientPause => cmd.arg("PAUSE").arg(1000).arg("ALL"),
                _ => cmd.arg("FLUSH"),
            };
            return cmd.query_async::<()>(&mut conn).await.is_ok();
        }
        Nemesis::CrashRedis => {
            // kill -9 and restart on the same port; with `appendfsync always` no lock or
            // fence counter is lost (without persistence this is unsafe; see the README).
            let mut server = rig.lock_server.lock().unwrap();
            let Some(server) = server.as_mut() else {
                return false;
            };
            return server.restart().is_ok();
        }
    }
    true
}

fn main() -> ExitCode {
    let args = TortureArgs::parse();
    tool::main("torture", run(args))
}

async fn run(args: TortureArgs) -> ToolResult<u8> {
    if args.node_workers > args.workers {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "--node-workers {} is more than --workers {}",
                args.node_workers, args.workers
            ),
        ));
    }
    let node = match args.node_workers {
        0 => None,
        _ => Some(NodeWorkers::find().map_err(|e| Failure::new(EXIT_USAGE, e))?),
    };
    let given = args.redis.as_deref();
    let json_out = args.json;
    let started_servers = given.is_none();
    let spawn_server = |extra: &'static [&'static str]| async move {
        tokio::task::spawn_blocking(move || RedisServer::start_with(extra))
            .await
            .map_err(fail)?
            .map_err(|e| Failure::new(EXIT_REDIS, format!("cannot start redis-server: {e}")))
    };
    let (lock_server, upstream, faults) = match given {
        Some(url) => (
            None,
            GivenRedis::parse(url)?,
            &WORKER_AND_NETWORK_FAULTS[..],
        ),
        None => {
            let server = spawn_server(&["--appendonly", "yes", "--appendfsync", "always"]).await?;
            let upstream = GivenRedis::parse(&server.url())?;
            (Some(server), upstream, &FAULTS[..])
        }
    };
    let resource_server = spawn_server(&[]).await?;
    let proxy = Proxy::start(upstream.addr).await.map_err(fail)?;
    let rig = Arc::new(Rig {
        lock_server: Mutex::new(lock_server),
        lock_url: upstream.through(proxy.addr()),
        resource_url: resource_server.url(),
        _resource_server: resource_server,
        proxy,
        exe: worker_binary()?,
        node,
        recorder: Recorder::new(),
        pids: Mutex::new(Vec::new()),
        holds: [AtomicU32::new(0), AtomicU32::new(0)],
        stopping: AtomicBool::new(false),
        next_id: AtomicU32::new(0),
    });

    let progress = if json_out {
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
    for i in 0..args.workers {
        // The Node workers are spread among the Rust ones.
        let node =
            i * args.node_workers / args.workers != (i + 1) * args.node_workers / args.workers;
        let client = rig.worker(node).await?;
        tasks.push(tokio::spawn(work(
            rig.clone(),
            client,
            node,
            args.think,
            args.seed.wrapping_add(u64::from(i)),
        )));
    }
    let counts = Arc::new(Mutex::new(vec![0u32; faults.len()]));
    let nemesis_task = tokio::spawn(nemesis(
        rig.clone(),
        faults,
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
    rig.proxy.set_fault(Fault::None);
    for pid in rig.pids.lock().unwrap().iter() {
        signal(*pid, Signal::CONT);
    }
    for task in tasks {
        task.await.map_err(fail)??;
    }
    let run_ended = Instant::now();
    progress.set_message("waiting one TTL for the cleanup check");
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    progress.finish_and_clear();

    let final_state = final_state(&rig, run_ended).await?;
    let history = rig.recorder.history();
    let report = history.check(&final_state);
    let counts = counts.lock().unwrap().clone();
    let holds = rig.holds.each_ref().map(|h| h.load(Ordering::Relaxed));
    let faults: Vec<String> = faults
        .iter()
        .zip(&counts)
        .map(|(fault, count)| format!("{fault:?} x{count}"))
        .collect();
    if json_out {
        let out = serde_json::json!({
            "duration_ms": args.duration.as_millis(),
            "workers": args.workers,
            "node_workers": args.node_workers,
            "node": rig.node.as_ref().map(|n| n.version.clone()),
            "holds_by_runtime": { "rust": holds[0], "node": holds[1] },
            "redis": if started_servers { "started by torture (appendfsync always)" } else { "given" },
            "ops": report.ops,
            "holds": report.holds,
            "faults": faults,
            "violations": report.violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "passed": report.is_ok(),
        });
        outln!("{out}")?;
    } else {
        let node = match &rig.node {
            Some(n) => format!(" ({} on Node {})", args.node_workers, n.version),
            None => String::new(),
        };
        outln!(
            "torture: {} workers{node} for {}",
            args.workers,
            humantime::format_duration(args.duration)
        )?;
        outln!("faults injected: {}", faults.join(", "))?;
        if rig.node.is_some() {
            outln!(
                "locks taken: {} by Rust workers, {} by Node workers",
                holds[0],
                holds[1]
            )?;
        }
        outln!("{report}")?;
    }
    Ok(if report.is_ok() && report.holds > 0 {
        EXIT_OK
    } else {
        EXIT_VIOLATION
    })
}

async fn final_state(rig: &Rig, run_ended: Instant) -> ToolResult<FinalState> {
    let redis_fail = |e: redis::RedisError| Failure::new(EXIT_REDIS, e.to_string());
    let mut resource = redis::Client::open(rig.resource_url.as_str())
        .map_err(redis_fail)?
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_fail)?;
    let set: Option<String> = redis::cmd("GET")
        .arg(SET)
        .query_async(&mut resource)
        .await
        .map_err(redis_fail)?;
    let elements: Vec<String> = set
        .unwrap_or_default()
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    let mut locks = redis::Client::open(rig.lock_url.as_str())
        .map_err(redis_fail)?
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_fail)?;
    let left: bool = redis::cmd("EXISTS")
        .arg(KEY)
        .query_async(&mut locks)
        .await
        .map_err(redis_fail)?;
    let mut state = FinalState::default().with_set(SET, elements);
    state.run_ended = Some(run_ended);
    if left {
        state.leftover_keys.push(KEY.to_owned());
    }
    Ok(state)
}

/// The `worker` binary, built beside this one.
fn worker_binary() -> ToolResult<std::path::PathBuf> {
    let exe = std::env::current_exe().map_err(fail)?;
    let worker = exe.with_file_name("worker");
    if !worker.exists() {
        return Err(Failure::new(
            EXIT_INTERNAL,
            format!(
                "{} is missing: build it (cargo build -p dlock-tests --bins)",
                worker.display()
            ),
        ));
    }
    Ok(worker)
}

/// A `redis://` URL split around its host and port, so the workers can reach the same Redis
/// (same credentials, database and options) through the proxy.
struct GivenRedis {
    /// `user:password@` (or empty).
    credentials: String,
    addr: SocketAddr,
    /// `/db?options` (or empty).
    tail: String,
}

impl GivenRedis {
    fn parse(url: &str) -> ToolResult<GivenRedis> {
        let usage = |what: String| Failure::new(EXIT_USAGE, what);
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            usage("torture needs a redis://HOST:PORT URL (TCP, no TLS)".to_owned())
        })?;
        // Everything up to the last `@` is credentials, whatever characters the password has.
        let host_start = rest.rfind('@').map_or(0, |at| at + 1);
        let location = &rest[host_start..];
        let host_end = location.find(['/', '?', '#']).unwrap_or(location.len());
        let host_port = &location[..host_end];
        let addr = std::net::ToSocketAddrs::to_socket_addrs(host_port)
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                usage(format!(
                    "cannot resolve HOST:PORT of {}",
                    dlock_host::redis::redact_url(url)
                ))
            })?;
        Ok(GivenRedis {
            credentials: rest[..host_start].to_owned(),
            addr,
            tail: location[host_end..].to_owned(),
        })
    }

    /// The URL of this Redis reached through `proxy`.
    fn through(&self, proxy: SocketAddr) -> String {
        format!("redis://{}{proxy}{}", self.credentials, self.tail)
    }
}
