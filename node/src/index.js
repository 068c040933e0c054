// The public API: the original package's (`@lilith/distributed-lock`), over the dlock component.
import { createJspiInstance, jspiAvailable } from './backend-jspi.js';
import { probeInstance } from './backend-sync.js';
import { createWorkerInstance } from './backend-worker.js';
import {
  ClientClosedError,
  ComponentTrapError,
  DistributedLockError,
  InvalidArgumentError,
  InvalidLockError,
  LockExpiredError,
  LockTakenOverError,
} from './errors.js';
import { MAX_QUORUM_NODES } from './contract.js';
import { componentInfo, resolvePolicy, TokenBucket } from './policy.js';
import { Pool } from './pool.js';
import { BlockingPool } from './wait.js';
import { monotonicNow } from './wasi.js';
import { durationMs, fromInfo, fromKeyState, fromSemaphoreState, LOCK_OPTION_NAMES, localIsHeld, toError, toLockOptions, toPermits } from './wit.js';

export * from './errors.js';

/** The component this package runs: `{ sha256, bytes, jco }` (the SHA-256 of the .wasm file it
 * was built from, the Rust host's bundled component). */
export const COMPONENT = Object.freeze({
  sha256: componentInfo().sha256,
  bytes: componentInfo().bytes,
  jco: componentInfo().jco,
});

const OTHER_OPTIONS = new Set(['policy', 'backend', 'maxInstances']);
const DEFAULT_MAX_INSTANCES = { jspi: 64, worker: 8 };

/** Which backend runs the component: `jspi` where this Node has JSPI, else `worker`. */
export function defaultBackend() {
  return jspiAvailable() ? 'jspi' : 'worker';
}

function jspiMissing() {
  const [major] = process.versions.node.split('.').map(Number);
  const hint = major === 24 ? ' (Node 24 releases before JSPI was on by default need --experimental-wasm-jspi)' : '';
  return new InvalidArgumentError(`backend 'jspi' needs WebAssembly JSPI, which Node ${process.version} does not have${hint}; use backend 'worker' or 'auto'`);
}

function checkKey(key) {
  if (typeof key !== 'string') throw new InvalidArgumentError(`key must be a string, got ${typeof key}`);
  return key;
}

/** Runs `fn`; a synchronous throw (an argument refused before anything runs) becomes a
 * rejection, so that every method returns a promise as the original package's did. */
function promised(fn) {
  try {
    return fn();
  } catch (e) {
    return Promise.reject(e);
  }
}

function isClient(redis) {
  return redis !== null && typeof redis === 'object' && typeof redis.evalshaBuffer === 'function';
}

/** Where an ioredis client connects (`host:port/db`, the socket path, or the primary a
 * Sentinel names), to tell primaries apart; null when it does not say. */
function address(client) {
  const o = client.options ?? {};
  if (Array.isArray(o.sentinels) && o.sentinels.length > 0) return `the primary the Sentinels name ${o.name}`;
  if (o.path) return `${o.path}/${o.db ?? 0}`;
  return o.port === undefined ? null : `${o.host ?? 'localhost'}:${o.port}/${o.db ?? 0}`;
}

/** The clients of a quorum, checked: 2 to MAX_QUORUM_NODES ioredis clients of one server each
 * (not a Cluster), no primary twice. */
function quorumOf(clients) {
  if (clients.length < 2 || clients.length > MAX_QUORUM_NODES) {
    throw new InvalidArgumentError(`quorum mode takes 2 to ${MAX_QUORUM_NODES} independent Redis primaries (3 or 5 in practice), not ${clients.length}; for one Redis, pass its client itself`);
  }
  const seen = new Set();
  for (const [i, c] of clients.entries()) {
    if (!isClient(c)) throw new InvalidArgumentError(`quorum mode takes ioredis clients; element ${i} is not one`);
    if (c.isCluster) throw new InvalidArgumentError(`element ${i} of the quorum is a Redis Cluster client: a Cluster is one store, not an independent primary`);
    const at = address(c) ?? c;
    if (seen.has(at)) throw new InvalidArgumentError(`element ${i} of the quorum names ${typeof at === 'string' ? at : 'a client'} again: each primary must count once`);
    seen.add(at);
  }
  return clients;
}

