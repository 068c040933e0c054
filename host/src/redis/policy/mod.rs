//! What the host lets a component run on Redis.

pub(crate) mod limits;

use std::collections::HashSet;
use std::time::Duration;

use crate::bundled::BundledScript;
use crate::contract::policy as defaults;
use limits::RequestLimits;

/// The host's rules for a component's Redis calls.
///
/// The defaults ([`contract::policy`](crate::contract::policy)) allow exactly the scripts of the
/// bundled component, identified by SHA1, on any key that is not empty, not over
/// [`DEFAULT_MAX_KEY_BYTES`](defaults::DEFAULT_MAX_KEY_BYTES) and free of control characters,
/// and bound every call in time and size. A call the policy refuses gets `denied` and never
/// reaches Redis.
#[derive(Clone, Debug)]
pub struct Policy {
    allowed_sha1: HashSet<String>,
    extra_sources: Vec<String>,
    pub(crate) command_timeout: Duration,
    pub(crate) limits: RequestLimits,
    pub(crate) max_reply_bytes: usize,
    pub(crate) max_evals_per_second: u32,
    pub(crate) max_bytes_per_second: u64,
    pub(crate) max_compute: Duration,
    pub(crate) max_blocking_connections: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_sha1: BundledScript::ALL
                .iter()
                .map(|s| s.sha1().to_owned())
                .collect(),
            extra_sources: Vec::new(),
            command_timeout: Duration::from_millis(defaults::DEFAULT_COMMAND_TIMEOUT_MS),
            limits: RequestLimits {
                max_keys: defaults::DEFAULT_MAX_KEYS,
                max_key_bytes: defaults::DEFAULT_MAX_KEY_BYTES,
                key_namespace: defaults::DEFAULT_KEY_NAMESPACE.to_owned(),
                max_request_bytes: defaults::DEFAULT_MAX_REQUEST_BYTES,
                foreign_tokens: defaults::DEFAULT_ALLOW_FOREIGN_TOKENS,
            },
            max_reply_bytes: defaults::DEFAULT_MAX_REPLY_BYTES,
            max_evals_per_second: defaults::DEFAULT_MAX_EVALS_PER_SECOND,
            max_bytes_per_second: defaults::DEFAULT_MAX_BYTES_PER_SECOND,
            max_compute: Duration::from_millis(defaults::DEFAULT_MAX_COMPUTE_MS),
            max_blocking_connections: defaults::DEFAULT_MAX_BLOCKING_CONNECTIONS,
        }
    }
}

impl Policy {
    /// Also allows the script with this Lua source (for components with scripts of their own);
    /// [`Policy::allows`] tells whether a script (by its SHA1) is allowed.
    pub fn with_script(mut self, source: impl Into<String>) -> Self {
        let source = source.into();
        self.allowed_sha1.insert(sha1_hex(&source));
        self.extra_sources.push(source);
        self
    }

    /// Allows no script at all, not even the bundled component's; add some with
    /// [`Policy::with_script`].
    pub fn without_scripts(mut self) -> Self {
        self.allowed_sha1.clear();
        self.extra_sources.clear();
        self
    }

    /// Each `redis-eval` (including a reload after `NOSCRIPT`) must complete within this, or
    /// the component gets `timeout`; the Redis connection's response timeout is the same.
    /// Default [`DEFAULT_COMMAND_TIMEOUT_MS`](defaults::DEFAULT_COMMAND_TIMEOUT_MS).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Most keys one call may pass. Default [`DEFAULT_MAX_KEYS`](defaults::DEFAULT_MAX_KEYS).
    pub fn with_max_keys(mut self, keys: usize) -> Self {
        self.limits.max_keys = keys;
        self
    }

