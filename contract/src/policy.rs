//! The defaults of a host's policy: what a component may do on Redis unless the embedder says
//! otherwise. `dlock-host`'s `Policy::default()` and `@dlock/node`'s `policy` use these.

use crate::limits::MAX_TOKEN_BYTES;

/// Each script call must complete within this, in milliseconds.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 2000;
/// The namespace every key must be in: empty, any key.
pub const DEFAULT_KEY_NAMESPACE: &str = "";
/// Most keys one script call may pass.
pub const DEFAULT_MAX_KEYS: usize = 8;
/// Longest key one script call may pass, in bytes (any key: the lock key with its prefix, or a
/// companion key).
pub const DEFAULT_MAX_KEY_BYTES: usize = 1024;
/// Most bytes of keys and arguments together in one script call; at least
/// [`max_request_bytes`](crate::max_request_bytes), what the component's scripts can need.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024;
/// Most bytes a reply may carry (bulk strings and status text added up, 8 bytes per array
/// element).
pub const DEFAULT_MAX_REPLY_BYTES: usize = 64 * 1024;
/// Script calls per call into the component: a token bucket that starts full at every call
/// into the component and refills at this many per second.
pub const DEFAULT_MAX_EVALS_PER_SECOND: u32 = 4096;
/// Bytes of keys and arguments one client may send: a token bucket of this many, refilled at
/// this many per second over the client's life.
pub const DEFAULT_MAX_BYTES_PER_SECOND: u64 = 4 << 20;
/// Longest the component may compute without calling Redis or sleeping, in milliseconds.
pub const DEFAULT_MAX_COMPUTE_MS: u64 = 1000;
/// Most connections of their own a host holds at once for waits on release signals.
pub const DEFAULT_MAX_BLOCKING_CONNECTIONS: usize = 64;
/// Whether `release` and `extend` may name tokens of other clients of the lock convention (up
/// to [`MAX_FOREIGN_TOKEN_BYTES`]) by default: no, only the component's own.
pub const DEFAULT_ALLOW_FOREIGN_TOKENS: bool = false;
/// Longest token of another client that `release` and `extend` accept when foreign tokens are
/// allowed: what the component's `attach` accepts.
pub const MAX_FOREIGN_TOKEN_BYTES: usize = MAX_TOKEN_BYTES;
/// Largest linear memory of a component instance, in bytes.
pub const MAX_MEMORY_BYTES: usize = 16 << 20;
