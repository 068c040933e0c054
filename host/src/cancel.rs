//! The cancellation of one call into the component: how a caller that gives a wait up tells
//! the component, so that the call winds down (its pause ends, the component returns
//! `cancelled`) instead of being torn down with its store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Whether the call in progress has been cancelled, and a way to wait for it. Cheap to clone;
/// [`Cancel::NEVER`] (the default) is never cancelled and allocates nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cancel(Option<Arc<Flag>>);

#[derive(Debug, Default)]
struct Flag {
    set: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// A call nobody can cancel.
    pub(crate) const NEVER: Cancel = Cancel(None);

    /// A call that [`Cancel::cancel`] can cancel.
    pub(crate) fn new() -> Self {
        Cancel(Some(Arc::default()))
    }

    /// Cancels the call: [`Cancel::cancelled`] completes, now and from now on.
    pub(crate) fn cancel(&self) {
        if let Some(flag) = &self.0 {
            flag.set.store(true, Ordering::Release);
            flag.notify.notify_waiters();
        }
    }

    /// Whether the call has been cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|flag| flag.set.load(Ordering::Acquire))
    }

    /// Completes once the call is cancelled (never for [`Cancel::NEVER`]).
    pub(crate) async fn cancelled(&self) {
        let Some(flag) = &self.0 else {
            return std::future::pending().await;
        };
        loop {
            // Created before the check: `notify_waiters` reaches it even before it is polled.
            let notified = flag.notify.notified();
            if flag.set.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cancel;

    #[tokio::test]
    async fn a_cancel_reaches_waiters_before_and_after_it() {
        let cancel = Cancel::new();
        let waiter = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!cancel.is_cancelled());
        cancel.cancel();
        waiter.await.unwrap();
        cancel.cancelled().await;
        assert!(cancel.is_cancelled());
        assert!(!Cancel::NEVER.is_cancelled());
    }
}
