// No call blocks the caller's event loop; calls on different clients run concurrently; calls on
// one component instance are serialised; mutual exclusion holds across clients.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DistributedLock, LockAcquisitionError } from '../src/index.js';
import { backends, rejection, sleep, startRedis, timed } from './helpers.mjs';

const server = await startRedis();
const admin = server.admin;

/** Counts 5 ms interval ticks and the longest gap between two while `fn` runs. */
async function ticksDuring(fn) {
  let ticks = 0;
  let last = performance.now();
  let maxGap = 0;
  const iv = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks += 1;
  }, 5);
  try {
    const { ms } = await timed(fn);
    return { ticks, maxGap: Math.max(maxGap, performance.now() - last), ms };
  } finally {
    clearInterval(iv);
  }
}

test('control: the tick counter sees a blocked event loop', async () => {
  const r = await ticksDuring(async () => {
    await sleep(10);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300); // what a blocking host does
  });
  assert.ok(r.ticks <= 5, `${r.ticks} ticks`);
  assert.ok(r.maxGap >= 290, `gap ${r.maxGap} ms`);
});

for (const backend of backends()) {
  describe(`event loop and concurrency (${backend})`, () => {
    const locks = [];
    const make = (redis, options = {}) => {
      const l = new DistributedLock(redis, { backend, ...options });
      locks.push(l);
      return l;
    };
    after(() => Promise.all(locks.map((l) => l.close())));
    let n = 0;
    const key = (what) => `a:${backend}:${what}:${n++}`;

    test('a component sleeping (waitForLock backoff) does not block the event loop', async () => {
      const lock = make(server.client(), { retryDelayMs: 50 });
      const k = key('sleep');
      await admin.set(k, 'other', 'PX', 10000);
      await lock.isLocked(k); // warm: the instance exists
      const r = await ticksDuring(() => rejection(lock.waitForLock(k, 300, 1000)));
      // 300 ms at one tick per 5 ms is 60 ticks; a blocked loop would see one or two.
      assert.ok(r.ticks >= 30, `${r.ticks} ticks in ${r.ms} ms`);
      assert.ok(r.maxGap < 100, `longest gap between ticks ${r.maxGap} ms`);
    });

    test('a component waiting on a slow Redis reply does not block the event loop', async () => {
      const lock = make(server.client());
      const k = key('slow');
      await lock.isLocked(k);
      await admin.client('PAUSE', 300, 'ALL');
      const r = await ticksDuring(() => lock.tryAcquire(k, 1000));
      assert.ok(r.ms >= 250, `the paused Redis answered after ${r.ms} ms`);
      assert.ok(r.ticks >= 25, `${r.ticks} ticks in ${r.ms} ms`);
      assert.ok(r.maxGap < 100, `longest gap between ticks ${r.maxGap} ms`);
    });

    test('calls on different clients proceed concurrently', async () => {
      const a = make(server.client(), { retryDelayMs: 50 });
      const b = make(server.client(), { retryDelayMs: 50 });
      const [ka, kb] = [key('ca'), key('cb')];
      await admin.set(ka, 'other', 'PX', 10000);
      await admin.set(kb, 'other', 'PX', 10000);
      await Promise.all([a.isLocked(ka), b.isLocked(kb)]); // instances (worker threads) started
      const { ms } = await timed(() =>
        Promise.all([rejection(a.waitForLock(ka, 400, 1000)), rejection(b.waitForLock(kb, 400, 1000))]),
      );
      assert.ok(ms >= 390 && ms < 750, `two 400 ms waits on two clients took ${ms} ms`);
    });

    test('concurrent calls on one client run on separate instances', async () => {
      const lock = make(server.client(), { retryDelayMs: 50 });
      const keys = Array.from({ length: 6 }, () => key('pool'));
      for (const k of keys) await admin.set(k, 'other', 'PX', 10000);
      await Promise.all(keys.map((k) => lock.isLocked(k))); // six instances started
      const { ms, value } = await timed(() => Promise.all(keys.map((k) => rejection(lock.waitForLock(k, 300, 1000)))));
      for (const e of value) assert.ok(e instanceof LockAcquisitionError);
      assert.ok(ms < 800, `six concurrent 300 ms waits took ${ms} ms`);
    });

    test('calls on one instance are serialised, never interleaved', async () => {
      const lock = make(server.client(), { retryDelayMs: 50, maxInstances: 1 });
      const [k1, k2] = [key('s1'), key('s2')];
      await admin.set(k1, 'other', 'PX', 10000);
      await admin.set(k2, 'other', 'PX', 10000);
      const { ms, value } = await timed(() =>
        Promise.all([rejection(lock.waitForLock(k1, 200, 1000)), rejection(lock.waitForLock(k2, 200, 1000))]),
      );
      assert.ok(value.every((e) => e instanceof LockAcquisitionError));
      assert.ok(ms >= 390, `two 200 ms waits on one instance took ${ms} ms: they overlapped`);
      // and the instance is still sound afterwards
      const h = await lock.acquire(key('s3'), 1000);
      await h.release();
    });

    test('a release is not held up by another caller waiting on the same client', async () => {
      const lock = make(server.client(), { retryDelayMs: 20 });
      const k = key('hol');
      const holder = await lock.acquire(k, 10000);
      setTimeout(() => holder.release(), 100);
      const { ms, value: h } = await timed(() => lock.waitForLock(k, 3000, 1000));
      assert.ok(ms < 1000, `the waiter got the lock ${ms} ms later`);
      await h.release();
    });

    test('mutual exclusion: clients on their own connections lose no update', async () => {
      const counter = key('counter');
      const k = key('mutex');
      await admin.set(counter, 0);
      const workers = Array.from({ length: 4 }, () => make(server.client(), { retryCount: 200, retryDelayMs: 2, maxRetryDelayMs: 20, jitter: true }));
      await Promise.all(
        workers.map(async (lock) => {
          const redis = server.client();
          for (let i = 0; i < 15; i++) {
            const h = await lock.acquire(k, 5000);
            const v = Number(await redis.get(counter));
            await sleep(1);
            await redis.set(counter, v + 1);
            await h.release();
          }
        }),
      );
      assert.equal(Number(await admin.get(counter)), 60);
    });
  });
}
