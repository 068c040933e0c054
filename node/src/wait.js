// The host side of `wait-for-release` (the Rust host's host/src/redis/wait.rs and blocking.rs):
// a pause between two acquire attempts that ends as soon as a release of the lock is signalled,
// or when the instance is closed.
//
// dlock's release script pushes one signal on the lock's signal list when waiters have marked
// the key. A listening wait blocks on that list with BLPOP on a connection of its own (never the
// caller's connection, which a blocking command would hold), for at most the time the component
// asked. Redis serves blocked clients first come, first served, so each signal wakes at most
// one blocked waiter. The wait ends at its own time, or when the instance is closed; its BLPOP may run
// on a little longer (Redis times blocked clients out about every 100 ms), and a signal it takes
// then, which nobody will use, is handed back to the next waiter (*passed on*) before the
// connection is reused. With an ioredis Cluster client the connection goes to the primary
// serving the signal list's slot; with a Sentinel client, to the primary the Sentinels name when
// it connects. A failed BLPOP is tried once more on another connection: after a failover the
// old primary answers MOVED (the Cluster client is asked to learn the slots again first) or is
// gone or demoted (a new connection asks the Sentinels again). A wait that cannot block (no
// connection free under the bound, none can be opened, or it broke twice) pauses instead.
import { companionKey } from './contract.js';

/** The longest single wait; the component then tries again (and may wait again). Keeps the
 * timers below setTimeout's limit of 2^31-1 ms. */
export const MAX_WAIT_MS = 2 ** 30;

/** Most wait connections of one DistributedLock in use at once (waits, and BLPOPs running out
 * after their wait ended): the Rust host's default bound (per runtime there). Past it, waits
 * pause. */
export const MAX_BLOCKING_CONNECTIONS = 64;

/** Pushes a signal back for the next waiter (KEYS[1], the signal list), if waiters are still
 * marked (KEYS[2]), living as long as their mark. The host's own script (the Rust host's
 * `PASS_ON`): run by EVAL (it is rare), never offered to a component. */
const PASS_ON = `local left = redis.call('PTTL', KEYS[2])
if left > 0 then
  redis.call('LPUSH', KEYS[1], '1')
  redis.call('PEXPIRE', KEYS[1], left)
  return 1
end
return 0`;

/** What a wait connection changes of the caller's client's options: no reconnecting (a broken
 * connection is dropped, a later wait opens another), no queueing, and no client-side timeout
 * that would cut a BLPOP short (each wait bounds its own). */
const CONNECTION = Object.freeze({
  lazyConnect: true,
  enableOfflineQueue: false,
  retryStrategy: () => null,
  reconnectOnError: () => false,
  maxRetriesPerRequest: 0,
  autoResubscribe: false,
  autoResendUnfulfilledCommands: false,
  enableAutoPipelining: false,
  commandTimeout: undefined,
  socketTimeout: undefined,
  blockingTimeout: undefined,
});

/** Resolves to `value` after `ms`; `clear()` stops it. */
function timer(ms, value) {
  let id;
  const promise = new Promise((resolve) => {
    id = setTimeout(resolve, Math.max(0, Math.ceil(ms)), value);
  });
  return { promise, clear: () => clearTimeout(id) };
}

/** Whether waits on `redis` can block: an ioredis client (of one server, or of the primary a
 * Sentinel names, whose duplicates ask the Sentinels again when they connect) or Cluster. */
function canListen(redis) {
  return redis.isCluster || typeof redis.duplicate === 'function';
}

/** The Redis Cluster hash slot of `key`: CRC16/XMODEM of its hash tag (the first `{...}` with
 * something in it) or of the whole key, of its UTF-8 bytes, modulo 16384. */
export function keySlot(key) {
  let bytes = Buffer.from(key, 'utf8');
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/** The client a wait connection on `signal` duplicates: `redis`, or in a Cluster the primary
 * serving the list's slot, as the Cluster client knows it (null when it does not). */
function clientFor(redis, signal) {
  if (!redis.isCluster) return redis;
  const primary = redis.slots[keySlot(signal)]?.[0];
  if (primary === undefined) return null;
  return redis.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === primary) ?? null;
}

