//! Worker processes whose every operation is recorded in a history: what a fault-injection
//! scenario drives, and what the checker then judges.

use std::io::Write;
use std::time::Duration;

use crate::history::{Call, Completion, Outcome as Recorded, PendingOp, Recorder};
use crate::workers::{NoReply, Outcome, Reply, Request, Worker};

/// A worker process plus what it holds, recording each operation it performs.
pub struct Driven {
    /// The worker process.
    pub worker: Worker,
    /// This client's number in the history.
    pub id: u32,
    recorder: Recorder,
    held: Option<(String, String)>,
    fence: Option<u64>,
    read: Option<PendingOp>,
    last_op: Option<crate::history::OpId>,
    /// How long to wait for any reply before recording the outcome as unknown.
    pub patience: Duration,
}

fn recorded(outcome: Outcome) -> Completion {
    match outcome {
        Outcome::Ok => Completion::ok(),
        Outcome::Fail => Completion::fail(),
        Outcome::Unknown => Completion::unknown(),
    }
}

impl Driven {
    /// Drives `worker` as client `id`, recording into `recorder`.
    pub fn new(worker: Worker, id: u32, recorder: &Recorder) -> Driven {
        Driven {
            worker,
            id,
            recorder: recorder.clone(),
            held: None,
            fence: None,
            read: None,
            last_op: None,
            patience: Duration::from_secs(30),
        }
    }

    /// The token and fence of the lock this client holds (as far as the driver knows).
    pub fn held(&self) -> Option<(&str, Option<u64>)> {
        self.held
            .as_ref()
            .map(|(_, token)| (token.as_str(), self.fence))
    }

    /// The op the last recorded call was.
    pub fn last_op(&self) -> Option<crate::history::OpId> {
        self.last_op
    }

    async fn call(&mut self, request: Request, op: PendingOp) -> Option<Reply> {
        self.last_op = Some(op.id());
        match self.worker.call(&request, self.patience).await {
            Ok(reply) => {
                let mut completion = recorded(reply.outcome);
                if reply.outcome == Outcome::Fail {
                    completion = completion.busy(reply.busy);
                }
                if reply.cancelled {
                    completion = completion.cancelled();
                }
                if let Some(error) = &reply.error {
                    completion = completion.error(error.clone());
                }
                if let Some(token) = &reply.token {
                    completion = completion.token(token.clone());
                }
                if let Some(fence) = reply.fence {
                    completion = completion.fence(fence);
                }
                if let Some(valid_until) = reply.valid_until() {
                    completion = completion.valid_until(valid_until);
                }
                op.complete(completion);
                Some(reply)
            }
            Err(NoReply::Timeout) => {
                op.complete(Completion::unknown());
                None
            }
            Err(NoReply::Gone | NoReply::Garbled(_)) => {
                let stderr = self.worker.stderr();
                if !stderr.trim().is_empty() {
                    let _ = writeln!(
                        std::io::stderr(),
                        "worker {} is gone: {}",
                        self.id,
                        stderr.trim()
                    );
                }
                op.abandon();
                self.recorder.crashed(self.id);
                None
            }
        }
    }

    /// Acquires `key` (waiting up to `wait` for a busy lock); `deadline` is the call's bound
    /// for the timeout check.
    pub async fn acquire(
        &mut self,
        key: &str,
        ttl: Duration,
        wait: Duration,
        deadline: Duration,
    ) -> Option<Reply> {
        let options = AcquireOptions {
            wait,
            deadline,
            cancel_after: None,
            judge_wait: false,
        };
        self.acquire_with(key, ttl, options).await
    }

    /// Acquires `key` as `options` say.
    pub async fn acquire_with(
        &mut self,
        key: &str,
        ttl: Duration,
        options: AcquireOptions,
    ) -> Option<Reply> {
        let mut call = Call::acquire(self.id, key, ttl).deadline(options.deadline);
        if options.judge_wait {
            call = call.wait(options.wait);
        }
        let op = self.recorder.invoke(call);
        let request = Request::Acquire {
            key: key.to_owned(),
            ttl_ms: ttl.as_millis() as u64,
            wait_ms: Some(options.wait.as_millis() as u64),
            cancel_after_ms: options.cancel_after.map(|d| d.as_millis() as u64),
        };
        let reply = self.call(request, op).await;
        if let Some(reply) = reply.as_ref().filter(|r| r.outcome == Outcome::Ok) {
            self.held = Some((key.to_owned(), reply.token.clone().unwrap_or_default()));
            self.fence = reply.fence;
        }
        reply
    }

    /// Keeps the held lock alive in the worker, extending it to `ttl` (not recorded: the
    /// history knows the lease the acquire reported).
    pub async fn keep(&mut self, ttl: Duration) -> Option<Reply> {
        let request = Request::Keep {
            ttl_ms: ttl.as_millis() as u64,
        };
        self.worker.call(&request, self.patience).await.ok()
    }

