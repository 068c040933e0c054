//! The nemesis: one fault every interval, from the list the run allows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dlock_tests::proxy::Fault;
use dlock_tests::stats::XorShift;
use dlock_tests::workers::Request;
use rustix::process::Signal;

use super::rig::{Rig, signal};
use super::{KEEP_TTL, KEPT, KEYS, TTL};

/// A fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// SIGSTOP a worker process (never a keeping one) past the TTL.
    PauseWorker,
    /// SIGKILL a worker process.
    KillWorker,
    /// 50 ms of latency on every connection to the lock's Redis, for 2 s.
    Latency,
    /// Nothing forwarded to or from the lock's Redis for 1 s, then every connection reset.
    Blackhole,
    /// Every connection to the lock's Redis reset (replies in flight cut).
    ResetConnections,
    /// Close a Node worker's `DistributedLock` under its lanes' calls.
    CloseNode,
    /// SIGSTOP the lock's Redis for 500 ms.
    PauseRedis,
    /// `CLIENT PAUSE 1000 ALL` on the lock's Redis.
    ClientPause,
    /// `SCRIPT FLUSH` on the lock's Redis.
    ScriptFlush,
    /// kill -9 the lock's Redis and restart it (with `appendfsync always`).
    CrashRedis,
    /// Quorum: one primary refuses writes to the lock's keys (ACL `-set -del`) for 3 s.
    PrimaryRefuses,
    /// Quorum: one primary out of memory (`maxmemory 1`) for 3 s.
    PrimaryOutOfMemory,
    /// Quorum: the lock keys hold hashes on one primary (where free) for 3 s.
    PrimaryWrongType,
    /// Quorum: nothing forwarded to or from one primary for 1 s.
    PrimaryBlackhole,
    /// Quorum: kill -9 one primary and restart it (with `appendfsync always`).
    PrimaryCrash,
    /// Quorum: one primary refuses writes (ACL) while another hears nothing, for 2 s: a
    /// majority is out (acquires may fail; no release may say released).
    TwoPrimariesOut,
    /// SIGTERM to a `dlock run` (it stops its job, then releases).
    TerminateRun,
    /// SIGINT to a `dlock run` (not from a terminal: it forwards it to its job's group).
    InterruptRun,
    /// The keeper that starts keeping a lock next cut off around its first extend: the reply of
    /// that extend cut, then nothing forwarded for one and a half leases, while the other
    /// keepers go on: its watchdog must stop its work before its lease, which that extend
    /// shortened, runs out.
    IsolateKeeper,
}

impl Nemesis {
    /// The fault named `name` (as the report prints it), if it is one of `allowed`.
    pub fn named(name: &str, allowed: &[Nemesis]) -> Option<Nemesis> {
        allowed
            .iter()
            .copied()
            .find(|fault| format!("{fault:?}") == name)
    }
}

/// The faults of a run on one Redis torture started, in the nemesis's order.
pub const ON_ITS_OWN_REDIS: &[Nemesis] = &[
    Nemesis::PauseWorker,
    Nemesis::Latency,
    Nemesis::KillWorker,
    Nemesis::ResetConnections,
    Nemesis::CloseNode,
    Nemesis::ScriptFlush,
    Nemesis::PauseRedis,
    Nemesis::Blackhole,
    Nemesis::ClientPause,
    Nemesis::IsolateKeeper,
    Nemesis::TerminateRun,
    Nemesis::CrashRedis,
    Nemesis::InterruptRun,
];

/// The faults for a given Redis: only the workers and the proxy in front of it; nothing
/// reaches its other clients (no pause, `CLIENT PAUSE`, `SCRIPT FLUSH` or crash).
pub const ON_A_GIVEN_REDIS: &[Nemesis] = &[
    Nemesis::PauseWorker,
    Nemesis::Latency,
    Nemesis::KillWorker,
    Nemesis::ResetConnections,
    Nemesis::CloseNode,
    Nemesis::Blackhole,
    Nemesis::TerminateRun,
    Nemesis::InterruptRun,
];

/// The faults of a quorum run: one primary at a time misbehaves (a majority stays healthy),
/// and the workers and the network as above. No worker is paused: quorum locks have no fence,
/// and a paused holder's unfenced write is the documented unsafety.
pub const ON_A_QUORUM: &[Nemesis] = &[
    Nemesis::PrimaryRefuses,
    Nemesis::Latency,
    Nemesis::KillWorker,
    Nemesis::PrimaryOutOfMemory,
    Nemesis::ResetConnections,
    Nemesis::PrimaryWrongType,
    Nemesis::CloseNode,
    Nemesis::PrimaryBlackhole,
    Nemesis::TwoPrimariesOut,
    Nemesis::PrimaryCrash,
];

