// Types of the public API: the original package's (`@lilith/distributed-lock`), plus what the
// dlock component adds (fencing, attach, lock state, lease status, the host's policy).

import type { Cluster, Redis } from 'ioredis';

/** An ioredis client the caller owns (this package uses its `evalshaBuffer` and `evalBuffer`). */
export type RedisLike = Redis | Cluster;

/** What the component may do on Redis; the Rust host's `Policy`, with the same defaults. */
export interface PolicyOptions {
  /** Each Redis call (EVALSHA, and EVAL after NOSCRIPT) must answer within this. Default 2000. */
  commandTimeoutMs?: number;
  /** Most keys in one call. Default 8. */
  maxKeys?: number;
  /** Longest key in UTF-8 bytes. Default 1024. */
  maxKeyBytes?: number;
  /** Every key must start with this (or be the fence counter `{KEY}:fence` of one that does).
   * Default '' (any key). Use the same value as `keyPrefix`. */
  keyNamespace?: string;
  /** Most bytes of keys and arguments in one call. Default 65536. */
  maxRequestBytes?: number;
  /** Most bytes a reply may carry (bulk bytes, 8 per array element). Default 65536. */
  maxReplyBytes?: number;
  /** Most Redis calls in any one-second window of one operation. Default 4096. */
  maxEvalsPerSecond?: number;
  /** Lua sources allowed besides the component's own scripts. */
  allowScripts?: string[];
  /** Allow none of the component's own scripts (only `allowScripts`). */
  denyBundledScripts?: boolean;
}

export interface LockOptions {
  /** Retries after the first attempt of `acquire`. Default from the component: 5. */
  retryCount?: number;
  /** Base delay: attempt n (n >= 2) waits retryDelayMs * 2^(n-2). Default 100. */
  retryDelayMs?: number;
  /** Cap on any one delay of `acquire`. Default 5000. */
  maxRetryDelayMs?: number;
  /** Full jitter: each delay drawn from [0, delay]. Default false. */
  jitter?: boolean;
  /** Prepended to every key in Redis. Default ''. */
  keyPrefix?: string;
  /** Give every acquisition a fencing token (strictly increasing per key). Default false. */
  fencing?: boolean;
  /** `extend` refuses (and the handle is lost) when validity has this little left. Default 0. */
  safetyMarginMs?: number | bigint;
}

export interface DistributedLockOptions extends LockOptions {
  policy?: PolicyOptions;
  /** Where the component runs: `jspi` (in this thread, WebAssembly JSPI: Node 24.x with JSPI on,
   * 26), `worker` (one worker thread per instance), `auto` (jspi when available). */
  backend?: 'auto' | 'jspi' | 'worker';
  /** Most component instances, i.e. calls in flight at once, of this client. Default 64 (jspi),
   * 8 (worker). */
  maxInstances?: number;
}

export type LockStatus = 'held' | 'expired' | 'released' | 'lost' | 'attached';

export interface LockInfo {
  /** The key as given (without `keyPrefix`). */
  key: string;
  /** The token stored in Redis while this handle owns the lock. */
  token: string;
  /** When the acquiring call was sent, ms since the Unix epoch. */
  acquiredAt: number;
  /** When the lease ends (from the last acquire or extend), ms since the Unix epoch. */
  expiresAt: number;
  /** Held, as far as the handle knows without asking Redis. */
  isHeld: boolean;
  /** The fencing token, when the client has `fencing` on. */
  fence: bigint | null;
  status: LockStatus;
  /** The end of validity on `process.hrtime.bigint()`'s clock (ns). */
  validUntilNs: bigint;
}

export type LockState = { state: 'unlocked' } | { state: 'expiring'; ttlMs: number } | { state: 'persistent' };

export declare class LockHandle {
  private constructor();
  /** Deletes the lock if the key still holds this handle's token. */
  release(): Promise<void>;
  /** Sets the lock's TTL to `ms` from now if the key still holds this handle's token. */
  extend(ms: number | bigint): Promise<void>;
  /** Marks the handle released without touching Redis. */
  markAsReleased(): void;
  /** Answered locally, without Redis. */
  get isHeld(): boolean;
  get info(): LockInfo;
  get key(): string;
  get token(): string;
  get fence(): bigint | null;
}

export declare class DistributedLock {
  constructor(redis: RedisLike, options?: DistributedLockOptions);
  get backend(): 'jspi' | 'worker';
  acquire(key: string, ttlMs: number | bigint): Promise<LockHandle>;
  tryAcquire(key: string, ttlMs: number | bigint): Promise<LockHandle | null>;
  waitForLock(key: string, timeoutMs: number | bigint, ttlMs: number | bigint): Promise<LockHandle>;
  isLocked(key: string): Promise<boolean>;
  lockState(key: string): Promise<LockState>;
  attach(key: string, token: string): Promise<LockHandle>;
  /** Ends the worker threads (worker backend); the Redis client stays the caller's. */
  close(): Promise<void>;
}

/** `jspi` where this Node has JSPI, else `worker`. */
export declare function defaultBackend(): 'jspi' | 'worker';

export declare class DistributedLockError extends Error {}
export declare class LockAcquisitionError extends DistributedLockError {
  readonly key: string;
}
export declare class InvalidLockError extends DistributedLockError {
  readonly key: string;
}
export declare class InvalidArgumentError extends DistributedLockError {}
export declare class LockRedisError extends DistributedLockError {
  readonly kind: 'unavailable' | 'timeout' | 'rejected' | 'denied';
  readonly detail: string | null;
  /** Whether the same call may succeed later (`unavailable`, `timeout`). */
  readonly retryable: boolean;
}
export declare class ComponentTrapError extends DistributedLockError {}