    /// Whether the kept lock is lost: `Some(true)` once it is, `Some(false)` while it is kept,
    /// `None` without an answer. While it is kept, what the holder now believes (the validity
    /// its watchdog keeps renewing) is recorded as a successful extend to that validity, so
    /// that the history's holds follow the watchdog.
    pub async fn lost(&mut self) -> Option<bool> {
        let (key, token) = self.held.clone()?;
        let asked = std::time::Instant::now();
        let reply = self.worker.call(&Request::Lost, self.patience).await.ok()?;
        if reply.outcome == Outcome::Ok {
            return Some(true);
        }
        if let Some(until) = reply.valid_until() {
            let ttl = until.saturating_duration_since(asked);
            let op = self
                .recorder
                .invoke_at(Call::extend(self.id, key, token, ttl), asked);
            op.complete(Completion::ok().valid_until(until));
        }
        Some(false)
    }

    /// Closes the worker's lock client and opens a new one (Node; not recorded).
    pub async fn close(&mut self) -> Option<Reply> {
        self.worker.call(&Request::Close, self.patience).await.ok()
    }

    /// Extends the held lock; `deadline` is the call's bound for the timeout check.
    pub async fn extend(&mut self, ttl: Duration, deadline: Duration) -> Option<Reply> {
        let (key, token) = self.held.clone()?;
        let call = Call::extend(self.id, key, token, ttl).deadline(deadline);
        let op = self.recorder.invoke(call);
        self.call(
            Request::Extend {
                ttl_ms: ttl.as_millis() as u64,
            },
            op,
        )
        .await
    }

    /// Releases the held lock.
    pub async fn release(&mut self) -> Option<Reply> {
        let (key, token) = self.held.take()?;
        let op = self.recorder.invoke(Call::release(self.id, key, token));
        self.call(Request::Release, op).await
    }

    /// Writes `element` to the fenced `resource` with the held lock's fence.
    pub async fn fenced_write(&mut self, resource: &str, element: &str) -> Option<Reply> {
        let (key, _) = self.held.clone()?;
        let fence = self.fence?;
        let op = self
            .recorder
            .invoke(Call::fenced_write(self.id, key, resource, element, fence));
        self.call(
            Request::FencedWrite {
                resource: resource.to_owned(),
                element: element.to_owned(),
            },
            op,
        )
        .await
    }

    /// The first half of a guarded add of `element` to `set`: the read.
    pub async fn guarded_read(&mut self, set: &str, element: &str) -> Option<Reply> {
        let key = self
            .held
            .as_ref()
            .map_or_else(String::new, |(k, _)| k.clone());
        let op = self
            .recorder
            .invoke(Call::guarded_add(self.id, key, set, element));
        match self
            .worker
            .call(
                &Request::GuardedRead {
                    set: set.to_owned(),
                },
                self.patience,
            )
            .await
        {
            Ok(reply) if reply.outcome == Outcome::Ok => {
                self.read = Some(op);
                Some(reply)
            }
            Ok(reply) => {
                op.complete(recorded(reply.outcome));
                Some(reply)
            }
            Err(_) => {
                op.complete(Completion::unknown());
                None
            }
        }
    }

    /// The second half: writes back what was read plus `element`; completes the guarded add.
    /// With `fenced`, the write is refused (a failed add) once a newer holder has written.
    pub async fn guarded_write(&mut self, set: &str, element: &str, fenced: bool) -> Option<Reply> {
        let op = self.read.take()?;
        let request = Request::GuardedWrite {
            set: set.to_owned(),
            element: element.to_owned(),
            fenced,
        };
        self.call(request, op).await
    }

    /// Kills the worker (SIGKILL) and records the crash.
    pub async fn kill(&mut self) {
        self.worker.kill().await;
        self.recorder.crashed(self.id);
        self.held = None;
    }
}

/// How [`Driven::acquire_with`] acquires.
#[derive(Clone, Copy, Debug)]
pub struct AcquireOptions {
    /// How long to wait for a busy lock.
    pub wait: Duration,
    /// The call's bound for the timeout check (T1).
    pub deadline: Duration,
    /// Give the call up this long after it started.
    pub cancel_after: Option<Duration>,
    /// Record the wait so that W1 judges a busy ending (only for keys whose every holder's
    /// lease the history knows: no keep-alive).
    pub judge_wait: bool,
}

/// A recorded outcome, for scenarios that look at one op's result.
pub fn outcome(reply: &Option<Reply>) -> Recorded {
    match reply.as_ref().map(|r| r.outcome) {
        Some(Outcome::Ok) => Recorded::Ok,
        Some(Outcome::Fail) => Recorded::Fail,
        _ => Recorded::Unknown,
    }
}
