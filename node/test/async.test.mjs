// No call blocks the caller's event loop; calls on different clients run concurrently; calls on
// one component instance are serialised; mutual exclusion holds across clients.
//
// Each test is built so that its outcome depends on the order of events, not on how long
// anything takes: the event that lets a call finish is caused from the event loop while the
// call is pending, so a blocked loop (or serialised calls) would leave the call to its 30 s
// deadline and fail it.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DistributedLock, LockHandle } from '../src/index.js';
import { backends, scriptCalls, sleep, startRedis, until } from './helpers.mjs';

const server = await startRedis();
const admin = server.admin;
const LONG = 30_000; // a deadline no correct run reaches

/** `promise`, with `state.settled` set once it settles (to see what is still pending). */
function tracked(promise) {
  const state = { settled: false };
  state.promise = promise.finally(() => {
    state.settled = true;
  });
  return state;
}

test('control: a blocked event loop runs no timer until it is unblocked', async () => {
  const order = [];
  setTimeout(() => order.push('timer'), 0);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50); // what a blocking host does
  order.push('unblocked');
  await sleep(1);
  assert.deepEqual(order, ['unblocked', 'timer']);
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

    test('a component sleeping between attempts (waitForLock) does not block the event loop', async () => {
      const lock = make(server.client(), { retryDelayMs: 20 });
      const k = key('sleep');
      await admin.set(k, 'other', 'PX', LONG);
      const waiter = tracked(lock.waitForLock(k, LONG, LONG));
      let freedWhilePending = false;
      setTimeout(async () => {
        freedWhilePending = !waiter.settled;
        await admin.del(k);
      }, 30);
      const h = await waiter.promise;
      assert.ok(h instanceof LockHandle);
      assert.ok(freedWhilePending, 'the timer ran only after the wait');
      await h.release();
    });

    test('a component waiting on a Redis reply does not block the event loop', async () => {
      const lock = make(server.client());
      const k = key('slow');
      await lock.isLocked(k);
      await admin.client('PAUSE', LONG, 'WRITE'); // scripts count as writes; UNPAUSE does not
      const call = tracked(lock.tryAcquire(k, 1000));
      let unpausedWhilePending = false;
      setTimeout(async () => {
        unpausedWhilePending = !call.settled;
        await admin.client('UNPAUSE');
      }, 30);
      const h = await call.promise; // a blocked loop could not unpause: the call would time out
      assert.ok(h instanceof LockHandle);
      assert.ok(unpausedWhilePending);
      await h.release();
    });

    test('calls on different clients proceed concurrently', async () => {
      const a = make(server.client(), { retryDelayMs: 20 });
      const b = make(server.client(), { retryDelayMs: 20 });
      const [ka, kb] = [key('ca'), key('cb')];
      await admin.set(ka, 'other', 'PX', LONG);
      await admin.set(kb, 'other', 'PX', LONG);
      const wa = tracked(a.waitForLock(ka, LONG, LONG));
      const wb = tracked(b.waitForLock(kb, LONG, LONG));
      await admin.del(kb);
      const hb = await wb.promise;
      assert.equal(wa.settled, false, 'a is still waiting while b got its lock');
      await admin.del(ka); // freed only once b is done: serialised calls could never get here
      const ha = await wa.promise;
      await Promise.all([ha.release(), hb.release()]);
    });

    test('concurrent calls on one client run on separate instances', async () => {
      const lock = make(server.client(), { retryDelayMs: 20 });
      const keys = Array.from({ length: 6 }, () => key('pool'));
      for (const k of keys) await admin.set(k, 'other', 'PX', LONG);
      const waiters = keys.map((k) => tracked(lock.waitForLock(k, LONG, LONG)));
      // Free the keys last to first, each once the waiter after it is done: each waiter must
      // finish while every earlier one is still waiting.
      const handles = [];
      for (let i = keys.length - 1; i >= 0; i--) {
        await admin.del(keys[i]);
        handles.push(await waiters[i].promise);
        for (let j = 0; j < i; j++) assert.equal(waiters[j].settled, false, `waiter ${j} ended before its key was freed`);
      }
      await Promise.all(handles.map((h) => h.release()));
    });

    test('calls on one instance are serialised, never interleaved', async () => {
      const lock = make(server.client(), { retryDelayMs: 20, maxInstances: 1 });
      const [k1, k2] = [key('s1'), key('s2')];
      await admin.set(k1, 'other', 'PX', LONG);
      await lock.isLocked(k1); // the instance exists and the scripts are loaded
      const order = [];
      const before = await scriptCalls(admin);
      const w1 = lock.waitForLock(k1, LONG, LONG).then((h) => (order.push(1), h));
      const w2 = lock.waitForLock(k2, LONG, LONG).then((h) => (order.push(2), h)); // k2 is free
      // Both calls go over one connection, which keeps order: had the second call run beside
      // the first, its acquire of k2 would have reached Redis before the first call's second
      // attempt (which waits for the first attempt's reply and a retry delay).
      await until('the first call\'s second attempt', async () => (await scriptCalls(admin)) >= before + 2);
      assert.equal(await admin.exists(k2), 0, 'the second call ran while the first was in the instance');
      await admin.del(k1);
      const [h1, h2] = await Promise.all([w1, w2]);
      // the second call starts only once the first has returned, though its key was free all along
      assert.deepEqual(order, [1, 2]);
      await h1.release();
      await h2.release();
    });

    test('a release is not held up by another caller waiting on the same client', async () => {
      const lock = make(server.client(), { retryDelayMs: 20 });
      const k = key('hol');
      const holder = await lock.acquire(k, LONG);
      const waiter = tracked(lock.waitForLock(k, LONG, LONG));
      await holder.release(); // were it queued behind the waiter, neither could finish
      assert.equal(waiter.settled, false);
      const h = await waiter.promise;
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
            await sleep(1); // widen the read-modify-write window
            await redis.set(counter, v + 1);
            await h.release();
          }
        }),
      );
      assert.equal(Number(await admin.get(counter)), 60);
    });
  });
}