    /// Most bytes in all of one call's keys and arguments together. Default
    /// [`DEFAULT_MAX_REQUEST_BYTES`](defaults::DEFAULT_MAX_REQUEST_BYTES): over what the
    /// bundled scripts can need ([`max_request_bytes`](crate::contract::max_request_bytes)).
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_request_bytes = bytes;
        self
    }

    /// Most bytes a reply may carry (bulk strings and status text added up, 8 bytes per array
    /// element). Default [`DEFAULT_MAX_REPLY_BYTES`](defaults::DEFAULT_MAX_REPLY_BYTES).
    pub fn with_max_reply_bytes(mut self, bytes: usize) -> Self {
        self.max_reply_bytes = bytes;
        self
    }

    /// Every key must start with `namespace`, or be a companion of a key that does: its fence
    /// counter, signal list or waiters' mark, `{KEY}:fence`, `{KEY}:signal`, `{KEY}:waiters`
    /// for a key without a hash tag (a key with one has companions `KEY::fence`, ... that
    /// start with it; see [`contract::companion_key`](crate::contract::companion_key)).
    /// Default empty: any key. Use the same
    /// prefix as the clients' `LockOptions::key_prefix`, and give it a hash tag where Redis
    /// Cluster slots matter.
    pub fn with_key_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.limits.key_namespace = namespace.into();
        self
    }

    /// Longest key, in bytes. Default
    /// [`DEFAULT_MAX_KEY_BYTES`](defaults::DEFAULT_MAX_KEY_BYTES).
    pub fn with_max_key_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_key_bytes = bytes;
        self
    }

    /// How many `redis-eval` calls the component may make during one call into it (one
    /// `acquire`, one `wait_for_lock`, ...): a token bucket that starts full with this many
    /// calls at every call into the component and refills at this many per second; a call
    /// past it is `denied`. Default
    /// [`DEFAULT_MAX_EVALS_PER_SECOND`](defaults::DEFAULT_MAX_EVALS_PER_SECOND): far above what the bundled component needs (one per
    /// attempt, at most a few per second once backing off), far below a runaway loop. A rate,
    /// so that a wait of hours still works.
    pub fn with_max_evals_per_second(mut self, evals: u32) -> Self {
        self.max_evals_per_second = evals;
        self
    }

    /// How many bytes of keys and arguments one client may send to Redis: a token bucket of
    /// this many bytes, refilled at this many per second over the client's whole life (across
    /// calls); a call past it is `denied` and reaches Redis only once the bucket has refilled.
    /// It bounds how fast a component can fill Redis with data, whatever it is asked to do.
    /// Default [`DEFAULT_MAX_BYTES_PER_SECOND`](defaults::DEFAULT_MAX_BYTES_PER_SECOND) (4 MiB
    /// per second: about 40,000 lock operations per second with 100-byte keys).
    pub fn with_max_bytes_per_second(mut self, bytes: u64) -> Self {
        self.max_bytes_per_second = bytes;
        self
    }

    /// Lets the bundled `release` and `extend` scripts name tokens of other clients of the
    /// lock convention (redis-py's `Lock`, redsync, node-redlock): any 1 to
    /// [`MAX_FOREIGN_TOKEN_BYTES`](defaults::MAX_FOREIGN_TOKEN_BYTES) bytes without control
    /// characters. Off by default: only dlock's own tokens (UUID v4) are accepted,
    /// which keeps a component from using those scripts to test or delete keys whose values
    /// it guesses. Turn it on to release or extend, through `attach`, locks that other
    /// clients took; the `dlock` CLI does.
    pub fn with_foreign_tokens(mut self, allowed: bool) -> Self {
        self.limits.foreign_tokens = allowed;
        self
    }

    /// See [`Policy::with_foreign_tokens`].
    pub fn foreign_tokens(&self) -> bool {
        self.limits.foreign_tokens
    }

    /// See [`Policy::with_key_namespace`].
    pub fn key_namespace(&self) -> &str {
        &self.limits.key_namespace
    }

    /// See [`Policy::with_max_key_bytes`].
    pub fn max_key_bytes(&self) -> usize {
        self.limits.max_key_bytes
    }

    /// Longest the component may compute without calling Redis or sleeping; past it the call
    /// traps and the client is poisoned. Measured in 10 ms epoch ticks. Default
    /// [`DEFAULT_MAX_COMPUTE_MS`](defaults::DEFAULT_MAX_COMPUTE_MS).
    pub fn with_max_compute(mut self, limit: Duration) -> Self {
        self.max_compute = limit;
        self
    }

    /// Most connections of their own the host holds at once for the component's waits on
    /// release signals (`wait-for-release`: a blocking command holds its connection, so it
    /// never runs on the shared one), across every client of the runtime with this policy:
    /// the bound is per policy, so a `Runtime` and each `Runtime::under_policy` of it (each
    /// plugin) have their own. Over a quorum a wait holds one at each primary it blocks at. A
    /// wait that finds none free polls instead (a plain pause, counted as a fallback). A
    /// cancelled wait closes its connection at once. Default
    /// [`DEFAULT_MAX_BLOCKING_CONNECTIONS`](defaults::DEFAULT_MAX_BLOCKING_CONNECTIONS); 0
    /// turns wake-up on release off.
    pub fn with_max_blocking_connections(mut self, connections: usize) -> Self {
        self.max_blocking_connections = connections;
        self
    }

    /// See [`Policy::with_max_blocking_connections`].
    pub fn max_blocking_connections(&self) -> usize {
        self.max_blocking_connections
    }

    /// Whether a `redis-eval` with these keys and arguments is within the policy (script
    /// aside); the reason when it is not.
    pub fn check_request(&self, keys: &[String], args: &[String]) -> Result<(), String> {
        self.limits.check(keys, args)
    }

    /// See [`Policy::with_max_compute`].
    pub fn max_compute(&self) -> Duration {
        self.max_compute
    }

    /// See [`Policy::with_command_timeout`].
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// See [`Policy::with_max_keys`].
    pub fn max_keys(&self) -> usize {
        self.limits.max_keys
    }

    /// See [`Policy::with_max_request_bytes`].
    pub fn max_request_bytes(&self) -> usize {
        self.limits.max_request_bytes
    }

    /// See [`Policy::with_max_reply_bytes`].
    pub fn max_reply_bytes(&self) -> usize {
        self.max_reply_bytes
    }

    /// See [`Policy::with_max_evals_per_second`].
    pub fn max_evals_per_second(&self) -> u32 {
        self.max_evals_per_second
    }

    /// See [`Policy::with_max_bytes_per_second`].
    pub fn max_bytes_per_second(&self) -> u64 {
        self.max_bytes_per_second
    }

    /// Whether a script with this SHA1 (lowercase hex) may run.
    pub fn allows(&self, sha1: &str) -> bool {
        self.allowed_sha1.contains(sha1)
    }

    /// The sources known up front (bundled and added), for the host's source cache.
    #[cfg(feature = "runtime")]
    pub(crate) fn known_sources(&self) -> impl Iterator<Item = &str> {
        BundledScript::ALL
            .iter()
            .map(|s| s.source())
            .chain(self.extra_sources.iter().map(String::as_str))
            .filter(|source| self.allows(&sha1_hex(source)))
    }
}

