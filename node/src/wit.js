// The only module that knows the shapes of `dlock:lock/lock` (the component's export, at the contract's `WIT_VERSION`):
// option records, the error and key-state variants, lock-info, and which export each operation calls.
// When the WIT changes (new error cases, renamed fields, new exports), this file and the
// ASYNC_EXPORTS list in scripts/build.mjs are what follow it.
//
// Runs in the caller's thread (conversions) and inside the component's thread (the executor:
// in-process under JSPI, in a worker otherwise), so it holds plain functions only.
import { checkDurationMs } from './contract.js';
import {
  ComponentTrapError,
  DistributedLockError,
  InvalidArgumentError,
  InvalidLockError,
  LockAcquisitionError,
  LockExpiredError,
  LockGrantedTooLateError,
  LockRedisError,
  LockReleaseIncompleteError,
  LockTakenOverError,
  NotALockError,
} from './errors.js';

// ---------------------------------------------------------------------------------------------
// Inside the component's thread: run one operation on one instance.

/** True for the error jco throws when an export returns `err(payload)`. */
function isComponentError(e) {
  return e !== null && typeof e === 'object' && Object.prototype.hasOwnProperty.call(e, 'payload');
}

/**
 * The operations of one component instance: a `client` created with `witOptions`, and a table of
 * the lock handles it gave out (by number, so that they can be named across a thread boundary).
 * `exec` resolves to `{ ok }` or `{ err: <WIT error> }`, with `info` (the handle's lock-info
 * after the operation) for handle operations; a trap rejects.
 *
 * `lock` is jco's `dlock:lock/lock` export object; its methods return promises under JSPI and
 * values in the sync build: the executor awaits either.
 */
export function createExecutor(lock, witOptions) {
  const client = lock.Client.create(witOptions);
  const handles = new Map();
  let nextId = 1;

  // An `acquired` record: the handle, and its lock-info as of the return.
  const put = ({ handle: h, info }) => {
    const id = nextId++;
    handles.set(id, h);
    return { ok: id, info };
  };
  const putMaybe = (h) => (h === undefined ? NONE : put(h));
  const ok = (v) => ({ ok: v });
  // A handle this instance no longer has was released (or dropped): `not-held`, as the
  // component answers for a released handle, without touching Redis. Never a trap: the other
  // handles of the instance are fine.
  const gone = () => Promise.resolve(NOT_HELD);
  const drop = (id) => {
    const h = handles.get(id);
    if (h !== undefined) {
      handles.delete(id);
      h[Symbol.dispose]();
    }
  };
  // A component error becomes a result; anything else (a trap) stays an error.
  const fail = (e) => {
    if (isComponentError(e)) return { err: e.payload };
    throw e;
  };
  // `v` is a promise (JSPI) or a value (sync build). Written without async functions: each
  // await layer costs promises and microtasks on the hot path (see docs/history/NODE.md).
  const then = (v, f, onErr = fail) => (v instanceof Promise ? v.then(f, onErr) : Promise.resolve(f(v)));

  function exec(op, a, b, c) {
    try {
      switch (op) {
        case 'acquire': // key, ttlMs (bigint)
          return then(client.acquire(a, b), put);
        case 'tryAcquire': // key, ttlMs
          return then(client.tryAcquire(a, b), putMaybe);
        case 'waitForLock': // key, timeoutMs, ttlMs
          return then(client.waitForLock(a, b, c), put);
        case 'isLocked': // key
          return then(client.isLocked(a), ok);
        case 'keyState': // key
          return then(client.keyState(a), ok);
        case 'attach': // key, token
          return Promise.resolve(put(client.attach(a, b)));
        case 'acquirePermits': // key, { limit, count }, ttlMs
          return then(client.acquirePermits(a, b, c), put);
        case 'tryAcquirePermits': // key, { limit, count }, ttlMs
          return then(client.tryAcquirePermits(a, b, c), putMaybe);
        case 'waitForPermits': // key, { limit, count, ttlMs }, timeoutMs
          return then(client.waitForPermits(a, { limit: b.limit, count: b.count }, c, b.ttlMs), put);
        case 'semaphoreState': // key
          return then(client.semaphoreState(a), ok);
        case 'release': {
          // handle id. A released handle can do nothing more: its resource goes at once, and the
          // caller knows its state (released, not held) without asking. A release that found
          // the key gone or taken over (`ok`: the release-outcome) leaves a lost handle.
          const h = handles.get(a);
          if (h === undefined) return gone();
          return then(
            h.release(),
            (outcome) => {
              if (outcome !== 'released') return { ok: outcome, info: h.info() };
              drop(a);
              return RELEASED;
            },
            (e) => ({ ...fail(e), info: h.info() }),
          );
        }
        case 'extend': {
          // handle id, ttlMs
          const h = handles.get(a);
          if (h === undefined) return gone();
          return then(
            h.extend(b),
            () => ({ ok: null, info: h.info() }),
            (e) => ({ ...fail(e), info: h.info() }),
          );
        }
        case 'drop': // handle ids (an array)
          for (const id of a) drop(id);
          return Promise.resolve(NONE);
        case 'close':
          for (const id of [...handles.keys()]) drop(id);
          client[Symbol.dispose]();
          return Promise.resolve(NONE);
        default:
          throw new Error(`dlock: unknown operation ${op}`);
      }
    } catch (e) {
      // the sync build throws from the call itself
      try {
        const r = fail(e);
        if (op === 'release' || op === 'extend') r.info = handles.get(a)?.info() ?? null;
        return Promise.resolve(r);
      } catch (trap) {
        return Promise.reject(trap);
      }
    }
  }
  return { exec };
}

