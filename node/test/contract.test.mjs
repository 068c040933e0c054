// The original package's API (../../shared/SEED-API.md) as Node users see it: classes, promises,
// getters, error classes, options; against a real redis-server, for every backend this Node can
// run. The lock's behaviour itself is checked by the conformance cases (conformance.test.mjs),
// which the Rust host runs too.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { randomUUID } from 'node:crypto';
import {
  DistributedLock,
  DistributedLockError,
  InvalidArgumentError,
  InvalidLockError,
  LockAcquisitionError,
  LockGrantedTooLateError,
  LockHandle,
  LockRedisError,
  NotALockError,
} from '../src/index.js';
import { monotonicNow } from '../src/wasi.js';
import { MAX_DURATION_MS } from '../src/contract.js';
import { backends, rejection, scriptCalls as countScriptCalls, startRedis, until } from './helpers.mjs';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// At the top level: `after` hooks registered here run when the whole file is done.
const server = await startRedis();
const redis = server.client();
const admin = server.admin; // a connection of its own: never queued behind a paused call

const scriptCalls = () => countScriptCalls(redis);

/** Whether Redis holds a client's command back (CLIENT PAUSE): the call has reached Redis. */
async function pausedCall() {
  return /^blocked_clients:[1-9]/m.test(await admin.info('clients'));
}

/** Resolves once Redis has seen one more script call than `before` (the caller's attempt). */
const attempted = (before) => until('an attempt to reach Redis', async () => (await scriptCalls()) > before);

