//! The host side of `wait-for-release`: a pause between two acquire attempts that ends as soon
//! as a release of the lock is signalled, or when the caller cancels.
//!
//! dlock's release script pushes one signal on the lock's signal list (`contract::Companion`)
//! when waiters have marked the key. A listening wait blocks on that list with `BLPOP` on a
//! connection of its own (never the shared multiplexed one), for at most the time the
//! component asked, which the host cuts at the call's deadline. Redis serves blocked clients
//! first come, first served, so a signal wakes one waiter at most. Over a quorum a wait blocks
//! at every primary at once (a connection at each) and the first signal ends it: a release
//! signals every primary it reaches, and a woken attempt that reached some primary before the
//! release did has marked itself there again, so that primary's signal wakes it once more. The
//! `BLPOP`s at the other primaries are left to end by themselves (a connection closed under a
//! blocked `BLPOP` may still take a signal in Redis, which would then be lost): a signal one
//! of them takes later is passed on, to the waiter's next wait among others.
//!
//! The `BLPOP` runs in a task of its own: when the wait's timer ends first, the task still
//! collects the reply (due at the same time), hands a signal it took to nobody back to the
//! next waiter (*passes it on*), and returns the connection; when the wait is cancelled or
//! torn down, the task closes the connection at once (Redis then unblocks it) and frees its
//! permit. A wait that cannot block
//! (no connection free under the policy's bound, none can be opened) pauses instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use tokio::sync::oneshot;
use tracing::Instrument;

use crate::cancel::Cancel;
use crate::contract::{Companion, check_lock_key, companion_key};
use crate::observe::{self, Denial, WokenBy};
use crate::redis::RedisView;
use crate::redis::link::Link;
use crate::redis::node::Node;
use crate::redis::wit::WitRedisError;
use crate::redis::wit::dlock::lock::redis::Wake;

/// The longest one wait may last in a call without a deadline of its own (a store whose
/// embedder calls [`RedisCtx::begin_call`](crate::redis::RedisCtx::begin_call)); calls of a
/// [`crate::Client`] end at their deadline.
pub const MAX_UNSCOPED_WAIT: Duration = Duration::from_secs(10);

/// Pushes a signal back for the next waiter (KEYS[1], the signal list), if waiters are still
/// marked (KEYS[2]), living as long as their mark. The host's own script: run by EVAL (it is
/// rare), never offered to a component.
const PASS_ON: &str = "local left = redis.call('PTTL', KEYS[2])
if left > 0 then
  redis.call('LPUSH', KEYS[1], '1')
  redis.call('PEXPIRE', KEYS[1], left)
  return 1
end
return 0";

fn denied(why: Denial, reason: String) -> Result<Wake, WitRedisError> {
    observe::denied(why);
    Err(WitRedisError::Denied(reason))
}

/// `wait-for-release(key, timeout-ms, listen)` for the store behind `view`.
pub(in crate::redis) async fn wait_for_release(
    view: &mut RedisView<'_>,
    key: String,
    timeout_ms: u64,
    listen: bool,
) -> Result<Wake, WitRedisError> {
    let ctx = &mut *view.ctx;
    let link = ctx.link.clone();
    let policy = &link.policy;
    let now = Instant::now();
    if !ctx.admit_eval(now, 1) {
        let reason = format!(
            "more than {} Redis calls in one second",
            policy.max_evals_per_second
        );
        return denied(Denial::Rate, reason);
    }
    if let Err(reason) = policy
        .check_request(std::slice::from_ref(&key), &[])
        .and_then(|()| check_lock_key(&key))
    {
        return denied(Denial::Policy, reason);
    }
    if !ctx.bytes.take(now, key.len() as u64) {
        let reason = format!(
            "more than {} bytes sent to Redis in one second",
            policy.max_bytes_per_second
        );
        return denied(Denial::Rate, reason);
    }
    ctx.calls += 1;
    let bound = ctx.deadline.unwrap_or(now + MAX_UNSCOPED_WAIT);
    let until = now
        .checked_add(Duration::from_millis(timeout_ms))
        .map_or(bound, |wanted| wanted.min(bound));
    let cancel = ctx.cancel.clone();
    if !listen {
        return Ok(pause(until, &cancel).await);
    }
    let (Ok(signal), Ok(waiters)) = (
        companion_key(&key, Companion::Signal),
        companion_key(&key, Companion::Waiters),
    ) else {
        return denied(
            Denial::Policy,
            format!("the key {key:?} has no signal list (a '}}' without a hash tag)"),
        );
    };
    let outlived = AtomicBool::new(false);
    let listening = link.nodes().iter().map(|node| {
        let (link, signal, waiters, cancel) = (&link, &signal, &waiters, &cancel);
        let outlived = &outlived;
        async move {
            // A failed BLPOP is tried once more: behind Sentinel or in a Cluster the primary
            // may have moved (the old one answers MOVED or is gone), and the retry goes where
            // it is now.
            let listened = listen_for(link, node, signal, waiters, until, cancel, outlived).await;
            if listened != Listened::Failed {
                return listened;
            }
            listen_for(link, node, signal, waiters, until, cancel, outlived).await
        }
    });
    match first_wake(listening.collect(), &outlived).await {
        Listened::Woke(wake) => {
            observe::woken(match wake {
                Wake::Released => WokenBy::Signal,
                Wake::Cancelled => WokenBy::Cancel,
                _ => WokenBy::Timeout,
            });
            Ok(wake)
        }
        Listened::Failed => Ok(pause(until, &cancel).await),
        Listened::Unavailable => {
            observe::fallback();
            Ok(pause(until, &cancel).await)
        }
    }
}

