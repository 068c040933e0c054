// The `dlock:lock/redis` import over the caller's ioredis client: EVALSHA, and on NOSCRIPT one
// EVAL of the allowed source (which runs the script and caches it in one step), bounded by the
// policy's command timeout, the reply flattened within the policy's byte budget, failures
// classified as the Rust host does (host/src/redis_eval.rs).
//
// jco's convention for an import returning `result<T, E>`: return (or resolve) T, throw (or
// reject with) E as a plain object: an Error would be taken for a trap.
import { admitScript, checkRequest, classify, flatten } from './policy.js';

const TIMEOUT = Object.freeze({ tag: 'timeout' });

/**
 * The command timeout of every call in flight with one timeout length, without a timer per call:
 * calls with the same timeout expire in the order they started, so they wait in a FIFO and a
 * single timer is armed for the oldest. (A timer per call, with Promise.race, cost about 3 us
 * of CPU per call at concurrency 32: see NOTES.md.)
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
        e.reject(TIMEOUT);
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

const deadlinesByClient = new WeakMap(); // redis client -> Map(timeout ms -> Deadlines)

function deadlinesFor(redis, ms) {
  let byMs = deadlinesByClient.get(redis);
  if (byMs === undefined) deadlinesByClient.set(redis, (byMs = new Map()));
  let d = byMs.get(ms);
  if (d === undefined) byMs.set(ms, (d = new Deadlines(ms)));
  return d;
}

/**
 * Runs an allowed script (`entry` from the policy's allowlist) on `redis`. Resolves to the WIT
 * `value`, or rejects with the WIT `error`.
 */
export function evalScript(redis, policy, entry, keys, args) {
  return new Promise((resolve, reject) => {
    const call = { settled: false, reject, deadline: 0 };
    const deadlines = deadlinesFor(redis, policy.commandTimeoutMs);
    deadlines.add(call);
    const onReply = (reply) => {
      if (!deadlines.settle(call)) return;
      const r = flatten(reply, policy.maxReplyBytes);
      if (r.tag === 'ok') resolve(r.val);
      else reject(r.val);
    };
    const onError = (err) => {
      if (!deadlines.settle(call)) return;
      reject(classify(err));
    };
    const n = keys.length;
    redis.evalshaBuffer(entry.sha1, n, ...keys, ...args).then(onReply, (err) => {
      if (err?.name === 'ReplyError' && err.message.startsWith('NOSCRIPT') && !call.settled) {
        // EVAL runs the script and caches it in one step (a SCRIPT LOAD then EVALSHA could
        // lose it to a SCRIPT FLUSH between the two).
        redis.evalBuffer(entry.source, n, ...keys, ...args).then(onReply, onError);
      } else {
        onError(err);
      }
    });
  });
}

/** The `script` resource the component holds: an allowlist entry. */
export class Script {
  constructor(entry) {
    this.entry = entry;
  }
}

/** The policy's refusals, as the WIT `denied` error. */
export function refusal(policy, window, keys, args) {
  if (!window.admit(policy.maxEvalsPerSecond)) {
    return { tag: 'denied', val: `more than ${policy.maxEvalsPerSecond} Redis calls in one second` };
  }
  const reason = checkRequest(policy, keys, args);
  return reason === null ? null : { tag: 'denied', val: reason };
}

/**
 * The `dlock:lock/redis` import for one component instance running in this thread (JSPI:
 * `redisEval` returns a promise the component's stack waits on).
 * @param {{redis, policy, window}} ctx the instance's host state
 */
export function redisImportsAsync(ctx) {
  class HostScript extends Script {
    static load(source) {
      const entry = admitScript(ctx.policy, source);
      if (typeof entry === 'string') throw { tag: 'denied', val: entry };
      return new HostScript(entry);
    }
  }
  return {
    Script: HostScript,
    redisEval(script, keys, args) {
      const denied = refusal(ctx.policy, ctx.window, keys, args);
      if (denied !== null) return Promise.reject(denied);
      return evalScript(ctx.redis, ctx.policy, script.entry, keys, args);
    },
  };
}
