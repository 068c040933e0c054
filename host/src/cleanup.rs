//! Work that finishes in the background after its caller is gone: release on failure (when a
//! call into the component traps, overruns its budget or is torn down, the locks that call may
//! have taken, as `redis::Grants` saw them go by, are given back with the bundled
//! compare-and-delete script, on every primary), and cancelled calls winding down.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bundled::BundledScript;
use crate::redis::{Failure, Grant, Grants, Link, RedisCtx, Taken, run};

/// How long a give back waits before it tries again a release Redis did not answer.
const RETRY: Duration = Duration::from_millis(50);

/// Releases the locks the current call noted if dropped while armed: created before a call
/// into the component (which starts the list afresh) and disarmed when the call returns
/// normally.
pub(crate) struct ReleaseOnFailure {
    grants: Arc<Grants>,
    link: Arc<Link>,
    armed: bool,
}

impl ReleaseOnFailure {
    /// Watches a call on `redis`, whose list of grants [`RedisCtx::begin_call`] emptied.
    pub(crate) fn arm(redis: &RedisCtx) -> Self {
        ReleaseOnFailure {
            grants: redis.grants.clone(),
            link: redis.link.clone(),
            armed: true,
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ReleaseOnFailure {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let grants = self.grants.take();
        if grants.is_empty() {
            return;
        }
        let link = self.link.clone();
        // One attempt each: the client is poisoned, nothing waits for these.
        spawn(async move { give_back(&link, grants, Instant::now()).await });
    }
}

/// Gives back `grants` (what a call on `link` noted: the locks it may hold) with the bundled
/// compare-and-delete script on every primary, trying each again while a primary does not
/// answer, until `until` (when any lease of that call has run out).
pub(crate) async fn give_back(link: &Link, grants: Vec<Grant>, until: Instant) {
    let timeout = link.policy.command_timeout;
    for (key, token, taken) in grants {
        let (script, args) = match taken {
            Taken::Lock => (BundledScript::Release, vec![token]),
            Taken::Permits(count) => (
                BundledScript::SemaphoreRelease,
                vec![token, count.to_string()],
            ),
        };
        let Some(release) = link.bundled_script(script) else {
            continue;
        };
        let keys = [key];
        loop {
            let replies = futures_util::future::join_all(
                link.nodes()
                    .iter()
                    .map(|node| run(node, &release, &keys, &args, timeout)),
            )
            .await;
            let unanswered = replies
                .iter()
                .any(|r| matches!(r, Err(Failure::Timeout | Failure::Unavailable(_))));
            if !unanswered || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Runs `task` to its end in the background: on the current tokio runtime, or, when there is
/// none (a future dropped outside the runtime's context), on a thread of its own with a
/// runtime of its own. Its Redis calls still go through the connections of the runtime that
/// made them, so they fail if that runtime is gone; and a runtime that is shutting down runs
/// nothing more: what `task` would have given back then expires with its TTL.
pub(crate) fn spawn<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
        return;
    }
    let _ = std::thread::Builder::new()
        .name("dlock-background".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(task);
            }
        });
}