/// How listening on a signal list ended.
#[derive(Debug, PartialEq)]
enum Listened {
    Woke(Wake),
    /// The `BLPOP` failed: the connection broke, or the server answered an error (MOVED).
    Failed,
    /// No connection could be had.
    Unavailable,
}

/// How the waits at every primary ended together: released or cancelled as soon as one of them
/// is; else timed out when one blocked until its end; else failed unless none could block at
/// all. The waits still running when one is released are dropped with `outlived` set (their
/// `BLPOP`s end by themselves); when one is cancelled, without (their connections close).
async fn first_wake(
    mut listening: FuturesUnordered<impl Future<Output = Listened>>,
    outlived: &AtomicBool,
) -> Listened {
    let (mut timed_out, mut failed) = (false, false);
    while let Some(listened) = listening.next().await {
        match listened {
            Listened::Woke(Wake::TimedOut) => timed_out = true,
            Listened::Woke(Wake::Released) => {
                outlived.store(true, Ordering::Relaxed);
                return Listened::Woke(Wake::Released);
            }
            Listened::Woke(wake) => return Listened::Woke(wake),
            Listened::Failed => failed = true,
            Listened::Unavailable => {}
        }
    }
    if timed_out {
        Listened::Woke(Wake::TimedOut)
    } else if failed {
        Listened::Failed
    } else {
        Listened::Unavailable
    }
}

/// A plain pause until `until`, or until the call is cancelled.
async fn pause(until: Instant, cancel: &Cancel) -> Wake {
    let wake = tokio::select! {
        () = tokio::time::sleep_until(until.into()) => Wake::TimedOut,
        () = cancel.cancelled() => Wake::Cancelled,
    };
    observe::woken(if wake == Wake::Cancelled {
        WokenBy::Cancel
    } else {
        WokenBy::Timeout
    });
    wake
}

/// The wait's end of a `BLPOP` task's abandon channel: `true` tells the task to close its
/// connection at once, `false` to collect the reply (due by the `BLPOP`'s own timeout) and
/// pass on a signal it took. Dropped untold, it tells `false` when `outlived` is set (another
/// primary's signal ended the wait), else nothing, which closes the connection (the wait was
/// torn down).
struct Abandon<'a> {
    tx: Option<oneshot::Sender<bool>>,
    outlived: &'a AtomicBool,
}

impl Abandon<'_> {
    fn tell(&mut self, close: bool) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(close);
        }
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.outlived.load(Ordering::Relaxed) {
            self.tell(false);
        }
    }
}

