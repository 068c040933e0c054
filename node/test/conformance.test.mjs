// The conformance cases of tests/conformance/*.json, run through this package's public API
// with every backend this Node has. The Rust host runs the same files with the same expected
// results (tests/tests/e2e/conformance.rs); the format is in tests/conformance/README.md.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  DistributedLock,
  InvalidArgumentError,
  InvalidLockError,
  LockAcquisitionError,
  LockExpiredError,
  LockTakenOverError,
  LockGrantedTooLateError,
  LockRedisError,
  NotALockError,
} from '../src/index.js';
import { backends, sleep, startRedis } from './helpers.mjs';

const DIR = new URL('../../tests/conformance/', import.meta.url);
/** How long an `until` step polls before the case fails (a hang guard, not a timing check). */
const UNTIL_LIMIT_MS = 10_000;

const files = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
const server = await startRedis();
const admin = server.admin;

/** A `redis` or `until` step that failed: kind `redis` (the command failed) or `until` (the
 * hang guard ran out), as the Rust runner reports them. */
class StepError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** The error kind of the conformance format for an error of this package. */
function kind(e) {
  if (e instanceof StepError) return e.kind;
  if (e instanceof LockGrantedTooLateError) return 'granted-too-late';
  if (e instanceof LockAcquisitionError) return 'not-acquired';
  if (e instanceof NotALockError) return 'not-a-lock';
  if (e instanceof LockExpiredError) return 'expired';
  if (e instanceof LockTakenOverError) return 'taken-over';
  if (e instanceof InvalidLockError) return 'not-held';
  if (e instanceof InvalidArgumentError) return 'invalid-argument';
  if (e instanceof LockRedisError) return e.kind;
  return `other (${e?.name}: ${e?.message})`;
}

function infoJson(h) {
  const i = h.info;
  return {
    key: i.key,
    token: i.token,
    fence: i.fence === null ? null : Number(i.fence),
    status: i.status,
    isHeld: h.isHeld, // as the handle answers it
    leaseMs: i.expiresAt - i.acquiredAt,
  };
}

function keyStateJson(s) {
  return s.state === 'expiring' ? { state: s.state, ttlMs: s.ttlMs } : { state: s.state };
}

/** Whether `actual` matches `expected` as the format says. */
function matches(expected, actual) {
  if (expected !== null && typeof expected === 'object' && !Array.isArray(expected)) {
    const keys = Object.keys(expected);
    if (keys.length === 1 && keys[0] === 'range') {
      const [lo, hi] = expected.range;
      return typeof actual === 'number' && lo <= actual && actual <= hi;
    }
    if (actual === null || typeof actual !== 'object') return false;
    return keys.every((k) => k in actual && matches(expected[k], actual[k]));
  }
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && expected.length === actual.length && expected.every((e, i) => matches(e, actual[i]));
  }
  return expected === actual;
}

/** `value` with `$h.token` / `$h.fence` replaced and `{repeat, times}` expanded. */
function resolve(value, handles) {
  if (typeof value === 'string') {
    const m = /^\$([^.]+)\.(token|fence)$/.exec(value);
    if (!m) return value;
    const h = handles.get(m[1]);
    assert.ok(h, `no handle ${m[1]}`);
    return m[2] === 'token' ? h.token : h.fence === null ? null : Number(h.fence);
  }
  if (Array.isArray(value)) return value.map((v) => resolve(v, handles));
  if (value !== null && typeof value === 'object') {
    if ('repeat' in value) return value.repeat.repeat(value.times);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v, handles)]));
  }
  return value;
}

/** A step on the case's plain connection (`redis`, `until`, `elapse`); `undefined` for other
 * ops. */
async function rawStep(step) {
  switch (step.op) {
    case 'redis':
      return raw(step.cmd);
    case 'until': {
      const started = performance.now();
      for (;;) {
        const got = await raw(step.cmd);
        const reached = step.contains !== undefined ? typeof got === 'string' && got.includes(step.contains) : matches(step.equals, got);
        if (reached) return null;
        if (performance.now() - started > UNTIL_LIMIT_MS) throw new StepError('until', `still ${JSON.stringify(got)} after ${UNTIL_LIMIT_MS} ms`);
        await sleep(5);
      }
    }
    case 'elapse': {
      // The event is the clock itself (a lease running out): never earlier than `ms`, on the
      // monotonic clock the component reads.
      const end = process.hrtime.bigint() + BigInt(step.ms) * 1_000_000n;
      while (process.hrtime.bigint() < end) await sleep(Number((end - process.hrtime.bigint()) / 1_000_000n) + 1);
      return null;
    }
    default:
      return undefined;
  }
}