/// Injects one of `faults` every `interval` until the run stops; counts each applied fault.
pub async fn run(
    rig: Arc<Rig>,
    faults: Vec<Nemesis>,
    interval: Duration,
    seed: u64,
    counts: Arc<Mutex<Vec<u32>>>,
) {
    let mut rng = XorShift::new(seed ^ 0x5eed);
    let mut tick = 0usize;
    while !rig.stopping() {
        tokio::time::sleep(interval).await;
        if rig.stopping() {
            break;
        }
        let index = (tick + rng.below(2) as usize) % faults.len();
        tick += 1;
        rig.recorder.note(format!("{:?} begins", faults[index]));
        let applied = apply(&rig, faults[index], &mut rng).await;
        rig.recorder.note(format!(
            "{:?} {}",
            faults[index],
            if applied {
                "ends"
            } else {
                "found nothing to act on"
            }
        ));
        if applied {
            counts.lock().unwrap()[index] += 1;
        }
    }
}

/// A connection to the lock's Redis number `i` torture started (not through its proxy).
async fn admin(rig: &Rig, i: usize) -> Option<redis::aio::MultiplexedConnection> {
    let url = rig.lock.servers.lock().unwrap().get(i)?.url();
    redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()
}

/// Runs `cmd` on the lock's Redis number `i`; whether it worked.
async fn on_server(rig: &Rig, i: usize, cmd: &redis::Cmd) -> bool {
    let Some(mut conn) = admin(rig, i).await else {
        return false;
    };
    cmd.query_async::<redis::Value>(&mut conn).await.is_ok()
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd
}