for (const backend of backends()) {
  describe(`contract (${backend})`, () => {
    const locks = [];
    const make = (options = {}) => {
      const l = new DistributedLock(redis, { backend, ...options });
      locks.push(l);
      return l;
    };
    after(() => Promise.all(locks.map((l) => l.close())));
    let n = 0;
    const key = (what) => `t:${backend}:${what}:${n++}`;

    test('acquire stores the token alone with a PX expiry; info and isHeld are local', async () => {
      const lock = make();
      assert.equal(lock.backend, backend);
      const k = key('acquire');
      const before = Date.now();
      const h = await lock.acquire(k, 5000);
      assert.ok(h instanceof LockHandle);
      assert.match(h.token, UUID_V4);
      assert.equal(await redis.get(k), h.token);
      const pttl = await redis.pttl(k);
      assert.ok(pttl > 0 && pttl <= 5000, `pttl ${pttl}`);
      assert.equal(h.isHeld, true);
      const info = h.info;
      assert.equal(info.key, k);
      assert.equal(info.token, h.token);
      assert.equal(info.isHeld, true);
      assert.equal(info.status, 'held');
      assert.equal(info.fence, null);
      // Wall-clock times for display: the component's wall clock, read when the instance
      // started, advanced by the monotonic clock (so only roughly Date.now()).
      assert.ok(info.acquiredAt >= before - 1000, `acquiredAt ${info.acquiredAt}`);
      assert.equal(info.expiresAt - info.acquiredAt, 5000);
      assert.equal(typeof info.validUntilNs, 'bigint');
      assert.ok(info.validUntilNs > process.hrtime.bigint());
      await h.release();
      assert.equal(await redis.exists(k), 0);
      assert.equal(h.isHeld, false);
      assert.equal(h.info.status, 'released');
    });

    test('tryAcquire: a handle, or null when busy, after one attempt', async () => {
      const lock = make({ retryCount: 5, retryDelayMs: 200 });
      const k = key('try');
      const h = await lock.tryAcquire(k, 5000);
      assert.ok(h);
      const before = await scriptCalls();
      assert.equal(await lock.tryAcquire(k, 5000), null);
      assert.equal((await scriptCalls()) - before, 1, 'one attempt, no retry');
      await h.release();
      const again = await lock.tryAcquire(k, 5000);
      assert.ok(again);
      await again.release();
    });

    test('acquire retries, then LockAcquisitionError (an Error, a DistributedLockError)', async () => {
      const lock = make({ retryCount: 3, retryDelayMs: 5 });
      const k = key('backoff');
      const holder = await lock.acquire(k, 10000);
      const before = await scriptCalls();
      const err = await rejection(lock.acquire(k, 1000));
      assert.ok(err instanceof LockAcquisitionError, err);
      assert.ok(err instanceof DistributedLockError);
      assert.ok(err instanceof Error);
      assert.equal(err.name, 'LockAcquisitionError');
      assert.equal(err.key, k);
      assert.equal(err.retryable, false);
      assert.equal((await scriptCalls()) - before, 4, 'attempt 1 and 3 retries');
      await holder.release();
    });

    test('acquire succeeds on a retry once the holder releases', async () => {
      // retries enough for any machine: the holder lets go once the first attempt was refused
      const lock = make({ retryCount: 1_000_000, retryDelayMs: 5, maxRetryDelayMs: 20 });
      const k = key('retry');
      const holder = await lock.acquire(k, 60_000);
      const before = await scriptCalls();
      const acquiring = lock.acquire(k, 1000);
      await attempted(before);
      await holder.release();
      const h = await acquiring;
      assert.equal(h.isHeld, true);
      await h.release();
    });

    test('waitForLock: acquires once released; LockAcquisitionError at the deadline, never before it', async () => {
      const lock = make({ retryDelayMs: 20 });
      const k = key('wait');
      const holder = await lock.acquire(k, 60_000);
      const before = await scriptCalls();
      const waiting = lock.waitForLock(k, 60_000, 1000);
      await attempted(before);
      await holder.release();
      const h = await waiting;
      assert.equal(h.isHeld, true);
      // The component gives up when its monotonic clock (this process' hrtime, which
      // monotonicNow reads) has passed its start + 300 ms; it started after `started` and
      // the rejection comes after it gave up: on any machine, at least 300 ms on that clock.
      const started = monotonicNow();
      const err = await rejection(lock.waitForLock(k, 300, 1000));
      const ended = monotonicNow();
      assert.ok(err instanceof LockAcquisitionError, err);
      assert.ok(ended - started >= 300_000_000n, 'gave up before its deadline');
      await h.release();
    });

    test('the errors of 0.2.0: LockGrantedTooLateError is a retryable LockAcquisitionError; NotALockError is neither', async () => {
      const lock = make({ retryCount: 0 });
      const k = key('late');
      await lock.isLocked(k); // scripts loaded: one round trip per attempt from here
      // The attempt is held back by a pause until its 50 ms lease has run out for sure: it was
      // sent before Redis held it, so its lease ends at most 50 ms after that was seen.
      await admin.call('CLIENT', 'PAUSE', '60000', 'WRITE');
      let late;
      try {
        late = rejection(lock.tryAcquire(k, 50));
        await until('the attempt to be held by the pause', pausedCall);
        const seen = monotonicNow();
        await until('the attempt\'s lease to run out', () => monotonicNow() - seen > 50_000_000n);
      } finally {
        await admin.call('CLIENT', 'UNPAUSE');
      }
      late = await late;
      assert.ok(late instanceof LockGrantedTooLateError, late);
      assert.ok(late instanceof LockAcquisitionError);
      assert.equal(late.retryable, true);
      assert.equal(late.key, k);
      const h = key('hash');
      await redis.hset(h, 'f', 'v');
      const notALock = await rejection(lock.acquire(h, 1000));
      assert.ok(notALock instanceof NotALockError, notALock);
      assert.ok(!(notALock instanceof LockAcquisitionError));
      assert.equal(notALock.retryable, false);
      assert.equal(notALock.key, h);
      await redis.del(h);
    });

    test('isLocked and keyState see any holder of the convention', async () => {
      const lock = make();
      const k = key('state');
      assert.equal(await lock.isLocked(k), false);
      assert.deepEqual(await lock.keyState(k), { state: 'unlocked' });
      await redis.set(k, 'someone-else', 'PX', 5000);
      assert.equal(await lock.isLocked(k), true);
      const st = await lock.keyState(k);
      assert.equal(st.state, 'expiring');
      assert.equal(typeof st.ttlMs, 'number');
      assert.ok(st.ttlMs > 0 && st.ttlMs <= 5000);
      assert.equal(await lock.tryAcquire(k, 1000), null);
      await redis.set(k, 'forever');
      assert.equal(await lock.isLocked(k), true);
      assert.deepEqual(await lock.keyState(k), { state: 'persistent' });
      await redis.del(k);
    });

    test('release of a handle that no longer owns the key: InvalidLockError, the key untouched', async () => {
      const lock = make();
      const k = key('stolen');
      const h = await lock.acquire(k, 5000);
      await redis.set(k, 'new-owner', 'PX', 5000);
      const err = await rejection(h.release());
      assert.ok(err instanceof InvalidLockError, err);
      assert.equal(await redis.get(k), 'new-owner');
      assert.equal(h.isHeld, false);
      assert.equal(h.info.status, 'lost');
      const again = await rejection(h.release());
      assert.ok(again instanceof InvalidLockError);
      await redis.del(k);
    });

    test('double release: InvalidLockError without touching Redis', async () => {
      const lock = make();
      const k = key('double');
      const h = await lock.acquire(k, 5000);
      await h.release();
      await redis.set(k, h.token, 'PX', 5000); // were Redis asked, this would delete it
      const err = await rejection(h.release());
      assert.ok(err instanceof InvalidLockError);
      assert.equal(await redis.get(k), h.token);
      await redis.del(k);
    });

    test('extend sets the TTL from now and moves expiresAt; rejects bad durations', async () => {
      const lock = make();
      const k = key('extend');
      const h = await lock.acquire(k, 1000);
      const before = h.info.expiresAt;
      await h.extend(8000);
      const pttl = await redis.pttl(k);
      assert.ok(pttl > 1000 && pttl <= 8000, `pttl ${pttl}`);
      // sent later than the acquire, with a 7 s longer lease
      assert.ok(h.info.expiresAt >= before + 7000, `expiresAt moved from ${before} to ${h.info.expiresAt}`);
      assert.ok((await rejection(h.extend(0))) instanceof InvalidArgumentError);
      assert.ok((await rejection(h.extend(-5))) instanceof InvalidArgumentError);
      assert.ok((await rejection(h.extend(1.5))) instanceof InvalidArgumentError);
      await h.release();
      const err = await rejection(h.extend(1000));
      assert.ok(err instanceof InvalidLockError);
    });

    test('extend of a lost lock: InvalidLockError, the handle lost', async () => {
      const lock = make();
      const k = key('extend-lost');
      const h = await lock.acquire(k, 5000);
      await redis.del(k);
      assert.ok((await rejection(h.extend(1000))) instanceof InvalidLockError);
      assert.equal(h.info.status, 'lost');
      assert.equal(await redis.exists(k), 0);
    });

    test('a handle expires on its own clock: isHeld turns false without a Redis call', async () => {
      const lock = make();
      const k = key('expire');
      const h = await lock.acquire(k, 120);
      assert.equal(h.isHeld, true);
      // the handle's own end of validity, on the clock isHeld reads
      await until('the handle\'s validity to end', () => monotonicNow() >= h.info.validUntilNs);
      assert.equal(h.isHeld, false);
      assert.equal(h.info.status, 'expired');
      await until('the key to expire in Redis', async () => (await redis.exists(k)) === 0);
      assert.ok((await rejection(h.release())) instanceof InvalidLockError);
    });

    test('markAsReleased: local only, the lock stays until its TTL', async () => {
      const lock = make();
      const k = key('mark');
      const h = await lock.acquire(k, 5000);
      h.markAsReleased();
      assert.equal(h.isHeld, false);
      assert.equal(h.info.status, 'released');
      assert.equal(await redis.get(k), h.token);
      assert.ok((await rejection(h.release())) instanceof InvalidLockError);
      await redis.del(k);
    });

    test('fencing: every acquisition of a key gets a larger fence', async () => {
      const lock = make({ fencing: true });
      const k = key('fence');
      const a = await lock.acquire(k, 5000);
      assert.equal(typeof a.fence, 'bigint');
      await a.release();
      const b = await lock.acquire(k, 5000);
      assert.ok(b.fence > a.fence, `${b.fence} > ${a.fence}`);
      assert.equal(b.info.fence, b.fence);
      await b.release();
      assert.equal(await redis.get(`{${k}}:fence`), String(b.fence));
    });

    test('keyPrefix: the Redis key is prefix + key; info keeps the caller\'s key', async () => {
      const lock = make({ keyPrefix: 'app:' });
      const k = key('prefix');
      const h = await lock.acquire(k, 5000);
      assert.equal(await redis.get(`app:${k}`), h.token);
      assert.equal(h.info.key, k);
      assert.equal(await lock.isLocked(k), true);
      await h.release();
    });

    test('attach: not held until extended, then release works', async () => {
      const lock = make();
      const k = key('attach');
      const token = randomUUID();
      await redis.set(k, token, 'PX', 5000);
      const h = await lock.attach(k, token);
      assert.equal(h.isHeld, false);
      assert.equal(h.info.status, 'attached');
      await h.extend(3000);
      assert.equal(h.isHeld, true);
      await h.release();
      assert.equal(await redis.exists(k), 0);
    });

    test('attach to a lock of another client (node-redlock, redis-py) needs policy.allowForeignTokens', async () => {
      const k = key('foreign');
      await redis.set(k, 'redlock-value-123', 'PX', 5000);
      const strict = make();
      const denied = await rejection((await strict.attach(k, 'redlock-value-123')).release());
      assert.ok(denied instanceof LockRedisError, denied);
      assert.equal(denied.kind, 'denied');
      assert.equal(await redis.get(k), 'redlock-value-123');
      const open = make({ policy: { allowForeignTokens: true } });
      await (await open.attach(k, 'redlock-value-123')).release();
      assert.equal(await redis.exists(k), 0);
    });

    test('non-ASCII keys round-trip byte for byte', async () => {
      const lock = make({ keyPrefix: 'préfixe:' });
      const k = `${key('utf8')}-clé-🔒`;
      const h = await lock.acquire(k, 5000);
      assert.equal(h.info.key, k);
      assert.equal(await redis.get(`préfixe:${k}`), h.token);
      await h.release();
    });

    test('an instance whose memory grows keeps working (2500 live handles, 500-byte keys)', async () => {
      const lock = make({ maxInstances: 1 });
      const base = key('grow').padEnd(490, 'x');
      const handles = [];
      for (let i = 0; i < 2500; i++) handles.push(await lock.tryAcquire(`${base}${i}`, 20000));
      for (const [i, h] of handles.entries()) {
        assert.equal(h.info.key, `${base}${i}`);
        assert.equal(h.isHeld, true);
      }
      await Promise.all(handles.map((h) => h.release()));
      assert.equal(await redis.exists(`${base}0`), 0);
    });

    test('bad arguments and options are refused before Redis', async () => {
      assert.throws(() => make({ retryDelayMs: 0 }), InvalidArgumentError);
      assert.throws(() => make({ keyPrefix: 'a\nb' }), InvalidArgumentError);
      assert.throws(() => make({ retryCount: -1 }), InvalidArgumentError);
      assert.throws(() => make({ retryCont: 3 }), InvalidArgumentError);
      assert.throws(() => new DistributedLock(null), InvalidArgumentError);
      const lock = make();
      // every method returns a promise, argument errors included
      await assert.rejects(lock.acquire(42, 1000), InvalidArgumentError);
      await assert.rejects(lock.acquire('k', -1), InvalidArgumentError);
      await assert.rejects(lock.tryAcquire('k', 1.5), InvalidArgumentError);
      await assert.rejects(lock.waitForLock('k', -1, 1000), InvalidArgumentError);
      await assert.rejects(lock.attach('k', 7), InvalidArgumentError);
      await assert.rejects(lock.isLocked(null), InvalidArgumentError);
      assert.ok((await rejection(lock.acquire(key('zero'), 0))) instanceof InvalidArgumentError);
    });

    test('calls made together reach Redis in one pipeline, each with its own outcome, NOSCRIPT included', async () => {
      const client = server.client();
      // Counts the commands of each pipeline this package sends on `client`.
      const batches = [];
      const pipeline = client.pipeline.bind(client);
      client.pipeline = (...a) => {
        const p = pipeline(...a);
        const exec = p.exec.bind(p);
        p.exec = (...e) => {
          batches.push(p.length);
          return exec(...e);
        };
        return p;
      };
      const lock = new DistributedLock(client, { backend });
      locks.push(lock);
      const taken = key('taken');
      await redis.set(taken, 'someone-else', 'PX', 60_000);
      for (const flush of [false, true]) {
        if (flush) await admin.script('FLUSH');
        batches.length = 0;
        const keys = Array.from({ length: 16 }, (_, i) => key(`batch${i}`));
        const got = await Promise.all([...keys, taken].map((k) => lock.tryAcquire(k, 10_000)));
        assert.equal(got.at(-1), null, 'the held key stays busy');
        for (const [i, h] of got.slice(0, -1).entries()) assert.equal(await redis.get(keys[i]), h.token);
        // Under JSPI the calls run in one turn of the event loop; the worker backend's arrive as
        // messages from their threads, one turn each, and rarely share one.
        if (backend === 'jspi') assert.ok(batches.some((n) => n > 1), `batches: ${batches}`);
        await Promise.all(got.slice(0, -1).map((h) => h.release()));
        for (const k of keys) assert.equal(await redis.exists(k), 0);
      }
    });

    test('a bad duration is refused with one message naming the argument and showing the value', async () => {
      const lock = make();
      const ttl = 'ttlMs must be positive, a whole number of milliseconds, got';
      for (const [given, shown] of [[-1, '-1'], [0, '0'], ['100', 'the string "100"'], [1.5, '1.5'], [-1n, '-1n']]) {
        await assert.rejects(lock.tryAcquire(key('bad'), given), { name: 'InvalidArgumentError', message: `${ttl} ${shown}` });
      }
      await assert.rejects(lock.waitForLock(key('bad'), '5', 1000), {
        message: 'timeoutMs must be non-negative, a whole number of milliseconds, got the string "5"',
      });
      const max = Number(MAX_DURATION_MS) + 1;
      await assert.rejects(lock.acquire(key('bad'), max), { message: `ttlMs of ${max} ms is over the limit of ${MAX_DURATION_MS} ms` });
      const h = await lock.acquire(key('ext'), 1000);
      await assert.rejects(h.extend(0), { message: 'ms must be positive, a whole number of milliseconds, got 0' });
      await h.release();
    });
  });
}