async function raw(cmd) {
  const [name, ...args] = cmd.map(String);
  try {
    return await admin.call(name, ...args);
  } catch (e) {
    throw new StepError('redis', e.message);
  }
}

/** Runs one case on a flushed server; throws at the first step that does not come out as
 * expected. */
async function runCase(c, backend) {
  const redis = server.client();
  const locks = [];
  const clients = new Map();
  const handles = new Map();
  const make = (options) => {
    const lock = new DistributedLock(redis, { backend, ...options, policy: c.policy ?? {} });
    locks.push(lock);
    return lock;
  };
  try {
    for (const [name, options] of Object.entries(c.clients ?? { default: {} })) {
      clients.set(name, make(resolve(options, handles)));
    }
    const keep = (step, h) => {
      if (step.as) handles.set(step.as, h);
      return 'handle';
    };
    const client = (step) => {
      const l = clients.get(step.client ?? 'default');
      assert.ok(l, `no client ${step.client}`);
      return l;
    };
    const handle = (step) => {
      const h = handles.get(step.handle);
      assert.ok(h, `no handle ${step.handle}`);
      return h;
    };
    const run = async (step) => {
      switch (step.op) {
        case 'acquire':
          return keep(step, await client(step).acquire(step.key, step.ttlMs));
        case 'tryAcquire': {
          const h = await client(step).tryAcquire(step.key, step.ttlMs);
          return h === null ? null : keep(step, h);
        }
        case 'waitForLock':
          return keep(step, await client(step).waitForLock(step.key, step.timeoutMs, step.ttlMs));
        case 'isLocked':
          return client(step).isLocked(step.key);
        case 'keyState':
          return keyStateJson(await client(step).keyState(step.key));
        case 'attach':
          return keep(step, await client(step).attach(step.key, step.token));
        case 'release':
          // This package rejects a release that found the lock gone; the format has it as
          // the release's outcome, as the WIT does.
          try {
            await handle(step).release();
            return 'released';
          } catch (e) {
            if (e instanceof LockExpiredError) return 'expired';
            if (e instanceof LockTakenOverError) return 'taken-over';
            throw e;
          }
        case 'extend':
          await handle(step).extend(step.ttlMs);
          return null;
        case 'info':
          return infoJson(handle(step));
        case 'client':
          clients.set(step.name, make(step.options));
          return null;
        case 'during': {
          // The inner step, and meanwhile the side steps; the inner step's outcome is the step's.
          const side = (async () => {
            for (const sideStep of step.side) {
              try {
                if ((await rawStep(sideStep)) === undefined) throw new Error('side steps are redis, until, elapse');
              } catch (e) {
                throw new StepError('side', `side step ${JSON.stringify(sideStep)}: ${e.kind ?? 'error'}: ${e.message}`);
              }
            }
          })();
          const [main, sideDone] = await Promise.allSettled([run(step.step), side]);
          if (sideDone.status === 'rejected') throw sideDone.reason;
          if (main.status === 'rejected') throw main.reason;
          return main.value;
        }
        case 'redis':
        case 'until':
        case 'elapse':
          return rawStep(step);
        default:
          throw new Error(`unknown op ${step.op}`);
      }
    };
    for (const [i, template] of c.steps.entries()) {
      const step = resolve(template, handles);
      let outcome;
      try {
        outcome = { ok: await run(step) };
      } catch (e) {
        outcome = { error: kind(e), message: e.message };
      }
      const want = step.expect ?? {};
      let good;
      if ('ok' in want) good = 'ok' in outcome && matches(want.ok, outcome.ok);
      else if ('error' in want) good = outcome.error === want.error && (want.contains === undefined || outcome.message.includes(want.contains));
      else good = 'ok' in outcome;
      assert.ok(good, `step ${i} ${step.op}: expected ${JSON.stringify(want)}, got ${JSON.stringify(outcome)}`);
    }
  } finally {
    await Promise.all(locks.map((l) => l.close()));
    redis.disconnect();
  }
}

for (const backend of backends()) {
  describe(`conformance (${backend})`, () => {
    for (const file of files) {
      const doc = JSON.parse(readFileSync(new URL(file, DIR), 'utf8'));
      describe(file, () => {
        for (const c of doc.cases) {
          test(c.name, async () => {
            // A case that failed half-way may have left its clients paused.
            await admin.call('CLIENT', 'UNPAUSE');
            await admin.flushall();
            await runCase(c, backend);
          });
        }
      });
    }
  });
}

test('the case files are there', () => {
  const count = files.reduce((n, f) => n + JSON.parse(readFileSync(new URL(f, DIR), 'utf8')).cases.length, 0);
  assert.ok(count >= 40, `only ${count} cases`);
});
