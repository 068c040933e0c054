// The `dlock:lock/redis` import over the caller's ioredis client: the policy's checks (rates,
// caps, namespace, the bundled scripts' argument shapes), then EVALSHA and on NOSCRIPT one EVAL
// of the allowed source (which runs the script and caches it in one step), bounded by the
// policy's command timeout, the reply flattened within the policy's byte budget, failures
// classified as the Rust host does (host/src/redis/eval.rs, reply.rs, link.rs, grants.rs).
//
// This always runs in the thread that owns the ioredis client: the JSPI backend calls it from
// the component's import directly, the worker backend on the worker's message. The same holds
// for `wait-for-release` (wait.js), policed here like `redis-eval`.
//
// jco's convention for an import returning `result<T, E>`: return (or resolve) T, throw (or
// reject with) E as a plain object: an Error would be taken for a trap.
import { checkLockKey, companionKey } from './contract.js';
import { admitScript, checkRequest, checkRole, classify, flatten, TokenBucket } from './policy.js';
import { BlockingPool, QuorumWaits, Waits } from './wait.js';

const TIMEOUT = Object.freeze({ tag: 'timeout' });

/**
 * The command timeout of every call in flight with one timeout length, without a timer per call:
 * calls with the same timeout expire in the order they started, so they wait in a FIFO and a
 * single timer is armed for the oldest. (A timer per call, with Promise.race, cost about 3 us
 * of CPU per call at concurrency 32: see docs/history/NODE.md.)
 */
class Deadlines {
  constructor(ms) {
    this.ms = ms;
    this.queue = [];
    this.head = 0;
    this.timer = null;
    this.pending = 0;
    this.fire = () => this.expire();
  }

  /** Tracks `entry` ({settled, reject}) until `settle(entry)` or its time is up. */
  add(entry) {
    entry.deadline = performance.now() + this.ms;
    this.queue.push(entry);
    this.pending += 1;
    if (this.timer === null) this.arm(this.ms);
  }

  /** Marks `entry` answered; false when it had timed out already. */
  settle(entry) {
    if (entry.settled) return false;
    entry.settled = true;
    if (--this.pending === 0) {
      // Nothing in flight: no timer left to hold the process open.
      clearTimeout(this.timer);
      this.timer = null;
      this.queue = [];
      this.head = 0;
    }
    return true;
  }

  arm(ms) {
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(ms)));
  }

  expire() {
    this.timer = null;
    const now = performance.now();
    const q = this.queue;
    while (this.head < q.length) {
      const e = q[this.head];
      if (!e.settled) {
        if (e.deadline > now) break;
        e.settled = true;
        this.pending -= 1;
        e.timedOut();
      }
      q[this.head++] = undefined;
    }
    if (this.head === q.length) {
      this.queue = [];
      this.head = 0;
    } else {
      if (this.head > 1024) {
        this.queue = q.slice(this.head);
        this.head = 0;
      }
      this.arm(this.queue[this.head].deadline - now);
    }
  }
}

/**
 * What this package keeps per ioredis client, shared by every DistributedLock on it: the
 * deadline queues (one per timeout length) and the count of command timeouts in a row. A
 * connection that stops answering without being closed (a vanished peer, a firewall dropping
 * packets) never errors by itself; after `policy.reconnectAfterTimeouts` timeouts in a row the
 * client is made to reconnect (ioredis `disconnect(true)`), as the Rust host replaces its
 * connection after 3.
 */
class Link {
  constructor(redis) {
    this.redis = redis;
    this.deadlines = new Map();
    this.timeoutsInARow = 0;
    /** How many times this package made the client reconnect (for tests and diagnostics). */
    this.reconnects = 0;
    /**
     * The client's connection: a new one after each close (ours or not). A call counts toward
     * the timeouts in a row of the connection it was sent on only: a call sent before a
     * reconnect that times out after it says nothing about the new connection.
     */
    this.generation = 0;
    redis.on?.('close', () => this.newConnection());
    /**
     * The EVALSHAs sent in this turn of the event loop, written together at its end (one
     * pipeline: one write to the socket for all of them, where each took a write of its own,
     * which was half of the main thread's time at concurrency 32). Null when none is waiting.
     * A Cluster client sends each alone (its pipelines take keys of one slot only).
     */
    this.batch = null;
    this.batching = !redis.isCluster && typeof redis.pipeline === 'function';
    this.flush = () => this.send();
  }

