// Generated from the dlock-contract crate (contract/ in the repository) by
// tests/tests/e2e/contract.rs: do not edit. `scripts/bundle` rewrites it; the test suite fails
// while it is stale.

const frozen = (v) => {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) frozen(x);
    Object.freeze(v);
  }
  return v;
};

/** The version of the `dlock:lock` WIT package. */
export const WIT_VERSION = '0.4.0';
/** The WIT package with its version. */
export const WIT_PACKAGE = 'dlock:lock@0.4.0';
/** Longest lock key, in bytes (without the client's prefix). */
export const MAX_KEY_BYTES = 512;
/** Longest key prefix, in bytes. */
export const MAX_PREFIX_BYTES = 256;
/** Longest token `attach` accepts, and the longest foreign token the policy lets through. */
export const MAX_TOKEN_BYTES = 256;
/** Length of the component's own tokens: a UUID v4 in hyphenated lowercase form. */
export const TOKEN_BYTES = 36;
/** Longest TTL or wait, in milliseconds. */
export const MAX_DURATION_MS = 1000000000000;
/** `waitForLock` never waits longer than this between two attempts, in milliseconds. */
export const WAIT_MAX_DELAY_MS = 1000;
/** Longest token of another client that release and extend accept when the policy allows them. */
export const MAX_FOREIGN_TOKEN_BYTES = 256;
/** Most bytes one `get-random-bytes` call may ask of the host; a larger request traps the call. */
export const MAX_RANDOM_BYTES = 4096;
/** Most permits a counting semaphore may have, and so the most one acquisition may take. */
export const MAX_PERMITS = 1000;
/** Quorum mode: the most independent primaries (at least 2). */
export const MAX_QUORUM_NODES = 9;
/** The suffix naming each companion key of a lock key. */
export const COMPANION_SUFFIXES = frozen({ fence: ':fence', signal: ':signal', waiters: ':waiters' });
/** What each companion key is, as error messages name it. */
export const COMPANION_DESCRIPTIONS = frozen({ fence: "fence counter", signal: "signal list", waiters: "waiters' mark" });
/** Each script's accepted shapes of call: keys and arguments in order, by role (`lock`, `any`,
 * a companion's name; an `ArgRole`). */
export const SCRIPTS = frozen({
  acquire: [
    { keys: ['lock'], args: ['new-token', 'ttl'] },
    { keys: ['lock', 'fence'], args: ['new-token', 'ttl'] },
    { keys: ['lock', 'waiters'], args: ['new-token', 'ttl', 'wait'] },
    { keys: ['lock', 'fence', 'waiters'], args: ['new-token', 'ttl', 'wait'] },
  ],
  release: [
    { keys: ['lock'], args: ['held-token'] },
    { keys: ['lock'], args: ['held-token', 'quiet'] },
  ],
  extend: [
    { keys: ['lock'], args: ['held-token', 'ttl'] },
  ],
  check: [
    { keys: ['any'], args: [] },
  ],
  semaphore_acquire: [
    { keys: ['lock'], args: ['new-token', 'ttl', 'limit', 'permits'] },
    { keys: ['lock', 'fence'], args: ['new-token', 'ttl', 'limit', 'permits'] },
  ],
  semaphore_release: [
    { keys: ['lock'], args: ['held-token', 'permits'] },
  ],
  semaphore_extend: [
    { keys: ['lock'], args: ['held-token', 'ttl', 'permits'] },
  ],
  semaphore_count: [
    { keys: ['lock'], args: [] },
  ],
});
/** The lock options' defaults (the component's `default-options`). */
export const LOCK_DEFAULTS = frozen({ retryCount: 5, retryDelayMs: 100, maxRetryDelayMs: 5000, jitter: false, fencing: false, safetyMarginMs: 0 });
/** The host policy's defaults (the Rust host's `Policy::default()`). */
export const POLICY_DEFAULTS = frozen({ commandTimeoutMs: 2000, maxKeys: 8, maxKeyBytes: 1024, keyNamespace: '', maxRequestBytes: 4096, maxReplyBytes: 65536, maxEvalsPerSecond: 4096, maxBytesPerSecond: 4194304, allowForeignTokens: false, maxComputeMs: 1000, maxMemoryBytes: 16777216 });
