//! Lock clients as separate processes (the `worker` binary), so a test can pause (SIGSTOP),
//! resume or kill a client while it holds a lock, exactly as a real process would be.
//!
//! Each worker is a real host with the real component, driven over its stdin/stdout by the
//! worker protocol (`crate::protocol`).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::protocol::Envelope;
pub use crate::protocol::{Outcome, Reply, Request};

/// Why a call got no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoReply {
    /// No reply within the timeout (the worker may be paused; its reply may still come, and
    /// will be skipped by the lane's next call).
    Timeout,
    /// The worker's stdout closed: it exited or was killed.
    Gone,
    /// The worker answered something that is not a reply.
    Garbled(String),
}

/// Where each lane's replies go.
type Lanes = Arc<Mutex<HashMap<u32, mpsc::UnboundedSender<Result<Reply, NoReply>>>>>;

/// A running `dlock worker` process, shared by its lanes.
struct Process {
    child: tokio::sync::Mutex<Child>,
    pid: u32,
    stderr: tempfile::NamedTempFile,
    stdin: tokio::sync::Mutex<ChildStdin>,
    /// Where each lane's replies go; emptied when the worker's stdout closes.
    lanes: Lanes,
}

/// One lane of a running `dlock worker` (see [`crate::protocol`]): lane 0 from
/// [`Worker::spawn`], others from [`Worker::lane`]. Lanes of one process run their calls
/// concurrently; killing or signalling a lane's worker acts on the whole process.
pub struct Worker {
    process: Arc<Process>,
    lane: u32,
    replies: mpsc::UnboundedReceiver<Result<Reply, NoReply>>,
    /// Replies still owed by calls that timed out; skipped before the next reply is read.
    owed: usize,
}

impl Worker {
    /// Starts the worker binary at `program` with its locks in the Redis at `redis_url` and
    /// its fenced resource and guarded sets in the one at `resource_url`, and waits until it
    /// is connected and answering.
    pub async fn spawn(
        program: &Path,
        redis_url: &str,
        resource_url: &str,
    ) -> std::io::Result<Worker> {
        Self::spawn_with(program, &[("DLOCK_REDIS_URL", redis_url)], resource_url).await
    }

    /// Like [`Worker::spawn`], with its locks in the Redis Cluster that `seeds` belong to.
    pub async fn spawn_cluster(
        program: &Path,
        seeds: &[String],
        resource_url: &str,
    ) -> std::io::Result<Worker> {
        let env = [
            ("DLOCK_REDIS_URL", seeds.join(",").as_str()),
            ("DLOCK_REDIS_CLUSTER", "1"),
        ]
        .map(|(k, v)| (k, v.to_owned()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Self::spawn_with(program, &env, resource_url).await
    }

    /// Starts the worker binary at `program` with `env` (at least `DLOCK_REDIS_URL`), its
    /// fenced resource and guarded sets in the Redis at `resource_url`; lane 0 of it.
    pub async fn spawn_with(
        program: &Path,
        env: &[(&str, &str)],
        resource_url: &str,
    ) -> std::io::Result<Worker> {
        let stderr = tempfile::NamedTempFile::new()?;
        let mut child = Command::new(program)
            .args(["--resource", resource_url])
            // In the environment rather than on the command line, where `ps` would show a
            // password.
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen()?)
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let lanes = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(route(stdout, lanes.clone()));
        let process = Arc::new(Process {
            pid: child.id().unwrap_or(0),
            child: tokio::sync::Mutex::new(child),
            stderr,
            stdin: tokio::sync::Mutex::new(stdin),
            lanes,
        });
        let mut worker = Worker::on_lane(process, 0);
        match worker.call(&Request::Ping, Duration::from_secs(30)).await {
            Ok(_) => Ok(worker),
            Err(e) => Err(std::io::Error::other(format!(
                "the worker did not start ({e:?}): {}",
                worker.stderr()
            ))),
        }
    }

    fn on_lane(process: Arc<Process>, lane: u32) -> Worker {
        let (tx, replies) = mpsc::unbounded_channel();
        process
            .lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(lane, tx);
        Worker {
            process,
            lane,
            replies,
            owed: 0,
        }
    }

    /// Lane `lane` of this worker's process: another lock client in it.
    pub fn lane(&self, lane: u32) -> Worker {
        Worker::on_lane(self.process.clone(), lane)
    }

    /// What the worker wrote to stderr so far (its errors, if it died).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.process.stderr.path()).unwrap_or_default()
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Sends `signal` to the worker (STOP pauses it, CONT resumes it, KILL kills it).
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.pid() as i32) {
            let _ = kill_process(pid, signal);
        }
    }

    /// Sends one request on this lane and waits up to `timeout` for its reply.
    pub async fn call(&mut self, request: &Request, timeout: Duration) -> Result<Reply, NoReply> {
        let envelope = Envelope {
            lane: self.lane,
            request: request.clone(),
        };
        let mut line = serde_json::to_string(&envelope).expect("requests serialize");
        line.push('\n');
        {
            let mut stdin = self.process.stdin.lock().await;
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                return Err(NoReply::Gone);
            }
        }
        let read = async {
            loop {
                let Some(reply) = self.replies.recv().await else {
                    return Err(NoReply::Gone);
                };
                if self.owed > 0 && reply.is_ok() {
                    self.owed -= 1;
                    continue;
                }
                return reply;
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(reply) => reply,
            Err(_) => {
                self.owed += 1;
                Err(NoReply::Timeout)
            }
        }
    }

    /// Kills the worker's process (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.process.child.lock().await.kill().await;
    }
}

/// Reads the worker's replies and hands each to its lane; a line that is no reply goes to
/// every lane as garbled. When stdout closes, every lane's calls end as gone.
async fn route(mut stdout: Lines<BufReader<ChildStdout>>, lanes: Lanes) {
    while let Ok(Some(line)) = stdout.next_line().await {
        let lanes = lanes.lock().unwrap_or_else(|e| e.into_inner());
        match serde_json::from_str::<Reply>(&line) {
            Ok(reply) => {
                if let Some(tx) = lanes.get(&reply.lane) {
                    let _ = tx.send(Ok(reply));
                }
            }
            Err(e) => {
                for tx in lanes.values() {
                    let _ = tx.send(Err(NoReply::Garbled(format!("{e}: {line}"))));
                }
            }
        }
    }
    lanes.lock().unwrap_or_else(|e| e.into_inner()).clear();
}