  /** Sends EVALSHA `sha` with `keys` and `args` (replies as Buffers) with the others of this
   * turn of the event loop; `onReply` gets the reply, `onError` the failure. */
  evalsha(sha, keys, args, onReply, onError) {
    if (!this.batching) {
      this.redis.evalshaBuffer(sha, keys.length, ...keys, ...args).then(onReply, onError);
      return;
    }
    if (this.batch === null) {
      this.batch = [];
      process.nextTick(this.flush);
    }
    this.batch.push({ sha, keys, args, onReply, onError });
  }

  send() {
    const calls = this.batch;
    this.batch = null;
    if (calls.length === 1) {
      const [c] = calls;
      this.redis.evalshaBuffer(c.sha, c.keys.length, ...c.keys, ...c.args).then(c.onReply, c.onError);
      return;
    }
    const pipeline = this.redis.pipeline();
    for (const c of calls) pipeline.evalshaBuffer(c.sha, c.keys.length, ...c.keys, ...c.args);
    pipeline.exec().then(
      (results) => {
        for (let i = 0; i < calls.length; i++) {
          const [err, reply] = results?.[i] ?? [new Error('the pipeline answered without this call'), null];
          if (err) calls[i].onError(err);
          else calls[i].onReply(reply);
        }
      },
      (err) => {
        for (const c of calls) c.onError(err);
      },
    );
  }

  newConnection() {
    this.generation += 1;
    this.timeoutsInARow = 0;
  }

  deadlinesFor(ms) {
    let d = this.deadlines.get(ms);
    if (d === undefined) this.deadlines.set(ms, (d = new Deadlines(ms)));
    return d;
  }

  /** The outcome of a call sent on connection `generation`: outcomes of older connections are
   * ignored. */
  noteOutcome(timedOut, limit, generation) {
    if (generation !== this.generation) return;
    if (!timedOut) {
      this.timeoutsInARow = 0;
      return;
    }
    this.timeoutsInARow += 1;
    if (limit > 0 && this.timeoutsInARow >= limit) {
      this.newConnection();
      this.reconnects += 1;
      try {
        this.redis.disconnect(true);
      } catch {
        // a client that cannot reconnect keeps failing its calls, which are bounded anyway
      }
    }
  }
}

const links = new WeakMap(); // ioredis client -> Link

/** This package's state for one ioredis client. */
export function linkFor(redis) {
  let link = links.get(redis);
  if (link === undefined) links.set(redis, (link = new Link(redis)));
  return link;
}

/**
 * Runs an allowed script (`entry` from the policy's allowlist) on `redis`. Resolves to the WIT
 * `value`, or rejects with the WIT `error`. Notes on the client's link whether it timed out;
 * hands a reply to `host.replied` (grant bookkeeping) before resolving.
 */
export function evalScript(redis, policy, entry, keys, args, host = null) {
  const link = linkFor(redis);
  const generation = link.generation;
  return new Promise((resolve, reject) => {
    const call = {
      settled: false,
      deadline: 0,
      timedOut() {
        link.noteOutcome(true, policy.reconnectAfterTimeouts, generation);
        reject(TIMEOUT);
      },
    };
    const deadlines = link.deadlinesFor(policy.commandTimeoutMs);
    deadlines.add(call);
    const onReply = (reply) => {
      if (!deadlines.settle(call)) return;
      link.noteOutcome(false, 0, generation);
      const r = flatten(reply, policy.maxReplyBytes);
      if (host !== null && r.tag === 'ok') host.replied(entry.role, keys, args, r.val);
      if (r.tag === 'ok') resolve(r.val);
      else reject(r.val);
    };
    const onError = (err) => {
      if (!deadlines.settle(call)) return;
      const e = classify(err);
      link.noteOutcome(e.tag === 'timeout', policy.reconnectAfterTimeouts, generation);
      reject(e);
    };
    link.evalsha(entry.sha1, keys, args, onReply, (err) => {
      if (err?.name === 'ReplyError' && err.message.startsWith('NOSCRIPT') && !call.settled) {
        // EVAL runs the script and caches it in one step (a SCRIPT LOAD then EVALSHA could
        // lose it to a SCRIPT FLUSH between the two).
        redis.evalBuffer(entry.source, keys.length, ...keys, ...args).then(onReply, onError);
      } else {
        onError(err);
      }
    });
  });
}

/** The bundled scripts whose replies settle a noted grant (grants.rs). */
const GRANT_ROLES = new Set(['acquire', 'release', 'semaphore_acquire', 'semaphore_release']);

/** Most (key, token) pairs remembered for one call (grants.rs `MAX_GRANTS`). */
const MAX_GRANTS = 64;

