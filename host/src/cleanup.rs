//! Release on failure: when a call into the component traps, overruns its budget or is
//! cancelled, the locks that call may have taken (as `redis::Grants` saw them go by) are given
//! back in the background with the bundled compare-and-delete script, on every primary.

use std::sync::Arc;

use crate::redis::{Grants, Link, RedisCtx, run};

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
        let Some(release) = self.link.release_script() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if grants.is_empty() {
            return;
        }
        let link = self.link.clone();
        runtime.spawn(async move {
            let timeout = link.policy.command_timeout;
            for (key, token) in grants {
                let (keys, args) = ([key], [token]);
                futures_util::future::join_all(
                    link.nodes()
                        .iter()
                        .map(|node| run(node, &release, &keys, &args, timeout)),
                )
                .await;
            }
        });
    }
}
