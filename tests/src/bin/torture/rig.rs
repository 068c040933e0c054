//! What a torture run stands on: the lock's Redis (one server, or one per quorum member, each
//! behind a fault proxy), the resources' Redis, the worker processes and the history.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dlock_testing::RedisServer;
use dlock_tests::driver::Driven;
use dlock_tests::history::{Observation, Recorder, ReleaseObservation};
use dlock_tests::node::NodeWorkers;
use dlock_tests::proxy::Proxy;
use dlock_tests::tool::{EXIT_INTERNAL, EXIT_USAGE, Failure, ToolResult};
use dlock_tests::workers::Worker;
use redis::aio::ConnectionManager;
use rustix::process::{Pid, Signal, kill_process};

/// The runtime a worker process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The Rust `worker` binary: each lane a client of its own on one runtime; one lane gives
    /// its calls up at random moments.
    Rust,
    /// The Node package's protocol worker: every lane on one `DistributedLock` with fewer
    /// instances than lanes.
    Node,
    /// Rust lanes that keep their lock alive with the watchdog while they work, never paused
    /// (a paused holder is the documented unsafety, not what they test).
    Keep,
}

impl Kind {
    /// The kinds of `workers` worker processes, `node` of them Node and `keep` keeping ones
    /// (`node + keep <= workers`): the keeping ones last, the Node ones spread among the others.
    pub fn spread(workers: u32, node: u32, keep: u32) -> Vec<Kind> {
        let plain = workers - keep;
        (0..workers)
            .map(|i| {
                if i >= plain {
                    Kind::Keep
                } else if i * node / plain != (i + 1) * node / plain {
                    Kind::Node
                } else {
                    Kind::Rust
                }
            })
            .collect()
    }
}

/// The lock's Redis as torture reaches it.
pub struct LockRedis {
    /// The servers torture started (empty for a given Redis): server-wide faults only on these.
    pub servers: Mutex<Vec<RedisServer>>,
    /// One fault proxy per server, in the servers' order.
    pub proxies: Vec<Proxy>,
    /// What the workers are given: each server through its proxy (a comma list in quorum
    /// mode), with the credentials, database and options of the URL given.
    pub url: String,
    /// Connections straight to each server (not through the proxies), for observations.
    pub direct: Vec<ConnectionManager>,
    /// The URLs of those connections.
    pub direct_urls: Vec<String>,
    /// On one server: a proxy of its own per keeping worker, and the URL through it, so that
    /// the nemesis can cut one keeper off while the others go on.
    pub keepers: Vec<(Proxy, String)>,
}

impl LockRedis {
    /// How many independent primaries hold the lock (1, or the quorum's size).
    pub fn primaries(&self) -> usize {
        self.proxies.len()
    }

    /// Whether locks are taken over a quorum of primaries.
    pub fn quorum(&self) -> bool {
        self.primaries() > 1
    }

    /// The URL of server `i`, straight (not through its proxy).
    pub fn direct_url(&self, i: usize) -> String {
        self.direct_urls[i].clone()
    }
}

/// A live worker process.
#[derive(Clone, Debug)]
pub struct LiveWorker {
    pub pid: u32,
    pub kind: Kind,
    /// The history processes of its lanes.
    pub processes: Vec<u32>,
}

/// Everything the workload, the nemesis and the report share.
pub struct Rig {
    pub lock: LockRedis,
    pub _resource_server: RedisServer,
    pub resource_url: String,
    exe: std::path::PathBuf,
    /// The launcher of Node workers, when some run.
    pub node: Option<NodeWorkers>,
    /// Instances of each Node worker's `DistributedLock`.
    pub node_max_instances: u32,
    /// The `dlock run` workers' scripts and counts, when some run.
    pub jobs: Option<Arc<super::jobs::Jobs>>,
    /// Lanes per worker process.
    pub lanes: u32,
    pub recorder: Recorder,
    /// Live worker processes.
    pub pids: Mutex<Vec<LiveWorker>>,
    /// Control lanes of live Node workers (for `close`), by pid.
    pub node_controls: tokio::sync::Mutex<Vec<(u32, Worker)>>,
    /// Locks acquired by Rust lanes and by Node lanes.
    pub holds: [AtomicU32; 2],
    /// When each keeping worker last started keeping a lock (for the nemesis to cut its first
    /// extend off).
    pub keeping: Mutex<Vec<Option<Instant>>>,
    pub stopping: AtomicBool,
    next_id: AtomicU32,
}