/** A component's error, or a trap, as the error this package throws. */
function rethrow(e) {
  if (e instanceof DistributedLockError) throw e;
  throw new ComponentTrapError(`dlock: the component failed: ${e?.message ?? e}`, { cause: e });
}

/**
 * What is left of `timeout` (milliseconds, bigint), as a function the pool calls when the call
 * reaches its instance: the time spent queued, or waiting for a worker to start, counts against
 * the timeout.
 */
function timeLeft(timeout) {
  const since = performance.now();
  return () => {
    const waited = BigInt(Math.floor(performance.now() - since));
    return timeout > waited ? timeout - waited : 0n;
  };
}

// Handles that are dropped without release give their component resource back.
const finalizer = new FinalizationRegistry(({ slot, id }) => slot.dropLater(id));

export class DistributedLock {
  #pool;
  #backend;
  #blocking;

  /**
   * @param redis an ioredis client (or Cluster) the caller owns; this package never closes it.
   *   A list of 2 to `MAX_QUORUM_NODES` ioredis clients, one per independent primary, is
   *   quorum mode (Redlock: a lock is held when a majority of them granted it)
   * @param options `retryCount`, `retryDelayMs`, `maxRetryDelayMs`, `jitter`, `keyPrefix`,
   *   `fencing`, `safetyMarginMs` (the component's lock options, defaults from the component);
   *   `policy` (what the component may do on Redis); `backend` (`auto` | `jspi` | `worker`);
   *   `maxInstances` (most component instances, i.e. concurrent calls, of this client; an
   *   acquire or waitForLock when every instance holds handles gets one more: see Pool.pick)
   */
  constructor(redis, options = {}) {
    if (!isClient(redis) && !Array.isArray(redis)) {
      throw new InvalidArgumentError('DistributedLock needs an ioredis client (Redis or Cluster), or a list of them for quorum mode');
    }
    const clients = Array.isArray(redis) ? quorumOf(redis) : [redis];
    for (const name of Object.keys(options)) {
      if (!LOCK_OPTION_NAMES.includes(name) && !OTHER_OPTIONS.has(name)) {
        throw new InvalidArgumentError(`unknown option ${JSON.stringify(name)}`);
      }
    }
    const { lock } = probeInstance();
    const witOptions = toLockOptions(lock.defaultOptions(), options);
    // The component checks the options (a zero delay, a control character in the prefix...).
    try {
      lock.Client.create(witOptions)[Symbol.dispose]();
    } catch (e) {
      if (e?.payload) throw toError(e.payload);
      rethrow(e);
    }
    let policy;
    try {
      policy = resolvePolicy(options.policy ?? {});
    } catch (e) {
      throw new InvalidArgumentError(e.message);
    }
    let backend = options.backend ?? 'auto';
    if (backend === 'auto') backend = defaultBackend();
    if (backend === 'jspi' && !jspiAvailable()) throw jspiMissing();
    if (backend !== 'jspi' && backend !== 'worker') throw new InvalidArgumentError(`unknown backend ${JSON.stringify(backend)}`);
    const max = options.maxInstances ?? DEFAULT_MAX_INSTANCES[backend];
    if (!Number.isSafeInteger(max) || max < 1) throw new InvalidArgumentError(`maxInstances must be a positive integer, got ${max}`);
    const create = backend === 'jspi' ? createJspiInstance : createWorkerInstance;
    // The byte rate is metered per DistributedLock over its life, across its instances; so are
    // the wait connections.
    const bytes = new TokenBucket(policy.maxBytesPerSecond);
    const blocking = clients.map((c) => new BlockingPool(c));
    const target = clients.length === 1 ? clients[0] : clients;
    this.#pool = new Pool(() => create({ redis: target, policy, witOptions, bytes, blocking }), max, () => new ClientClosedError());
    this.#blocking = blocking;
    this.#backend = backend;
  }

  /** `jspi` or `worker`. */
  get backend() {
    return this.#backend;
  }

