// The WASI the component gets, and nothing more: monotonic and wall clocks, random, and a
// pollable whose `block` waits for a duration.
//
// `block` never holds the caller's event loop: under JSPI it awaits a timer (the component's
// stack is suspended meanwhile); in the worker backend it blocks the worker thread only
// (Atomics.wait), never the thread that owns the Redis client.
import { getRandomValues } from 'node:crypto';
import { MAX_RANDOM_BYTES } from './contract.js';

const hrtime = process.hrtime.bigint;

/** The monotonic clock the component reads (nanoseconds, CLOCK_MONOTONIC, the same in every
 * thread of the process): lock handles compare their `valid-until` against it. */
export const monotonicNow = hrtime;

/** The longest single wait `block` performs before it re-checks its deadline (setTimeout's
 * limit is 2^31-1 ms). */
const MAX_WAIT_MS = 2 ** 30;

function makePollableClass(blockUntil) {
  return class Pollable {
    /** @param {bigint} deadline monotonic nanoseconds */
    constructor(deadline) {
      this.deadline = deadline;
    }
    ready() {
      return hrtime() >= this.deadline;
    }
    block() {
      return blockUntil(this.deadline);
    }
  };
}

async function sleepUntilAsync(deadline) {
  for (;;) {
    const left = deadline - hrtime();
    if (left <= 0n) return;
    // Round up to whole milliseconds: a timer may fire up to 1 ms early relative to hrtime.
    const ms = Math.min(MAX_WAIT_MS, Number((left + 999_999n) / 1_000_000n));
    await new Promise((resolve) => setTimeout(resolve, ms));
  }
}

let sleepCell = null;
function sleepUntilSync(deadline, onSleep) {
  sleepCell ??= new Int32Array(new SharedArrayBuffer(4));
  if (onSleep !== undefined) {
    const left = deadline - hrtime();
    if (left > 0n) onSleep(Number(left) / 1e6);
  }
  for (;;) {
    const left = deadline - hrtime();
    if (left <= 0n) return;
    const ms = Math.min(MAX_WAIT_MS, Number(left) / 1e6);
    Atomics.wait(sleepCell, 0, 0, ms);
  }
}

// Random u64s (the retry schedule's jitter) are drawn from the OS 64 at a time.
const POOL = 64;
let pool = new BigUint64Array(POOL);
let next = POOL;
function getRandomU64() {
  if (next === POOL) {
    getRandomValues(pool);
    next = 0;
  }
  const v = pool[next];
  pool[next++] = 0n;
  return v;
}

function wallNow() {
  const ms = Date.now();
  return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1_000_000 };
}

/**
 * The WASI imports, keyed as jco's `instantiate` wants them.
 * @param {'async' | 'sync'} mode async: `pollable.block` returns a promise (JSPI); sync: it blocks
 *   the current thread (worker backend).
 * @param overrides functions replacing these, by interface (tests only)
 * @param onSleep sync mode: told of each sleep's length (ms) before it starts
 */
export function wasiImports(mode, overrides = {}, onSleep = undefined) {
  const Pollable = makePollableClass(mode === 'async' ? sleepUntilAsync : (deadline) => sleepUntilSync(deadline, onSleep));
  const base = {
    'wasi:clocks/monotonic-clock': {
      now: hrtime,
      resolution: () => 1n,
      subscribeDuration: (ns) => new Pollable(hrtime() + ns),
      subscribeInstant: (at) => new Pollable(at),
    },
    'wasi:clocks/wall-clock': {
      now: wallNow,
      resolution: () => ({ seconds: 0n, nanoseconds: 1_000_000 }),
    },
    'wasi:io/poll': {
      Pollable,
    },
    'wasi:random/random': {
      getRandomU64,
      getRandomBytes(len) {
        if (len > BigInt(MAX_RANDOM_BYTES)) {
          throw new Error(`the component asked for ${len} random bytes; the limit is ${MAX_RANDOM_BYTES}`);
        }
        const out = new Uint8Array(Number(len));
        getRandomValues(out);
        return out;
      },
    },
  };
  // Tests replace single functions (a clock that fails, to make the component trap).
  for (const [name, fns] of Object.entries(overrides)) base[name] = { ...base[name], ...fns };
  return base;
}