/// The lane of a Node worker the nemesis closes its `DistributedLock` through.
pub const CONTROL_LANE: u32 = 1000;

pub fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::new(EXIT_INTERNAL, e.to_string())
}

pub fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = kill_process(pid, signal);
    }
}

impl Rig {
    pub fn new(
        lock: LockRedis,
        resource_server: RedisServer,
        node: Option<NodeWorkers>,
        node_max_instances: u32,
        lanes: u32,
        jobs: Option<Arc<super::jobs::Jobs>>,
    ) -> ToolResult<Rig> {
        Ok(Rig {
            jobs,
            lock,
            resource_url: resource_server.url(),
            _resource_server: resource_server,
            exe: worker_binary()?,
            node,
            node_max_instances,
            lanes,
            recorder: Recorder::new(),
            pids: Mutex::new(Vec::new()),
            node_controls: tokio::sync::Mutex::new(Vec::new()),
            holds: [AtomicU32::new(0), AtomicU32::new(0)],
            keeping: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            next_id: AtomicU32::new(0),
        })
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// A new worker process of `kind` (the `keeper`-th keeping one, for [`Kind::Keep`]), with a
    /// driven client (a history process) per lane.
    pub async fn process(self: &Arc<Self>, kind: Kind, keeper: usize) -> ToolResult<Vec<Driven>> {
        let max_instances = self.node_max_instances.to_string();
        let url = match (kind, self.lock.keepers.get(keeper)) {
            (Kind::Keep, Some((_, url))) => url.as_str(),
            _ => self.lock.url.as_str(),
        };
        let (program, env) = match (&self.node, kind) {
            (Some(launcher), Kind::Node) => (
                launcher.program(),
                vec![
                    ("DLOCK_REDIS_URL", url),
                    ("DLOCK_NODE_MAX_INSTANCES", max_instances.as_str()),
                ],
            ),
            _ => (self.exe.as_path(), vec![("DLOCK_REDIS_URL", url)]),
        };
        let first = Worker::spawn_with(program, &env, &self.resource_url)
            .await
            .map_err(fail)?;
        let pid = first.pid();
        if kind == Kind::Node {
            let control = first.lane(CONTROL_LANE);
            self.node_controls.lock().await.push((pid, control));
        }
        let mut workers: Vec<Worker> = (1..self.lanes).map(|lane| first.lane(lane)).collect();
        workers.insert(0, first);
        let lanes: Vec<Driven> = workers
            .into_iter()
            .map(|worker| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let mut driven = Driven::new(worker, id, &self.recorder);
                driven.patience = super::CALL_BOUND;
                driven
            })
            .collect();
        let ids: Vec<String> = lanes.iter().map(|lane| format!("p{}", lane.id)).collect();
        self.recorder
            .note(format!("{kind:?} worker pid {pid} runs {}", ids.join(" ")));
        self.pids.lock().unwrap().push(LiveWorker {
            pid,
            kind,
            processes: lanes.iter().map(|lane| lane.id).collect(),
        });
        Ok(lanes)
    }

    /// Notes that the `keeper`-th keeping worker started keeping a lock now.
    pub fn keeping_since(&self, keeper: usize) {
        let mut keeping = self.keeping.lock().unwrap();
        if keeping.len() <= keeper {
            keeping.resize(keeper + 1, None);
        }
        keeping[keeper] = Some(Instant::now());
    }

