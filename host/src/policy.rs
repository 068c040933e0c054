//! What the host lets a component run on Redis.

use std::collections::HashSet;
use std::time::Duration;

/// The host's rules for a component's Redis calls.
///
/// The defaults allow exactly the scripts of the bundled component, identified by SHA1, and
/// bound every call in time and size.
#[derive(Clone, Debug)]
pub struct Policy {
    allowed_sha1: HashSet<String>,
    extra_sources: Vec<String>,
    pub(crate) command_timeout: Duration,
    pub(crate) max_keys: usize,
    pub(crate) max_request_bytes: usize,
    pub(crate) max_reply_bytes: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_sha1: crate::bundled::SCRIPTS
                .iter()
                .map(|s| s.sha1.to_owned())
                .collect(),
            extra_sources: Vec::new(),
            command_timeout: Duration::from_secs(2),
            max_keys: 8,
            max_request_bytes: 64 * 1024,
            max_reply_bytes: 64 * 1024,
        }
    }
}

impl Policy {
    /// Also allows the script with this Lua source (for components with scripts of their own).
    pub fn allow_script(mut self, source: impl Into<String>) -> Self {
        let source = source.into();
        self.allowed_sha1.insert(sha1_hex(&source));
        self.extra_sources.push(source);
        self
    }

    /// Allows no script at all, not even the bundled component's; add some with
    /// [`Policy::allow_script`].
    pub fn deny_all_scripts(mut self) -> Self {
        self.allowed_sha1.clear();
        self.extra_sources.clear();
        self
    }

    /// Each `redis-eval` (including a reload after `NOSCRIPT`) must complete within this, or
    /// the component gets `timeout`; the Redis connection's response timeout is the same.
    /// Default 2 s.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Most keys one call may pass. Default 8.
    pub fn with_max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// Most bytes in all of one call's keys and arguments together. Default 64 KiB.
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Most bytes a reply may carry (bulk strings and status text added up, 8 bytes per array
    /// element). Default 64 KiB.
    pub fn with_max_reply_bytes(mut self, bytes: usize) -> Self {
        self.max_reply_bytes = bytes;
        self
    }

    /// See [`Policy::with_command_timeout`].
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// See [`Policy::with_max_keys`].
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// See [`Policy::with_max_request_bytes`].
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// See [`Policy::with_max_reply_bytes`].
    pub fn max_reply_bytes(&self) -> usize {
        self.max_reply_bytes
    }

    /// Whether a script with this SHA1 (lowercase hex) may run.
    pub fn allows(&self, sha1: &str) -> bool {
        self.allowed_sha1.contains(sha1)
    }

    /// The sources known up front (bundled and added), for the host's source cache.
    pub(crate) fn known_sources(&self) -> impl Iterator<Item = &str> {
        crate::bundled::SCRIPTS
            .iter()
            .map(|s| s.source)
            .chain(self.extra_sources.iter().map(String::as_str))
            .filter(|source| self.allows(&sha1_hex(source)))
    }
}

/// SHA1 of a script's source in lowercase hex, as Redis names scripts.
pub fn sha1_hex(source: &str) -> String {
    sha1_smol::Sha1::from(source).digest().to_string()
}