/// Blocks on `signal` at `node` until `until`.
async fn listen_for(
    link: &Arc<Link>,
    node: &Arc<Node>,
    signal: &str,
    waiters: &str,
    until: Instant,
    cancel: &Cancel,
    outlived: &AtomicBool,
) -> Listened {
    let Some(permit) = link.blocking_permit() else {
        return Listened::Unavailable;
    };
    let Ok(Some(pool)) =
        tokio::time::timeout_at(until.into(), link.blocking_pool(node, signal)).await
    else {
        return Listened::Unavailable;
    };
    let Ok(Ok(mut taken)) = tokio::time::timeout_at(until.into(), pool.take()).await else {
        return Listened::Unavailable;
    };
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        pool.give_back(taken, link.policy.max_blocking_connections);
        return Listened::Woke(Wake::TimedOut);
    }
    // Redis reads the timeout in seconds, with millisecond precision (0 would block forever).
    let seconds = format!("{:.3}", left.as_secs_f64().max(0.001));
    // A connection that has not answered this long after Redis's own timeout is dead.
    let guard = left + link.policy.command_timeout;
    let (tx, mut rx) = oneshot::channel::<bool>();
    // What the wait tells the BLPOP task when it ends first (see `Abandon`).
    let (abandon, mut abandoned) = oneshot::channel::<bool>();
    let mut abandon = Abandon {
        tx: Some(abandon),
        outlived,
    };
    let task_link = link.clone();
    let task_node = node.clone();
    let (task_signal, task_waiters) = (signal.to_owned(), waiters.to_owned());
    let span = observe::redis_span("BLPOP", "signal", node.server());
    tokio::spawn(
        async move {
            let permit = permit;
            let started = Instant::now();
            let mut cmd = redis::cmd("BLPOP");
            cmd.arg(&task_signal).arg(&seconds);
            let reply = {
                let blpop = tokio::time::timeout(
                    guard,
                    cmd.query_async::<Option<(String, String)>>(&mut taken.conn),
                );
                tokio::pin!(blpop);
                tokio::select! {
                    biased;
                    reply = &mut blpop => reply,
                    told = &mut abandoned => match told {
                        Ok(false) => blpop.await,
                        // The connection is closed with the task, which unblocks it in Redis,
                        // and the permit is free at once. A signal popped in that very instant
                        // is lost; its waiters find the lock free at their next attempt.
                        _ => {
                            drop(permit);
                            return;
                        }
                    },
                }
            };
            observe::redis_call("BLPOP", None, started.elapsed());
            let popped = match reply {
                Ok(Ok(popped)) => popped.is_some(),
                Ok(Err(e)) => {
                    tracing::Span::current().record("error.type", "unavailable");
                    tracing::debug!("waiting for a release signal failed: {e}");
                    task_node.blocking_failed(&task_signal, &e);
                    return;
                }
                Err(_elapsed) => {
                    tracing::Span::current().record("error.type", "timeout");
                    return;
                }
            };
            if tx.send(popped).is_err() && popped {
                pass_on(&task_link, &task_node, &task_signal, &task_waiters).await;
            }
            pool.give_back(taken, task_link.policy.max_blocking_connections);
        }
        .instrument(span),
    );
    let wake = tokio::select! {
        received = &mut rx => match received {
            Ok(true) => Wake::Released,
            Ok(false) => Wake::TimedOut,
            Err(_) => return Listened::Failed,
        },
        () = tokio::time::sleep_until(until.into()) => {
            abandon.tell(false);
            rx.close();
            if let Ok(true) = rx.try_recv() { Wake::Released } else { Wake::TimedOut }
        }
        () = cancel.cancelled() => {
            abandon.tell(true);
            rx.close();
            if let Ok(true) = rx.try_recv() {
                let (link, node) = (link.clone(), node.clone());
                let (signal, waiters) = (signal.to_owned(), waiters.to_owned());
                tokio::spawn(async move { pass_on(&link, &node, &signal, &waiters).await });
            }
            Wake::Cancelled
        }
    };
    Listened::Woke(wake)
}

/// Hands a signal a waiter took at `node` but will not use to the next waiter there.
async fn pass_on(link: &Link, node: &Node, signal: &str, waiters: &str) {
    let (_, mut conn) = node.current();
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(PASS_ON).arg(2).arg(signal).arg(waiters);
    let call = cmd.query_async::<i64>(&mut conn);
    if let Ok(Ok(1)) = tokio::time::timeout(link.policy.command_timeout, call).await {
        observe::passed_on();
    }
}