const NONE = Object.freeze({ ok: null });
const RELEASED = Object.freeze({ ok: 'released', info: null });
const NOT_HELD = Object.freeze({ err: Object.freeze({ tag: 'not-held' }), info: null });

// ---------------------------------------------------------------------------------------------
// In the caller's thread: conversions between the public API and the WIT types.

const U32_MAX = 2 ** 32 - 1;

/** `v` as an argument error shows it: a string quoted and named as one, a bigint with `n`. */
function shown(v) {
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'bigint') return `${v}n`;
  return String(v);
}

function u32(name, v) {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw new InvalidArgumentError(`${name} must be an integer in [0, 2^32), got ${shown(v)}`);
  return v;
}

/**
 * A duration in milliseconds (a safe integer number or a bigint) as the component's u64: at
 * least 1 (at least 0 with `allowZero`) and at most `MAX_DURATION_MS`; anything else is an
 * `InvalidArgumentError` naming the argument `name`.
 */
export function durationMs(name, v, allowZero = true) {
  const ms = typeof v === 'bigint' ? v : Number.isSafeInteger(v) ? BigInt(v) : null;
  if (ms === null || ms < 0n || (ms === 0n && !allowZero)) {
    const sign = allowZero ? 'non-negative' : 'positive';
    throw new InvalidArgumentError(`${name} must be ${sign}, a whole number of milliseconds, got ${shown(v)}`);
  }
  const refused = checkDurationMs(name, ms, allowZero);
  if (refused !== null) throw new InvalidArgumentError(refused);
  return ms;
}

/** A WIT `permits` record: `limit` and `count` as u32 (the component checks their ranges). */
export function toPermits(limit, count) {
  return { limit: u32('limit', limit), count: u32('count', count) };
}

/** The public form of a WIT `semaphore-state`. */
export function fromSemaphoreState(state) {
  return { held: state.held, firstEndsInMs: state.firstEndsInMs === undefined ? null : Number(state.firstEndsInMs) };
}

