// Generated from the dlock-contract crate (contract/ in the repository) by
// tests/tests/e2e/contract.rs: do not edit. `scripts/bundle` rewrites it; the test suite fails
// while it is stale.

export declare const WIT_VERSION: '0.4.0';
export declare const WIT_PACKAGE: 'dlock:lock@0.4.0';
export declare const MAX_KEY_BYTES: 512;
export declare const MAX_PREFIX_BYTES: 256;
export declare const MAX_TOKEN_BYTES: 256;
export declare const TOKEN_BYTES: 36;
export declare const MAX_DURATION_MS: 1000000000000;
export declare const WAIT_MAX_DELAY_MS: 1000;
export declare const MAX_FOREIGN_TOKEN_BYTES: 256;
export declare const MAX_RANDOM_BYTES: 4096;
export declare const MAX_PERMITS: 1000;
export declare const MAX_QUORUM_NODES: 9;
/** A bundled script's name. */
export type ScriptName = 'acquire' | 'release' | 'extend' | 'check' | 'semaphore_acquire' | 'semaphore_release' | 'semaphore_extend' | 'semaphore_count';
/** A companion key's name. */
export type CompanionName = 'fence' | 'signal' | 'waiters';
export type KeyRole = 'lock' | 'any' | CompanionName;
export type ArgRole = 'new-token' | 'held-token' | 'ttl' | 'wait' | 'quiet' | 'limit' | 'permits';
export declare const COMPANION_SUFFIXES: { readonly [name in CompanionName]: string };
export declare const COMPANION_DESCRIPTIONS: { readonly [name in CompanionName]: string };
export declare const SCRIPTS: {
  readonly [name in ScriptName]: ReadonlyArray<{ readonly keys: readonly KeyRole[]; readonly args: readonly ArgRole[] }>;
};
export declare const LOCK_DEFAULTS: { readonly retryCount: 5; readonly retryDelayMs: 100; readonly maxRetryDelayMs: 5000; readonly jitter: false; readonly fencing: false; readonly safetyMarginMs: 0 };
export declare const POLICY_DEFAULTS: { readonly commandTimeoutMs: 2000; readonly maxKeys: 8; readonly maxKeyBytes: 1024; readonly keyNamespace: ''; readonly maxRequestBytes: 4096; readonly maxReplyBytes: 65536; readonly maxEvalsPerSecond: 4096; readonly maxBytesPerSecond: 4194304; readonly allowForeignTokens: false; readonly maxComputeMs: 1000; readonly maxMemoryBytes: 16777216 };

/** The policy options the Rust host's `Policy` has too, with the same defaults. */
export interface ContractPolicyOptions {
  /** Each Redis call (EVALSHA, and EVAL after NOSCRIPT) must answer within this. Default 2000. */
  commandTimeoutMs?: number;
  /** Most keys in one call. Default 8. */
  maxKeys?: number;
  /** Longest key in UTF-8 bytes. Default 1024. */
  maxKeyBytes?: number;
  /** Every key must start with this, or be a companion of a key that does: `{KEY}:fence`, `{KEY}:signal`, `{KEY}:waiters`
   * for a key without a hash tag (a key with one has companions `KEY::fence`, ... that start
   * with it). Default '' (any key). Use the same value as `keyPrefix`. */
  keyNamespace?: string;
  /** Most bytes of keys and arguments in one call. Default 4096. */
  maxRequestBytes?: number;
  /** Most bytes a reply may carry (bulk bytes, 8 per array element). Default 65536. */
  maxReplyBytes?: number;
  /** Redis calls per call into the component: a token bucket that starts full with this many
   * at every call and refills at this many per second. Default 4096. */
  maxEvalsPerSecond?: number;
  /** Bytes of keys and arguments one DistributedLock may send: a token bucket of this many,
   * refilled at this many per second over the client's life. Default 4 MiB. */
  maxBytesPerSecond?: number;
  /** Let `release` and `extend` name tokens of other clients of the convention (node-redlock,
   * redis-py, redsync: 1 to 256 bytes without control characters), for `attach`. Default false:
   * only dlock's own tokens (UUID v4). */
  allowForeignTokens?: boolean;
  /** Worker backend: longest a call may compute without calling Redis or sleeping before its
   * worker is stopped (a trap). Default 1000. The JSPI backend cannot enforce it. */
  maxComputeMs?: number;
  /** Largest linear memory of an instance, checked after each call (an instance past it is
   * discarded as if it had trapped). Default 16 MiB. */
  maxMemoryBytes?: number;
}

/** The lock options of the component's `lock-options`, with its defaults. */
export interface ContractLockOptions {
  /** Retries after the first attempt of `acquire`. Default 5. */
  retryCount?: number;
  /** Base delay: attempt n (n >= 2) waits retryDelayMs * 2^(n-2). Default 100. */
  retryDelayMs?: number;
  /** Cap on any one delay of `acquire`. Default 5000. */
  maxRetryDelayMs?: number;
  /** Full jitter: each delay drawn from [0, delay]. Default false. */
  jitter?: boolean;
  /** Give every acquisition a fencing token (strictly increasing per key). Default false. */
  fencing?: boolean;
  /** `extend` refuses (and the handle is lost) when validity has this little left. Default 0. */
  safetyMarginMs?: number | bigint;
}