    /// Forgets a worker process that is gone.
    pub async fn forget(&self, pid: u32) {
        self.pids.lock().unwrap().retain(|w| w.pid != pid);
        self.node_controls.lock().await.retain(|(p, _)| *p != pid);
    }

    /// A live worker process that may be paused (not a keeping one), at random.
    pub fn pausable(&self, pick: u64) -> Option<LiveWorker> {
        let pids = self.pids.lock().unwrap();
        let candidates: Vec<&LiveWorker> = pids.iter().filter(|w| w.kind != Kind::Keep).collect();
        (!candidates.is_empty())
            .then(|| candidates[(pick % candidates.len() as u64) as usize].clone())
    }

    /// A live worker process, at random.
    pub fn any(&self, pick: u64) -> Option<u32> {
        let pids = self.pids.lock().unwrap();
        (!pids.is_empty()).then(|| pids[(pick % pids.len() as u64) as usize].pid)
    }

    /// Records what `key` holds on the (single) lock server, expecting `token` (I3).
    pub async fn observe(&self, key: &str, token: &str) {
        if self.lock.quorum() {
            // A holder's key may be missing on a minority of the primaries: I3 judges one
            // store at a time.
            return;
        }
        let mut conn = self.lock.direct[0].clone();
        let sent = Instant::now();
        let got = redis::cmd("GET")
            .arg(key)
            .query_async::<Option<String>>(&mut conn)
            .await;
        if let Ok(observed) = got {
            self.recorder.observe(Observation {
                key: key.to_owned(),
                expected_token: token.to_owned(),
                observed_token: observed,
                sent,
                answered: Instant::now(),
            });
        }
    }

    /// Records on how many primaries `key` still holds `token` after the release `release`
    /// returned released (R1); skipped when a primary does not answer.
    pub async fn observe_release(
        &self,
        release: dlock_tests::history::OpId,
        key: &str,
        token: &str,
    ) {
        let sent = Instant::now();
        let mut holding = 0;
        for conn in &self.lock.direct {
            let mut conn = conn.clone();
            let got = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<String>>(&mut conn),
            )
            .await;
            match got {
                Ok(Ok(value)) => holding += u32::from(value.as_deref() == Some(token)),
                _ => return,
            }
        }
        self.recorder.observe_release(ReleaseObservation {
            release,
            holding,
            primaries: self.lock.primaries() as u32,
            sent,
        });
    }
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
pub struct GivenRedis {
    /// `user:password@` (or empty).
    credentials: String,
    pub addr: SocketAddr,
    /// `/db?options` (or empty).
    tail: String,
}

impl GivenRedis {
    pub fn parse(url: &str) -> ToolResult<GivenRedis> {
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
    pub fn through(&self, proxy: SocketAddr) -> String {
        format!("redis://{}{proxy}{}", self.credentials, self.tail)
    }

    /// The URL of this Redis reached directly.
    pub fn direct(&self) -> String {
        self.through(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn workers_are_spread_as_asked() {
        let count = |kinds: &[Kind], kind| kinds.iter().filter(|&&k| k == kind).count();
        for (workers, node, keep) in [(6, 2, 1), (6, 0, 1), (4, 2, 2), (3, 0, 3), (5, 4, 1)] {
            let kinds = Kind::spread(workers, node, keep);
            assert_eq!(kinds.len(), workers as usize);
            assert_eq!(count(&kinds, Kind::Node), node as usize, "{kinds:?}");
            assert_eq!(count(&kinds, Kind::Keep), keep as usize, "{kinds:?}");
            assert!(
                kinds.ends_with(&vec![Kind::Keep; keep as usize]),
                "{kinds:?}"
            );
        }
        assert_eq!(
            Kind::spread(6, 2, 1),
            [
                Kind::Rust,
                Kind::Rust,
                Kind::Node,
                Kind::Rust,
                Kind::Node,
                Kind::Keep
            ]
        );
    }
}