/// SHA1 of a script's source in lowercase hex, as Redis names scripts.
pub(crate) fn sha1_hex(source: &str) -> String {
    sha1_smol::Sha1::from(source).digest().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn requests_over_the_caps_are_refused() {
        let policy = Policy::default()
            .with_max_keys(2)
            .with_max_request_bytes(10);
        assert!(policy.check_request(&keys(&["a", "b"]), &[]).is_ok());
        assert!(policy.check_request(&keys(&["a", "b", "c"]), &[]).is_err());
        assert!(
            policy
                .check_request(&keys(&["a"]), &keys(&["123456789", "x"]))
                .is_err()
        );
        let long = "k".repeat(defaults::DEFAULT_MAX_KEY_BYTES + 1);
        assert!(
            Policy::default()
                .check_request(&keys(&[&long]), &[])
                .is_err()
        );
    }

    #[test]
    fn empty_keys_and_control_characters_are_refused() {
        let policy = Policy::default();
        for bad in ["", "a\nb", "nul\0", "tab\t", "\u{7f}"] {
            let reason = policy.check_request(&keys(&[bad]), &[]).unwrap_err();
            assert!(reason.contains("key"), "{bad:?}: {reason}");
        }
        assert!(
            policy
                .check_request(&keys(&["*", "other:secret"]), &[])
                .is_ok()
        );
    }

    #[test]
    fn the_namespace_admits_its_keys_and_their_companions_only() {
        let policy = Policy::default().with_key_namespace("app:");
        for ok in [
            "app:job",
            "app:{job}",
            "app:{job}::fence",
            "{app:job}:fence",
            "{app:job}:signal",
            "{app:job}:waiters",
        ] {
            assert!(policy.check_request(&keys(&[ok]), &[]).is_ok(), "{ok}");
        }
        for bad in [
            "other:secret",
            "*",
            "ap",
            "{other}:fence",
            "{other}:signal",
            "x{app:job}",
            // Ends like a wrapped companion of `app:}x`, which has none.
            "{app:}x}:fence",
        ] {
            let reason = policy
                .check_request(&keys(&["app:ok", bad]), &[])
                .unwrap_err();
            assert!(reason.contains("outside the namespace"), "{bad}: {reason}");
        }
    }

    #[test]
    fn the_default_allowlist_is_exactly_the_bundled_scripts() {
        let policy = Policy::default();
        for script in BundledScript::ALL {
            assert!(policy.allows(script.sha1()));
        }
        let mut tampered = BundledScript::ALL[0].source().to_owned();
        tampered.push(' ');
        assert!(!policy.allows(&sha1_hex(&tampered)));
        assert!(
            !Policy::default()
                .without_scripts()
                .allows(BundledScript::ALL[0].sha1())
        );
    }
}
