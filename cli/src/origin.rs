//! Where `demo` and `bench` get their Redis: the one given, or a throwaway one they start.

use dlock_testing::RedisServer;

use super::{CliResult, EXIT_REDIS, Failure};

/// A Redis URL and how it came about; a started server lives (and is killed) with this value.
pub(super) struct Origin {
    pub url: String,
    pub description: String,
    _server: Option<RedisServer>,
}

impl Origin {
    /// The Redis at `given`, or a `redis-server` started on a free loopback port by `who`.
    pub(super) async fn get(given: Option<&str>, who: &str) -> CliResult<Origin> {
        if let Some(url) = given {
            return Ok(Origin {
                url: url.to_owned(),
                description: format!("given: {}", dlock_host::redis::redact_url(url)),
                _server: None,
            });
        }
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .map_err(|e| Failure::new(EXIT_REDIS, format!("starting redis-server: {e}")))?
            .map_err(|e| Failure::new(EXIT_REDIS, format!("cannot start redis-server: {e}")))?;
        Ok(Origin {
            url: server.url(),
            description: format!(
                "started by {who}: redis-server on 127.0.0.1:{} (pid {}), stopped at exit",
                server.port(),
                server.pid().unwrap_or(0)
            ),
            _server: Some(server),
        })
    }

    /// A failure naming this Redis (without password).
    pub(super) fn fail(&self, e: impl std::fmt::Display) -> Failure {
        Failure::new(
            EXIT_REDIS,
            format!("Redis at {}: {e}", dlock_host::redis::redact_url(&self.url)),
        )
    }
}
