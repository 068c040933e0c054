//! Where `demo` gets its Redis: the one given, or a throwaway one it starts.

pub(super) use dlock_testing::Origin;

use super::{CliResult, EXIT_REDIS, Failure};

/// The Redis at `given`, or a `redis-server` started on a free loopback port by `who`.
pub(super) async fn get(given: Option<&str>, who: &str) -> CliResult<Origin> {
    Origin::obtain(given, dlock_host::redis::redact_url, who)
        .await
        .map_err(|e| Failure::new(EXIT_REDIS, e))
}

/// A failure naming the Redis at `origin` (without password).
pub(super) fn failure(origin: &Origin, e: impl std::fmt::Display) -> Failure {
    Failure::new(
        EXIT_REDIS,
        format!(
            "Redis at {}: {e}",
            dlock_host::redis::redact_url(&origin.url)
        ),
    )
}
