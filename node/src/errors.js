// The errors of the public API. `LockAcquisitionError` and `InvalidLockError` are the original
// package's; the others say what the component adds (bad arguments, Redis failures with whether
// a retry can help, a component that trapped).

/** Base of every error this package throws. */
export class DistributedLockError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Could not get the lock within the retries (`acquire`) or the deadline (`waitForLock`). */
export class LockAcquisitionError extends DistributedLockError {
  constructor(key, message = `could not acquire the lock ${JSON.stringify(key)}: it is held by someone else`) {
    super(message);
    this.key = key;
  }
}

/** An operation on a handle that is not held, or whose token no longer owns the key. */
export class InvalidLockError extends DistributedLockError {
  constructor(key, message = `the lock ${JSON.stringify(key)} is not held by this handle`) {
    super(message);
    this.key = key;
  }
}

/** An argument was refused before anything was sent to Redis. */
export class InvalidArgumentError extends DistributedLockError {}

/**
 * Redis, or this package's policy, failed the operation.
 * `kind`: `unavailable` (connection or a transient server state; the script may have run),
 * `timeout` (no reply within `policy.commandTimeoutMs`; the outcome is unknown), `rejected`
 * (Redis refused: script error, wrong type, ACL...), `denied` (the policy refused before Redis).
 * `retryable`: whether the same call may succeed later.
 */
export class LockRedisError extends DistributedLockError {
  constructor(kind, detail) {
    super(detail ? `redis ${kind}: ${detail}` : `redis ${kind}`);
    this.kind = kind;
    this.detail = detail ?? null;
    this.retryable = kind === 'unavailable' || kind === 'timeout';
  }
}

/** The component trapped (a bug in it, or a host failure): the instance it ran in is discarded,
 * and the handles it held are lost (their locks expire with their TTL). */
export class ComponentTrapError extends DistributedLockError {}