async fn apply(rig: &Rig, fault: Nemesis, rng: &mut XorShift) -> bool {
    let primary = rng.below(rig.lock.primaries() as u64) as usize;
    let started_here = !rig.lock.servers.lock().unwrap().is_empty();
    match fault {
        Nemesis::PauseWorker => {
            let Some(worker) = rig.pausable(rng.below(u64::MAX)) else {
                return false;
            };
            rig.recorder.note(format!("SIGSTOP to pid {}", worker.pid));
            let stopped = Instant::now();
            signal(worker.pid, Signal::STOP);
            tokio::time::sleep(TTL + TTL / 2).await;
            signal(worker.pid, Signal::CONT);
            let resumed = Instant::now();
            for process in worker.processes {
                rig.recorder.paused_at(process, stopped, resumed);
            }
        }
        Nemesis::KillWorker => {
            let Some(pid) = rig.any(rng.below(u64::MAX)) else {
                return false;
            };
            rig.recorder.note(format!("SIGKILL to pid {pid}"));
            signal(pid, Signal::KILL);
        }
        Nemesis::Latency => {
            for proxy in &rig.lock.proxies {
                proxy.set_fault(Fault::Latency(Duration::from_millis(50)));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            for proxy in &rig.lock.proxies {
                proxy.set_fault(Fault::None);
            }
        }
        Nemesis::Blackhole => {
            for proxy in &rig.lock.proxies {
                proxy.set_fault(Fault::Blackhole);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            for proxy in &rig.lock.proxies {
                proxy.set_fault(Fault::None);
                proxy.reset_all();
            }
        }
        Nemesis::ResetConnections => {
            for proxy in &rig.lock.proxies {
                proxy.reset_all();
            }
        }
        Nemesis::CloseNode => {
            let mut controls = rig.node_controls.lock().await;
            if controls.is_empty() {
                return false;
            }
            let pick = rng.below(controls.len() as u64) as usize;
            let (_, control) = &mut controls[pick];
            return control
                .call(&Request::Close, Duration::from_secs(30))
                .await
                .is_ok();
        }
        Nemesis::PauseRedis => {
            let Some(pid) = rig
                .lock
                .servers
                .lock()
                .unwrap()
                .first()
                .and_then(|s| s.pid())
            else {
                return false;
            };
            signal(pid, Signal::STOP);
            tokio::time::sleep(Duration::from_millis(500)).await;
            signal(pid, Signal::CONT);
        }
        Nemesis::ClientPause => {
            return started_here
                && on_server(rig, 0, &cmd(&["CLIENT", "PAUSE", "1000", "ALL"])).await;
        }
        Nemesis::ScriptFlush => {
            return started_here && on_server(rig, 0, &cmd(&["SCRIPT", "FLUSH"])).await;
        }
        Nemesis::CrashRedis | Nemesis::PrimaryCrash => {
            let i = if fault == Nemesis::CrashRedis {
                0
            } else {
                primary
            };
            let mut servers = rig.lock.servers.lock().unwrap();
            let Some(server) = servers.get_mut(i) else {
                return false;
            };
            return server.restart().is_ok();
        }
        Nemesis::PrimaryRefuses => {
            let refuse = cmd(&["ACL", "SETUSER", "default", "-set", "-del"]);
            if !on_server(rig, primary, &refuse).await {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            on_server(rig, primary, &cmd(&["ACL", "SETUSER", "default", "+@all"])).await;
        }
        Nemesis::PrimaryOutOfMemory => {
            if !on_server(rig, primary, &cmd(&["CONFIG", "SET", "maxmemory", "1"])).await {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            on_server(rig, primary, &cmd(&["CONFIG", "SET", "maxmemory", "0"])).await;
        }
        Nemesis::PrimaryWrongType => {
            let Some(mut conn) = admin(rig, primary).await else {
                return false;
            };
            let mut planted = Vec::new();
            for key in KEYS.iter().chain([&KEPT]) {
                let set: redis::RedisResult<bool> = redis::cmd("HSETNX")
                    .arg(*key)
                    .arg("torture")
                    .arg("not a lock")
                    .query_async(&mut conn)
                    .await;
                if let Ok(true) = set {
                    planted.push(*key);
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            for key in planted {
                // Only the hash planted here: by now a lock may hold the key elsewhere.
                let _: redis::RedisResult<i64> = redis::cmd("HDEL")
                    .arg(key)
                    .arg("torture")
                    .query_async(&mut conn)
                    .await;
            }
        }
        Nemesis::PrimaryBlackhole => {
            let proxy = &rig.lock.proxies[primary];
            proxy.set_fault(Fault::Blackhole);
            tokio::time::sleep(Duration::from_secs(1)).await;
            proxy.set_fault(Fault::None);
            proxy.reset_all();
        }
        Nemesis::TwoPrimariesOut => {
            let silent = (primary + 1) % rig.lock.primaries();
            let refuse = cmd(&["ACL", "SETUSER", "default", "-set", "-del"]);
            if !on_server(rig, primary, &refuse).await {
                return false;
            }
            let proxy = &rig.lock.proxies[silent];
            proxy.set_fault(Fault::Blackhole);
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.set_fault(Fault::None);
            proxy.reset_all();
            on_server(rig, primary, &cmd(&["ACL", "SETUSER", "default", "+@all"])).await;
        }
        Nemesis::TerminateRun | Nemesis::InterruptRun => {
            let Some(jobs) = &rig.jobs else {
                return false;
            };
            let pid = {
                let pids = jobs.pids.lock().unwrap();
                if pids.is_empty() {
                    return false;
                }
                pids[rng.below(pids.len() as u64) as usize]
            };
            let sig = if fault == Nemesis::TerminateRun {
                Signal::TERM
            } else {
                Signal::INT
            };
            signal(pid, sig);
        }
        Nemesis::IsolateKeeper => {
            // The keeper that starts keeping a lock next (within 15 s), cut off just before
            // its first extend (a third of the TTL in), the one that shortens its lease.
            let before = rig.keeping.lock().unwrap().clone();
            let waited = Instant::now();
            let (keeper, since) = loop {
                let now = rig.keeping.lock().unwrap().clone();
                let started = now.iter().enumerate().find_map(|(i, at)| {
                    (at.is_some() && before.get(i).copied().flatten() != *at)
                        .then(|| (i, at.expect("checked")))
                });
                if let Some(found) = started {
                    break found;
                }
                if waited.elapsed() > Duration::from_secs(15) || rig.stopping() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let Some((proxy, _)) = rig.lock.keepers.get(keeper) else {
                return false;
            };
            tokio::time::sleep_until((since + KEEP_TTL / 3 - KEEP_TTL / 12).into()).await;
            proxy.set_fault(Fault::ResetMidReply);
            tokio::time::sleep(KEEP_TTL / 6).await;
            proxy.set_fault(Fault::Blackhole);
            tokio::time::sleep(KEEP_TTL + KEEP_TTL / 2).await;
            proxy.set_fault(Fault::None);
            proxy.reset_all();
        }
    }
    true
}
