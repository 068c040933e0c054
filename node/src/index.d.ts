// Types of the public API: the original package's (`@lilith/distributed-lock`), plus what the
// dlock component (WIT `dlock:lock`) adds (fencing, attach, key state, handle status, the host's
// policy).

import type { Cluster, Redis } from 'ioredis';
import type { ContractLockOptions, ContractPolicyOptions } from './generated/contract.js';

/** An ioredis client the caller owns (this package uses its `evalshaBuffer` and `evalBuffer`). */
export type RedisLike = Redis | Cluster;

/** What the component may do on Redis; the Rust host's `Policy`, with the same defaults (those
 * of `ContractPolicyOptions` are generated from the dlock-contract crate). */
export interface PolicyOptions extends ContractPolicyOptions {
  /** After this many command timeouts in a row on one ioredis client, the client is made to
   * reconnect (`disconnect(true)`): its connection is taken for dead. 0: never. Default 3. */
  reconnectAfterTimeouts?: number;
  /** Lua sources allowed besides the component's own scripts. */
  allowScripts?: string[];
  /** Allow none of the component's own scripts (only `allowScripts`). */
  denyBundledScripts?: boolean;
}

/** How a client acquires locks: the component's `lock-options` (`ContractLockOptions`, with the
 * dlock-contract crate's defaults), plus the key prefix and wake-up on release. */
export interface LockOptions extends ContractLockOptions {
  /** Prepended to every key in Redis. Default ''. */
  keyPrefix?: string;
  /** Which waits end as soon as the holder releases: `never` (polling), `wait-for-lock` (the
   * default), `always` (acquire's retries too). A waiter blocks on the key's signal list on a
   * connection of its own (with an ioredis Cluster or Sentinel client, waits poll: README). */
  wakeOnRelease?: 'never' | 'wait-for-lock' | 'always';
}

export interface DistributedLockOptions extends LockOptions {
  policy?: PolicyOptions;
  /** Where the component runs: `jspi` (in this thread, WebAssembly JSPI: Node 24.x with JSPI on,
   * 26), `worker` (one worker thread per instance), `auto` (jspi when available). */
  backend?: 'auto' | 'jspi' | 'worker';
  /** Most component instances, i.e. calls in flight at once, of this client. Default 64 (jspi),
   * 8 (worker). One exception: an `acquire` or `waitForLock` when every instance holds lock
   * handles gets a new instance past the cap, so that it never delays their extend/release. */
  maxInstances?: number;
}

/** Where a handle stands, as it knows without asking Redis. `releasing`: a release was sent
 * but its outcome is unknown (timeout, broken connection); only `release` may be retried. */
export type HandleStatus = 'held' | 'expired' | 'released' | 'releasing' | 'lost' | 'attached';

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
  status: HandleStatus;
  /** The end of validity on `process.hrtime.bigint()`'s clock (ns). */
  validUntilNs: bigint;
  /** `JSON.stringify(info)`: `fence` as a number, `validUntilNs` as a decimal string. */
  toJSON(): LockInfoJSON;
}

/** `handle.info` as JSON. */
export interface LockInfoJSON extends Omit<LockInfo, 'fence' | 'validUntilNs' | 'toJSON'> {
  fence: number | null;
  validUntilNs: string;
}

/** What Redis says about a key (whoever set it). */
export type KeyState = { state: 'unlocked' } | { state: 'expiring'; ttlMs: number } | { state: 'persistent' };

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

/** What Redis says about a counting semaphore. */
export interface SemaphoreState {
  /** The permits held (their lease has not ended), by every holder. */
  held: number;
  /** Milliseconds until the first of those leases ends; null when none is held. */
  firstEndsInMs: number | null;
}

/** A counting semaphore (`DistributedLock#semaphore`): at most `limit` permits of `key` held at
 * once; each acquisition's handle releases and extends its permits. */
export declare class Semaphore {
  private constructor();
  readonly key: string;
  readonly limit: number;
  acquire(ttlMs: number | bigint, count?: number): Promise<LockHandle>;
  tryAcquire(ttlMs: number | bigint, count?: number): Promise<LockHandle | null>;
  waitFor(timeoutMs: number | bigint, ttlMs: number | bigint, count?: number): Promise<LockHandle>;
  state(): Promise<SemaphoreState>;
}