/**
 * The Redis side of one component instance: the policy's meters (the `redis-eval` bucket of
 * the current call into the component; the byte bucket shared by every instance of one
 * DistributedLock over its life), the locks the current call may have taken (`grants`, as
 * the bundled acquire and release scripts go by), released if the call traps, and its waits
 * for a release (`close` when the instance is closed or discarded).
 */
export class RedisHost {
  /**
   * @param redis the caller's ioredis client, or in quorum mode the list of one client per
   *   independent primary
   * @param policy a resolved policy
   * @param bytes the DistributedLock's byte-rate TokenBucket
   * @param blocking the DistributedLock's wait connections (a BlockingPool per client); null:
   *   pools of this instance's own, closed with it
   */
  constructor(redis, policy, bytes, blocking = null) {
    this.clients = Array.isArray(redis) ? redis : [redis];
    this.redis = this.clients[0];
    this.policy = policy;
    this.bytes = bytes;
    this.evals = new TokenBucket(policy.maxEvalsPerSecond);
    this.grants = [];
    this.out = { bytes: 0 };
    this.ownPools = blocking === null ? this.clients.map((c) => new BlockingPool(c)) : null;
    const pools = this.ownPools ?? (Array.isArray(blocking) ? blocking : [blocking]);
    const waits = this.clients.map((c, i) => new Waits(c, policy, pools[i]));
    this.waits = waits.length === 1 ? waits[0] : new QuorumWaits(waits);
  }

  /** `node-count`: the independent primaries (1 but in quorum mode). */
  get nodeCount() {
    return this.clients.length;
  }

  /** A new call into the component: its `redis-eval` bucket is full again, and no lock is
   * noted yet. */
  begin() {
    this.evals.available = this.evals.capacity;
    this.evals.refilled = null;
    if (this.grants.length > 0) this.grants = [];
  }

  /** The call into the component succeeded (its result passed the host's checks): the locks
   * it took are the caller's now, as handles, and must never be given back by this host. */
  end() {
    if (this.grants.length > 0) this.grants = [];
  }

  /**
   * The policy's checks of one call of `entry` that runs on `calls` primaries (each counts
   * against the call and byte rates): null, or the WIT `denied` error.
   */
  police(entry, keys, args, calls) {
    const policy = this.policy;
    const now = performance.now();
    if (!this.evals.take(calls, now)) {
      return { tag: 'denied', val: `more than ${policy.maxEvalsPerSecond} Redis calls in one second` };
    }
    let reason = checkRequest(policy, keys, args, this.out);
    if (reason === null && entry.role !== null) reason = checkRole(policy, entry.role, keys, args);
    if (reason !== null) return { tag: 'denied', val: reason };
    if (!this.bytes.take(this.out.bytes * calls, now)) {
      return { tag: 'denied', val: `more than ${policy.maxBytesPerSecond} bytes sent to Redis in one second` };
    }
    return null;
  }

  /** One `redis-eval` of an allowed script: resolves to the WIT value, rejects with the WIT
   * error. Denied in quorum mode: one primary of several is no lock. */
  eval(entry, keys, args) {
    if (this.clients.length > 1) {
      return Promise.reject({ tag: 'denied', val: `redis-eval on one of ${this.clients.length} independent primaries: use redis-eval-all` });
    }
    const refused = this.police(entry, keys, args, 1);
    if (refused !== null) return Promise.reject(refused);
    this.noteAcquire(entry.role, keys, args);
    return evalScript(this.redis, this.policy, entry, keys, args, GRANT_ROLES.has(entry.role) ? this : null);
  }

  /**
   * One `redis-eval-all`: the script on every primary at once, policed once for all of them.
   * Resolves to one WIT `result` per primary, in the clients' order; rejects with the WIT
   * error only when the policy refused the call before it reached any primary.
   */
  evalAll(entry, keys, args) {
    if (this.clients.length === 1) return this.eval(entry, keys, args).then(...oneNode);
    const refused = this.police(entry, keys, args, this.clients.length);
    if (refused !== null) return Promise.reject(refused);
    // Over a quorum a grant is given back on every primary (compare-and-delete leaves the
    // others alone), so no single primary's reply forgets it.
    this.noteAcquire(entry.role, keys, args);
    return Promise.all(this.clients.map((c) => evalScript(c, this.policy, entry, keys, args).then(...eachNode)));
  }

