// The errors of the public API. `LockAcquisitionError` and `InvalidLockError` are the original
// package's; the others say what the component adds (a grant that came too late, a key that is
// not a lock, bad arguments, Redis failures with whether a retry can help, a component that
// trapped).
//
// Every error has `retryable`: whether the same call may succeed later (the Rust host's
// `Error::is_retryable`): true for Redis unavailable or timed out, and for a grant that came
// too late; false otherwise.

/** Base of every error this package throws. */
export class DistributedLockError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }

  /** Whether the same call may succeed if retried later. */
  get retryable() {
    return false;
  }
}

/** Could not get the lock within the retries (`acquire`) or the deadline (`waitForLock`). */
export class LockAcquisitionError extends DistributedLockError {
  constructor(key, message = `could not acquire the lock ${JSON.stringify(key)}: it is held by someone else`) {
    super(message);
    this.key = key;
  }
}

/**
 * Redis granted the lock, but its reply came after the lease had already run out, so the
 * lock was given back (compare-and-delete): Redis is too slow for a TTL this short. A
 * `LockAcquisitionError` (the caller did not get the lock), with `retryable` true: a retry, or
 * a longer TTL, may succeed. `tryAcquire` rejects with it too (it is not "busy").
 */
export class LockGrantedTooLateError extends LockAcquisitionError {
  constructor(key) {
    super(key, `the lock ${JSON.stringify(key)} was granted only after its TTL had run out (Redis too slow for this TTL) and was given back`);
  }

  get retryable() {
    return true;
  }
}

/**
 * The key holds a value of another type than a lock (a hash, a list, ...): it is not a lock
 * and will not become one by waiting. Nothing was changed. Not a `LockAcquisitionError`: a
 * caller that retries on busy locks should not retry this.
 */
export class NotALockError extends DistributedLockError {
  constructor(key) {
    super(`the key ${JSON.stringify(key)} holds a non-lock value`);
    this.key = key;
  }
}

/** An operation on a handle that is not held, or whose token no longer owns the key.
 * `reason`: `not-held` (this handle released it already; nothing was asked of Redis),
 * `expired` (`LockExpiredError`) or `taken-over` (`LockTakenOverError`). */
export class InvalidLockError extends DistributedLockError {
  constructor(key, message = `the lock ${JSON.stringify(key)} is not held by this handle`, reason = 'not-held') {
    super(message);
    this.key = key;
    this.reason = reason;
  }
}

/** Redis found the key gone: the lock's lease had run out (nothing was changed). An
 * `InvalidLockError`, as the original package reported it. */
export class LockExpiredError extends InvalidLockError {
  constructor(key) {
    super(key, `the lock ${JSON.stringify(key)} had expired`, 'expired');
  }
}

/** Redis found another owner's token on the key: someone else took the lock after this
 * handle's lease ran out (nothing was changed). An `InvalidLockError`. */
export class LockTakenOverError extends InvalidLockError {
  constructor(key) {
    super(key, `the lock ${JSON.stringify(key)} was taken over by another owner`, 'taken-over');
  }
}

/** An argument was refused before anything was sent to Redis. */
export class InvalidArgumentError extends DistributedLockError {}

/** Over a quorum of primaries: fewer than a majority confirmed that the token is gone (the
 * others refused or did not answer), so a majority may still hold it until its TTL. The handle
 * is `releasing`; `release()` may be called again, and completes once a majority confirms.
 * `detail` says how many confirmed. */
export class LockReleaseIncompleteError extends DistributedLockError {
  constructor(key, detail) {
    super(`the release of ${JSON.stringify(key)} is incomplete: ${detail}`);
    this.key = key;
    this.detail = detail;
  }

  get retryable() {
    return true;
  }
}

/**
 * Redis, or this package's policy, failed the operation.
 * `kind`: `unavailable` (connection or a transient server state; the script may have run),
 * `timeout` (no reply within `policy.commandTimeoutMs`; the outcome is unknown), `rejected`
 * (Redis refused: script error, wrong type, ACL...), `denied` (the policy refused before Redis).
 * `retryable`: whether the same call may succeed later (`unavailable`, `timeout`).
 */
export class LockRedisError extends DistributedLockError {
  constructor(kind, detail) {
    super(detail ? `redis ${kind}: ${detail}` : `redis ${kind}`);
    this.kind = kind;
    this.detail = detail ?? null;
  }

  get retryable() {
    return this.kind === 'unavailable' || this.kind === 'timeout';
  }
}

/** The component trapped (a bug in it, a host limit it broke, or a host failure): the instance
 * it ran in is discarded, the locks *that call* may have taken are given back
 * (compare-and-delete), and the handles the instance held are lost (their locks expire with
 * their TTL). */
export class ComponentTrapError extends DistributedLockError {}

/** The DistributedLock was closed: every later call on it, and on its handles, fails with this
 * (the locks its handles held stay in Redis until their TTL). */
export class ClientClosedError extends DistributedLockError {
  constructor() {
    super('dlock: this DistributedLock is closed');
    /** True when the call was under way when close() came: it may have been carried out in
     * Redis (a release or extend), or have been granted a lock that is being given back (an
     * acquire). False for a call refused because the lock was closed before it began. */
    this.inFlight = false;
  }
}