  #handleOp(op, key, a, b) {
    return this.#pool.run(op, key, a, b).then((r) => {
      if (r.err) throw toError(r.err, key);
      if (r.ok === null) return null;
      return new LockHandle(r.slot, r.ok, r.info);
    }, rethrow);
  }

  /** Acquires `key` for `ttlMs`, retrying with exponential backoff; `LockAcquisitionError` when
   * every attempt found it held. */
  acquire(key, ttlMs) {
    return promised(() => this.#handleOp('acquire', checkKey(key), durationMs('ttlMs', ttlMs, false)));
  }

  /** One attempt: a handle, or `null` when the lock is held by someone else. */
  tryAcquire(key, ttlMs) {
    return promised(() => this.#handleOp('tryAcquire', checkKey(key), durationMs('ttlMs', ttlMs, false)));
  }

  /** Tries until acquired or `timeoutMs` have passed (`LockAcquisitionError`); by default a
   * release of the lock ends each wait between attempts (`wakeOnRelease`). */
  waitForLock(key, timeoutMs, ttlMs) {
    return promised(() => {
      const left = timeLeft(durationMs('timeoutMs', timeoutMs));
      return this.#handleOp('waitForLock', checkKey(key), left, durationMs('ttlMs', ttlMs, false));
    });
  }

  /** A handle for a lock taken elsewhere with `token` (no Redis call): `release` and `extend`
   * work if the key still holds the token; `isHeld` is false until the first `extend`. */
  attach(key, token) {
    return promised(() => {
      if (typeof token !== 'string') throw new InvalidArgumentError('token must be a string');
      return this.#handleOp('attach', checkKey(key), token);
    });
  }

  async #query(op, key) {
    let r;
    try {
      r = await this.#pool.run(op, checkKey(key));
    } catch (e) {
      rethrow(e);
    }
    if (r.err) throw toError(r.err, key);
    return r.ok;
  }

  /** True when the key exists (held by anyone following the convention). */
  isLocked(key) {
    return this.#query('isLocked', key);
  }

  /** What Redis says about the key: `{state: 'unlocked'} | {state: 'expiring', ttlMs} |
   * {state: 'persistent'}` (a key without expiry: not set by a client of the convention). */
  async keyState(key) {
    return fromKeyState(await this.#query('keyState', key));
  }

  /** The counting semaphore at `key` with `limit` permits (1 to 1000; checked by each call): at
   * most `limit` permits held at once by every client of the key together, each acquisition a
   * lease returned as a `LockHandle`. Refused in quorum mode. */
  semaphore(key, limit) {
    return new Semaphore(this, checkKey(key), limit);
  }

  /** @internal */
  permitsOp(op, key, a, b) {
    return this.#handleOp(op, key, a, b);
  }

  /** @internal */
  async semaphoreStateOf(key) {
    return fromSemaphoreState(await this.#query('semaphoreState', key));
  }

  /** Ends the component instances (and the worker threads of the worker backend) and the waits
   * in progress, and closes the connections waits opened. Final: every later call on this
   * DistributedLock or its handles fails with `ClientClosedError`; calling it again does nothing
   * more. The Redis client stays open: it is the caller's. */
  close() {
    const closing = this.#pool.close();
    for (const pool of this.#blocking) pool.close();
    return closing;
  }
}

/**
 * A counting semaphore (`DistributedLock#semaphore`): `acquire`, `tryAcquire` and `waitFor`
 * take `count` permits (default 1) for `ttlMs` and return a `LockHandle` whose `release` gives
 * them back and `extend` renews them. Waits between attempts are plain backoff (no wake-up on
 * release). Every client of one key must use the same limit.
 */
export class Semaphore {
  #lock;

  /** @internal */
  constructor(lock, key, limit) {
    this.#lock = lock;
    this.key = key;
    this.limit = limit;
  }

  /** Takes `count` permits, retrying with backoff; `LockAcquisitionError` when every attempt
   * found too few free. */
  acquire(ttlMs, count = 1) {
    return promised(() => this.#lock.permitsOp('acquirePermits', this.key, toPermits(this.limit, count), durationMs('ttlMs', ttlMs, false)));
  }

  /** One attempt: a handle, or `null` when too few permits are free. */
  tryAcquire(ttlMs, count = 1) {
    return promised(() => this.#lock.permitsOp('tryAcquirePermits', this.key, toPermits(this.limit, count), durationMs('ttlMs', ttlMs, false)));
  }

  /** Tries until `count` permits are taken or `timeoutMs` have passed (`LockAcquisitionError`). */
  waitFor(timeoutMs, ttlMs, count = 1) {
    return promised(() => {
      const left = timeLeft(durationMs('timeoutMs', timeoutMs));
      const ttl = durationMs('ttlMs', ttlMs, false);
      return this.#lock.permitsOp('waitForPermits', this.key, { ...toPermits(this.limit, count), ttlMs: ttl }, left);
    });
  }

  /** `{ held, firstEndsInMs }`: the permits held by everyone, and the milliseconds until the
   * first of their leases ends (null when none is held). */
  state() {
    return this.#lock.semaphoreStateOf(this.key);
  }
}

export class LockHandle {
  #slot;
  #id;
  #info; // the component's lock-info after the last operation, as jco gives it
  #released = false;
  #dropped = false;
  #pending = 0; // calls of this handle in flight or waiting
  #tail = null; // settles when the last of them has

  /** @internal */
  constructor(slot, id, info) {
    this.#slot = slot;
    this.#id = id;
    this.#info = info;
    finalizer.register(this, { slot, id }, this);
  }

  /** The handle's resource is gone or going: `inInstance` when the instance still has it. */
  #gone(inInstance) {
    if (this.#dropped) return;
    this.#dropped = true;
    finalizer.unregister(this);
    if (inInstance) this.#slot.dropLater(this.#id);
    else this.#slot.forget();
  }

  /**
   * Runs `op` on this handle after the handle's earlier calls have settled: calls on one handle
   * are serialised (a release that overlaps an extend waits for it, and a second release finds
   * the handle released). `op` runs once it is this call's turn.
   */
  #serial(op) {
    const run = () => {
      if (this.#slot.closed) return Promise.reject(this.#slot.refusal());
      // A handle whose resource is gone was released (here or by markAsReleased): the
      // component would answer `not-held` without calling Redis.
      if (this.#dropped) return Promise.reject(new InvalidLockError(this.#info.key));
      return op();
    };
    const p = this.#pending === 0 ? run() : this.#tail.then(run, run);
    this.#pending += 1;
    const settled = () => {
      this.#pending -= 1;
    };
    this.#tail = p.then(settled, settled);
    return p;
  }

  #after(r) {
    if (r.info !== null) this.#info = r.info;
    if (r.err) throw toError(r.err, this.#info.key);
  }

  /** Deletes the lock if the key still holds this handle's token. When it does not, nothing in
   * Redis changed and the promise rejects with an `InvalidLockError`: `LockExpiredError` (the
   * key was gone: the lease had run out), `LockTakenOverError` (another owner's token), or a
   * plain one when this handle released it already. Safe to retry after a `LockRedisError`
   * whose outcome is unknown. The next waiter on the lock (of this package or the Rust host) is
   * woken. */
  release() {
    return this.#serial(() =>
      this.#slot.run('release', this.#id).then((r) => {
        this.#after(r);
        if (r.ok === 'expired') throw new LockExpiredError(this.#info.key);
        if (r.ok === 'taken-over') throw new LockTakenOverError(this.#info.key);
        // The instance dropped the released handle's resource already.
        this.#gone(false);
        this.#released = true;
      }, rethrow),
    );
  }

  /** Sets the lock's TTL to `ms` from now if the key still holds this handle's token. The
   * argument is checked first (`InvalidArgumentError`), whatever the handle's state. */
  extend(ms) {
    return promised(() => {
      const ttl = durationMs('ms', ms, false);
      return this.#serial(() => this.#slot.run('extend', this.#id, ttl).then((r) => this.#after(r), rethrow));
    });
  }

  /** Marks the handle released without touching Redis (the lock expires with its TTL). */
  markAsReleased() {
    this.#released = true;
    this.#gone(true);
  }

  /** Whether this handle holds the lock as far as it knows, without asking Redis. A handle
   * whose instance trapped (or whose DistributedLock was closed) can do nothing more: false. */
  get isHeld() {
    return !this.#released && this.#slot.failed === null && localIsHeld(this.#info, monotonicNow());
  }

  /** `{ key, token, acquiredAt, expiresAt, isHeld, fence, status, validUntilNs }`. */
  get info() {
    return fromInfo(this.#info, monotonicNow(), this.#released, this.#slot.failed !== null);
  }

  get key() {
    return this.#info.key;
  }

  get token() {
    return this.#info.token;
  }

  /** The fencing token (bigint) when the client has `fencing` on, else null. */
  get fence() {
    return this.#info.fence ?? null;
  }
}