function bool(name, v) {
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${shown(v)}`);
  return v;
}

function str(name, v) {
  if (typeof v !== 'string') throw new InvalidArgumentError(`${name} must be a string, got ${typeof v}`);
  return v;
}

const WAKES = ['never', 'wait-for-lock', 'always'];

function wake(name, v) {
  if (!WAKES.includes(v)) throw new InvalidArgumentError(`${name} must be one of ${WAKES.join(', ')}, got ${JSON.stringify(v)}`);
  return v;
}

/** The public option names (camelCase of `lock-options`) and their conversions. */
const OPTION_FIELDS = {
  retryCount: u32,
  retryDelayMs: u32,
  maxRetryDelayMs: u32,
  jitter: bool,
  keyPrefix: str,
  fencing: bool,
  safetyMarginMs: durationMs,
  wakeOnRelease: wake,
};
export const LOCK_OPTION_NAMES = Object.keys(OPTION_FIELDS);

/** The WIT `lock-options` record from the component's defaults and the user's options. */
export function toLockOptions(defaults, options = {}) {
  const out = {};
  for (const [name, convert] of Object.entries(OPTION_FIELDS)) {
    out[name] = options[name] === undefined ? defaults[name] : convert(name, options[name]);
  }
  return out;
}

/** The public error for a WIT `lock.error`. */
export function toError(err, key) {
  switch (err.tag) {
    case 'not-acquired':
      return new LockAcquisitionError(key);
    case 'granted-too-late':
      return new LockGrantedTooLateError(key);
    case 'not-a-lock':
      return new NotALockError(key);
    case 'not-held':
      return new InvalidLockError(key);
    case 'expired':
      return new LockExpiredError(key);
    case 'taken-over':
      return new LockTakenOverError(key);
    case 'cancelled':
      return new DistributedLockError(`the call on ${JSON.stringify(key)} was cancelled`);
    case 'invalid-argument':
      return new InvalidArgumentError(err.val);
    case 'release-incomplete':
      return new LockReleaseIncompleteError(key, err.val);
    case 'redis':
      return new LockRedisError(err.val.tag, err.val.val);
    default:
      return new ComponentTrapError(`dlock: an error the package does not know: ${JSON.stringify(err)}`);
  }
}

/**
 * A handle's state as the caller sees it, from the component's lock-info (`info`, kept as the
 * component gave it) read at monotonic time `now`: times in milliseconds since the Unix epoch
 * (numbers), `validUntilNs` on the process' monotonic clock (process.hrtime.bigint()), `fence`
 * (bigint) when the client has fencing on, `status` (`held`, `expired`, `released`,
 * `releasing`, `lost`, `attached`) and `isHeld` as of `now` (WIT `is-held`: held, and validity
 * not run out). `released` overrides the status (markAsReleased: released without a call);
 * then `lost` (the handle's instance trapped or was closed: the handle can do nothing more).
 */
export function fromInfo(info, now, released, lost = false) {
  const isHeld = !released && !lost && localIsHeld(info, now);
  let status = released ? 'released' : lost ? 'lost' : info.status;
  if (status === 'held' && !isHeld) status = 'expired';
  const out = {
    key: info.key,
    token: info.token,
    fence: info.fence ?? null,
    acquiredAt: Number(info.acquiredAtMs),
    expiresAt: Number(info.expiresAtMs),
    validUntilNs: info.validUntilNs,
    isHeld,
    status,
  };
  Object.defineProperty(out, 'toJSON', { value: infoJSON });
  return out;
}

/** `JSON.stringify(handle.info)`: `fence` as a number (fences stay below 9 * 10^15, exact as
 * a double), `validUntilNs` as a decimal string (monotonic nanoseconds pass 2^53 after about
 * 104 days of uptime). */
function infoJSON() {
  return { ...this, fence: this.fence === null ? null : Number(this.fence), validUntilNs: String(this.validUntilNs) };
}

/** Whether a handle holds its lock as far as it knows, without asking Redis (WIT `is-held`). */
export function localIsHeld(info, now) {
  return info.status === 'held' && now < info.validUntilNs;
}

/** The public form of a WIT `key-state`. */
export function fromKeyState(state) {
  switch (state.tag) {
    case 'unlocked':
      return { state: 'unlocked' };
    case 'expiring':
      return { state: 'expiring', ttlMs: Number(state.val) };
    case 'persistent':
      return { state: 'persistent' };
    default:
      return { state: state.tag };
  }
}