/**
 * The wait connections of one DistributedLock (blocking.rs `BlockingPool` and its permits):
 * duplicates of the caller's ioredis client (in a Cluster, of the primary serving the signal
 * list's slot), opened on demand, at most `MAX_BLOCKING_CONNECTIONS` in use, idle ones kept
 * for reuse per server. They never keep the process alive (a wait's own timer does, while it
 * waits); `close` closes them.
 */
export class BlockingPool {
  constructor(redis) {
    this.redis = redis;
    /** Idle connections by the client they duplicate. */
    this.idle = new Map();
    /** The client each connection duplicates. */
    this.origin = new WeakMap();
    this.inUse = 0;
    this.closed = false;
  }

  /** A connected connection for one BLPOP on `signal` (idle or new), counted in use until
   * `giveBack` or `discard`; null when the bound is reached, no server can be named, it cannot
   * connect, or the pool is closed. */
  async take(signal) {
    if (this.closed || this.inUse >= MAX_BLOCKING_CONNECTIONS) return null;
    const client = clientFor(this.redis, signal);
    if (client === null) return null;
    this.inUse += 1;
    const idle = this.idle.get(client) ?? [];
    const reused = idle.pop();
    if (reused !== undefined) return reused;
    let conn = null;
    try {
      conn = client.duplicate(CONNECTION);
      this.origin.set(conn, client);
      conn.on('error', () => {}); // its failures reach the waits as failed commands
      conn.once('end', () => {
        const list = this.idle.get(client) ?? [];
        const i = list.indexOf(conn);
        if (i >= 0) list.splice(i, 1);
      });
      await conn.connect();
    } catch {
      this.inUse -= 1;
      conn?.disconnect();
      return null;
    }
    conn.stream?.unref?.();
    return conn;
  }

  /** The idle connections, of every server. */
  get idleConnections() {
    return [...this.idle.values()].flat();
  }

  /** Takes back a connection whose BLPOP was answered. */
  giveBack(conn) {
    this.inUse -= 1;
    if (this.closed || conn.status !== 'ready') return conn.disconnect();
    const client = this.origin.get(conn);
    if (!this.idle.has(client)) this.idle.set(client, []);
    this.idle.get(client).push(conn);
  }

  /** Takes back a connection that failed or stopped answering, and closes it. */
  discard(conn) {
    this.inUse -= 1;
    conn.disconnect();
  }

  /** Closes the idle connections now, those in use once their BLPOP is answered. */
  close() {
    this.closed = true;
    for (const list of this.idle.values()) for (const conn of list.splice(0)) conn.disconnect();
  }
}

/** The waits of one component instance (one at a time, as its calls). */
export class Waits {
  /**
   * @param redis the caller's ioredis client
   * @param policy a resolved policy: its command timeout bounds a BLPOP's reply beyond the wait,
   *   and the pass-on script
   * @param pool the DistributedLock's BlockingPool
   */
  constructor(redis, policy, pool) {
    this.redis = redis;
    this.policy = policy;
    this.pool = pool;
    this.cancel = null; // ends the wait in progress with `cancelled`
    this.closed = false;
  }

  /** One wait on lock key `key` (checked by the caller) for at most `timeoutMs` (a bigint):
   * resolves to the WIT `wake` (`released`, `timed-out`, `cancelled`). */
  async wait(key, timeoutMs, listen) {
    if (this.closed) return 'cancelled';
    const ms = timeoutMs > BigInt(MAX_WAIT_MS) ? MAX_WAIT_MS : Number(timeoutMs);
    const until = performance.now() + ms;
    const end = timer(ms, 'timed-out');
    const cancelled = new Promise((resolve) => {
      this.cancel = () => resolve('cancelled');
    });
    const pause = () => Promise.race([end.promise, cancelled]);
    try {
      if (!listen || !canListen(this.redis)) return await pause();
      const [signal, waiters] = [companionKey(key, 'signal'), companionKey(key, 'waiters')];
      const wake = await this.listen(signal, waiters, until, pause);
      if (wake !== null) return wake;
      if (this.redis.isCluster) {
        const learnt = new Promise((resolve) => this.redis.refreshSlotsCache(() => resolve(null)));
        const ended = await Promise.race([learnt, pause()]);
        if (ended !== null) return ended;
      }
      return (await this.listen(signal, waiters, until, pause)) ?? (await pause());
    } finally {
      end.clear();
      this.cancel = null;
    }
  }