  /**
   * One `wait-for-release`, policed like `redis-eval` (the Rust host's wait.rs): the call rate,
   * the key's namespace and form (a lock key, never a companion key), the byte rate; a listening
   * wait needs the key's signal list. Resolves to the WIT `wake`, rejects with the WIT error.
   */
  wait(key, timeoutMs, listen) {
    const policy = this.policy;
    const now = performance.now();
    if (!this.evals.take(1, now)) {
      return Promise.reject({ tag: 'denied', val: `more than ${policy.maxEvalsPerSecond} Redis calls in one second` });
    }
    const reason = checkRequest(policy, [key], [], this.out) ?? checkLockKey(key);
    if (reason !== null) return Promise.reject({ tag: 'denied', val: reason });
    if (!this.bytes.take(this.out.bytes, now)) {
      return Promise.reject({ tag: 'denied', val: `more than ${policy.maxBytesPerSecond} bytes sent to Redis in one second` });
    }
    if (listen && companionKey(key, 'signal') === null) {
      return Promise.reject({ tag: 'denied', val: `the key ${JSON.stringify(key)} has no signal list (a '}' without a hash tag)` });
    }
    return this.waits.wait(key, timeoutMs, listen);
  }

  /** The instance is closed or discarded: its wait in progress ends (`cancelled`), and so do
   * later ones at once. */
  close() {
    this.waits.close();
    for (const pool of this.ownPools ?? []) pool.close();
  }

  /** A reply of a bundled acquire or release script (the lock's or the semaphore's): an
   * acquire that did not grant (busy: 0 or {0, pttl}; not a lock: -1), or any release reply,
   * means the key does not hold the token because of this call. */
  replied(role, keys, args, value) {
    const granted = value.tag === 'int' && value.val > 0n;
    const release = role === 'release' || role === 'semaphore_release';
    if (release ? value.tag === 'int' : !granted) this.forget(keys[0], args[0]);
  }

  /** An acquire about to be sent: its key, token and what it takes (`permits`: the
   * semaphore's count, its fourth argument; null for a lock) are noted. */
  noteAcquire(role, keys, args) {
    if (role === 'acquire') this.note(keys[0], args[0], null);
    else if (role === 'semaphore_acquire') this.note(keys[0], args[0], args[3]);
  }

  note(key, token, permits) {
    if (this.grants.some(([k, t]) => k === key && t === token)) return;
    if (this.grants.length === MAX_GRANTS) this.grants.shift();
    this.grants.push([key, token, permits]);
  }

  forget(key, token) {
    if (this.grants.length === 0) return;
    this.grants = this.grants.filter(([k, t]) => !(k === key && t === token));
  }

  /**
   * The call in progress failed (a trap): gives back, in the background, the locks it may have
   * taken, with the bundled compare-and-delete script (a lock never taken, or since changed
   * hands, is left alone). Locks whose handles earlier calls returned are not touched.
   */
  releaseGrants() {
    const grants = this.grants;
    this.grants = [];
    const script = (role) => [...this.policy.allowed.values()].find((e) => e.role === role);
    if (grants.length === 0) return Promise.resolve();
    return (async () => {
      for (const [key, token, permits] of grants) {
        const release = script(permits === null ? 'release' : 'semaphore_release');
        if (release === undefined) continue;
        const args = permits === null ? [token] : [token, permits];
        for (const client of this.clients) {
          try {
            await evalScript(client, this.policy, release, [key], args);
          } catch {
            // best effort: the lock expires with its TTL
          }
        }
      }
    })();
  }
}

/**
 * `redis-eval-all` on one Redis: the two handlers of `redis-eval`'s promise that turn its
 * outcome into a list of one result. A policy refusal (`denied`) stays the outer error, as in
 * the Rust host.
 */
const oneNode = [
  (val) => [{ tag: 'ok', val }],
  (err) => {
    if (err?.tag === 'denied') throw err;
    return [{ tag: 'err', val: err }];
  },
];

/** One primary's outcome in a `redis-eval-all` over a quorum, as a WIT `result`. */
const eachNode = [(val) => ({ tag: 'ok', val }), (err) => ({ tag: 'err', val: err })];

/** The `script` resource of the `dlock:lock/redis` import under `policy`: `load` admits a
 * source (denied unless the policy's allowlist has it); an instance holds its allowlist entry. */
export function scriptResource(policy) {
  return class Script {
    constructor(entry) {
      this.entry = entry;
    }

    static load(source) {
      const entry = admitScript(policy, source);
      if (typeof entry === 'string') throw { tag: 'denied', val: entry };
      return new Script(entry);
    }
  };
}