export declare class DistributedLock {
  /**
   * `redis`: an ioredis client (or Cluster) you own. A list of 2 to `MAX_QUORUM_NODES` ioredis
   * clients, one per independent primary, is quorum mode (Redlock).
   */
  constructor(redis: RedisLike | readonly Redis[], options?: DistributedLockOptions);
  get backend(): 'jspi' | 'worker';
  acquire(key: string, ttlMs: number | bigint): Promise<LockHandle>;
  tryAcquire(key: string, ttlMs: number | bigint): Promise<LockHandle | null>;
  waitForLock(key: string, timeoutMs: number | bigint, ttlMs: number | bigint): Promise<LockHandle>;
  isLocked(key: string): Promise<boolean>;
  keyState(key: string): Promise<KeyState>;
  attach(key: string, token: string): Promise<LockHandle>;
  /** The counting semaphore at `key` with `limit` permits (1 to 1000). */
  semaphore(key: string, limit: number): Semaphore;
  /** Ends the component instances (worker threads too) and the waits in progress, and closes
   * the connections waits opened. Final: every later call on this DistributedLock or its
   * handles fails with `ClientClosedError`; idempotent. The Redis client stays the caller's. */
  close(): Promise<void>;
}

/** `jspi` where this Node has JSPI, else `worker`. */
export declare function defaultBackend(): 'jspi' | 'worker';

/** The component this package runs: the SHA-256 and size of the .wasm file it was built from
 * (the Rust host's bundled component) and the jco version. */
export declare const COMPONENT: { readonly sha256: string; readonly bytes: number; readonly jco: string };

export declare class DistributedLockError extends Error {
  constructor(message?: string, options?: ErrorOptions);
  /** Whether the same call may succeed if retried later. */
  readonly retryable: boolean;
}
/** Not acquired within the retries (`acquire`) or the deadline (`waitForLock`). */
export declare class LockAcquisitionError extends DistributedLockError {
  constructor(key: string, message?: string);
  readonly key: string;
}
/** Granted only after the TTL had run out (Redis too slow for it): given back. Retryable. */
export declare class LockGrantedTooLateError extends LockAcquisitionError {
  constructor(key: string);
}
/** The key holds another type than a lock (a hash, a list): nothing changed; not retryable. */
export declare class NotALockError extends DistributedLockError {
  constructor(key: string);
  readonly key: string;
}
/** An operation on a handle that is not held, or whose token no longer owns the key. */
export declare class InvalidLockError extends DistributedLockError {
  constructor(key: string, message?: string);
  readonly key: string;
  /** `not-held` (released by this handle already), `expired`, `taken-over`. */
  readonly reason: 'not-held' | 'expired' | 'taken-over';
}
/** Redis found the key gone: the lease had run out. Nothing changed. */
export declare class LockExpiredError extends InvalidLockError {
  readonly reason: 'expired';
}
/** Redis found another owner's token: the lock was taken over. Nothing changed. */
export declare class LockTakenOverError extends InvalidLockError {
  readonly reason: 'taken-over';
}
/** An argument was refused before anything was sent to Redis. */
export declare class InvalidArgumentError extends DistributedLockError {}
/** Quorum mode: fewer than a majority of the primaries confirmed the release; the handle is
 * `releasing` and `release()` may be called again. */
export declare class LockReleaseIncompleteError extends DistributedLockError {
  constructor(key: string, detail: string);
  readonly key: string;
  readonly detail: string;
  readonly retryable: true;
}
export type RedisErrorKind = 'unavailable' | 'timeout' | 'rejected' | 'denied';
export declare class LockRedisError extends DistributedLockError {
  constructor(kind: RedisErrorKind, detail?: string | null);
  readonly kind: RedisErrorKind;
  readonly detail: string | null;
}
/** The component trapped: its instance is discarded, the locks that call took are given back. */
export declare class ComponentTrapError extends DistributedLockError {}
/** The DistributedLock was closed: every later call on it and its handles fails with this. */
export declare class ClientClosedError extends DistributedLockError {
  constructor();
  /** True when the call was under way when close() came: it may have been carried out in Redis
   * (a release or extend), or have been granted a lock that is being given back (an acquire). */
  inFlight: boolean;
}