  /** Blocks on `signal` until the wait ends (`pause()` settles); pauses instead when no
   * connection can be had; null when the BLPOP failed. */
  async listen(signal, waiters, until, pause) {
    const taking = this.pool.take(signal);
    const conn = await Promise.race([taking, pause()]);
    if (typeof conn === 'string') {
      // The wait ended first: the connection, if it comes, is for the next wait.
      taking.then((c) => c !== null && this.pool.giveBack(c));
      return conn;
    }
    if (conn === null) return pause();
    const left = until - performance.now();
    if (left <= 0) {
      this.pool.giveBack(conn);
      return 'timed-out';
    }
    // Redis reads the timeout in seconds, with millisecond precision (0 would block forever).
    const seconds = (Math.max(left, 1) / 1000).toFixed(3);
    let listening = true;
    const popped = new Promise((resolve) => {
      // The first of the reply, the failure and the guard settles the wait and hands the
      // connection back, once: closing a dead connection also fails its BLPOP.
      let settled = false;
      const settle = (wake, healthy) => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        if (healthy) this.pool.giveBack(conn);
        else this.pool.discard(conn);
        resolve(wake);
      };
      // A connection that has not answered this long after Redis's own timeout is dead.
      const guard = setTimeout(() => settle(null, false), left + this.policy.commandTimeoutMs);
      guard.unref();
      conn.blpop(signal, seconds).then(
        (reply) => {
          if (reply === null) return settle('timed-out', true);
          if (listening && !this.closed && !settled) return settle('released', true);
          this.passOn(signal, waiters);
          return settle('cancelled', true);
        },
        () => settle(null, false),
      );
    });
    try {
      return await Promise.race([popped, pause()]);
    } finally {
      listening = false;
    }
  }

  /** Hands a signal a waiter took but will not use to the next waiter (best effort, within the
   * command timeout). */
  passOn(signal, waiters) {
    const t = timer(this.policy.commandTimeoutMs, null);
    Promise.race([this.redis.eval(PASS_ON, 2, signal, waiters), t.promise])
      .catch(() => {})
      .finally(t.clear);
  }

  /** The instance is closed or discarded: the wait in progress ends with `cancelled`, later
   * ones at once. A BLPOP still running passes on a signal it takes. */
  close() {
    this.closed = true;
    this.cancel?.();
  }
}

/**
 * The waits of one component instance over a quorum (the Rust host's `first_wake`): a
 * listening wait blocks at every primary at once, since a release reaches them one by one and
 * a woken attempt that found some still held marked itself there again. The first `released`
 * ends it; the others' waits end then (`cancelled`), while their BLPOPs run out by themselves
 * and pass on a signal they take (closing them could lose one that Redis hands to a closing
 * connection). A plain pause needs one primary's.
 */
export class QuorumWaits {
  /** @param waits a `Waits` per primary */
  constructor(waits) {
    this.waits = waits;
  }

  /** As `Waits.wait`, at every primary: `released` from any, else how they all ended. */
  wait(key, timeoutMs, listen) {
    if (!listen) return this.waits[0].wait(key, timeoutMs, false);
    return new Promise((resolve, reject) => {
      let left = this.waits.length;
      let ended = false;
      const end = (settle, outcome) => {
        ended = true;
        for (const w of this.waits) w.cancel?.();
        settle(outcome);
      };
      for (const w of this.waits) {
        w.wait(key, timeoutMs, true).then(
          (wake) => {
            left -= 1;
            if (!ended && (wake === 'released' || left === 0)) end(resolve, wake);
          },
          (e) => {
            if (!ended) end(reject, e);
          },
        );
      }
    });
  }

  /** As `Waits.close`, at every primary. */
  close() {
    for (const w of this.waits) w.close();
  }
}
