// Lock safety of the package's own machinery (the pool, the backends, the handles): what a
// failed call may give back, concurrent calls on one handle, waits beside held handles, close.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { createWorkerInstance } from '../src/backend-worker.js';
import { ClientClosedError, DistributedLock, InvalidArgumentError, InvalidLockError } from '../src/index.js';
import { resolvePolicy, TokenBucket } from '../src/policy.js';
import { Pool } from '../src/pool.js';
import { awaitReply } from '../src/reply-wait.js';
import { backends, rejection, startRedis, until } from './helpers.mjs';

const server = await startRedis();
const admin = server.admin;
const WIT_OPTIONS = { retryCount: 0, retryDelayMs: 100, maxRetryDelayMs: 5000, jitter: false, keyPrefix: '', fencing: false, safetyMarginMs: 0n, wakeOnRelease: 'wait-for-lock' };

test('worker backend: a worker that dies between calls gives back no lock an earlier call returned', async () => {
  const redis = server.client();
  const policy = resolvePolicy();
  let instance;
  const pool = new Pool(() => (instance = createWorkerInstance({ redis, policy, witOptions: WIT_OPTIONS, bytes: new TokenBucket(policy.maxBytesPerSecond) })), 1);
  const k = `safety:dead-worker:${randomUUID()}`;
  const slot = pool.pick(false);
  const r = await slot.run('acquire', k, 60_000n);
  assert.equal(typeof r.ok, 'number');
  const token = r.info.token;
  // the worker dies between calls (a crash, an OOM kill of the thread)
  const exited = new Promise((resolve) => instance.worker.once('exit', resolve));
  await instance.worker.terminate();
  await exited;
  const e = await rejection(slot.run('isLocked', `safety:other:${randomUUID()}`));
  assert.match(e.message, /worker exited/);
  await slot.givenBack; // what the failed call may have taken is given back by now
  assert.equal(await redis.get(k), token, 'the lock the first call returned as a handle is still held');
  await pool.close();
  await admin.del(k);
});

for (const backend of backends()) {
  describe(`one handle, concurrent calls (${backend})`, () => {
    const locks = [];
    const make = (options = {}) => {
      const l = new DistributedLock(server.client(), { backend, ...options });
      locks.push(l);
      return l;
    };
    after(() => Promise.all(locks.map((l) => l.close())));
    const key = (what) => `safety:${backend}:${what}:${randomUUID()}`;

    test('two overlapping releases: one releases, the other is InvalidLockError; the instance goes on', async () => {
      const lock = make({ maxInstances: 1 });
      const h = await lock.acquire(key('twice'), 60_000);
      const other = await lock.acquire(key('other'), 60_000);
      const [first, second] = await Promise.allSettled([h.release(), h.release()]);
      assert.equal(first.status, 'fulfilled', first.reason);
      assert.equal(second.status, 'rejected');
      assert.ok(second.reason instanceof InvalidLockError, second.reason);
      assert.equal(await admin.exists(h.key), 0);
      // the other handle of the same instance still works
      await other.extend(60_000);
      await other.release();
      assert.equal(await admin.exists(other.key), 0);
    });

    test('an extend overlapping a release runs before it, then the release; other handles unharmed', async () => {
      const lock = make({ maxInstances: 1 });
      const h = await lock.acquire(key('ext-rel'), 60_000);
      const other = await lock.acquire(key('other'), 60_000);
      const [ext, rel, again] = await Promise.allSettled([h.extend(30_000), h.release(), h.extend(30_000)]);
      assert.equal(ext.status, 'fulfilled', ext.reason);
      assert.equal(rel.status, 'fulfilled', rel.reason);
      assert.ok(again.reason instanceof InvalidLockError, again.reason);
      assert.equal(h.isHeld, false);
      assert.equal(await admin.exists(h.key), 0);
      await other.release();
    });
  });
}

for (const backend of backends()) {
  describe(`waits, info, arguments, close (${backend})`, () => {
    const locks = [];
    const make = (options = {}) => {
      const l = new DistributedLock(server.client(), { backend, ...options });
      locks.push(l);
      return l;
    };
    after(() => Promise.all(locks.map((l) => l.close())));
    const key = (what) => `safety:${backend}:${what}:${randomUUID()}`;

    test('a long wait never delays the extend or release of a handle held beside it', async () => {
      // one instance, holding a handle: the wait must not queue in front of that handle's calls
      const lock = make({ maxInstances: 1, retryDelayMs: 10 });
      const h = await lock.acquire(key('held'), 60_000);
      const busy = key('busy');
      await admin.set(busy, 'other', 'PX', 60_000);
      let waitSettled = false;
      const wait = lock.waitForLock(busy, 60_000, 60_000).finally(() => {
        waitSettled = true;
      });
      // Resolves only if the extend does not wait for the wait: the wait ends when the key is
      // deleted, which happens only after the extend and release settled (or after the guard).
      const guard = new Promise((resolve) => setTimeout(resolve, 10_000).unref());
      const ext = h.extend(60_000).then(() => 'extended');
      const first = await Promise.race([ext, guard.then(() => 'the extend waited behind the wait')]);
      assert.equal(first, 'extended');
      assert.equal(waitSettled, false);
      await h.release();
      assert.equal(waitSettled, false);
      await admin.del(busy);
      const w = await wait;
      await w.release();
    });

    test('handle.info is JSON-serialisable', async () => {
      const lock = make({ fencing: true });
      const h = await lock.acquire(key('json'), 60_000);
      const json = JSON.parse(JSON.stringify(h.info));
      assert.equal(json.key, h.key);
      assert.equal(json.token, h.token);
      assert.equal(json.fence, Number(h.fence));
      assert.equal(json.validUntilNs, String(h.info.validUntilNs));
      assert.equal(json.isHeld, true);
      assert.equal(json.status, 'held');
      assert.equal(typeof h.info.validUntilNs, 'bigint', 'the object itself keeps its bigints');
      await h.release();
      assert.equal(JSON.parse(JSON.stringify(h.info)).status, 'released');
    });

    test('extend checks its argument first, whatever the handle state', async () => {
      const lock = make();
      const h = await lock.acquire(key('arg'), 60_000);
      assert.ok((await rejection(h.extend(0))) instanceof InvalidArgumentError);
      await h.release();
      for (const bad of [0, -1, 1.5, 1e13, 'x']) {
        const e = await rejection(h.extend(bad));
        assert.ok(e instanceof InvalidArgumentError, `${bad}: ${e}`);
      }
      assert.ok((await rejection(h.extend(1000))) instanceof InvalidLockError);
    });

    test('close() is final and idempotent: every later call fails with ClientClosedError', async () => {
      const lock = make();
      const h = await lock.acquire(key('close'), 60_000);
      const kept = await lock.acquire(key('close-kept'), 60_000);
      kept.markAsReleased();
      await Promise.all([lock.close(), lock.close()]);
      await lock.close();
      const calls = [
        lock.acquire(key('after'), 1000),
        lock.tryAcquire(key('after'), 1000),
        lock.waitForLock(key('after'), 10, 1000),
        lock.attach(key('after'), randomUUID()),
        lock.isLocked(key('after')),
        lock.keyState(key('after')),
        h.extend(1000),
        h.release(),
      ];
      for (const [i, c] of calls.entries()) {
        const e = await rejection(c);
        assert.ok(e instanceof ClientClosedError, `call ${i}: ${e}`);
        assert.equal(e.inFlight, false, `call ${i} began after the close`);
      }
      assert.equal(await admin.get(h.key), h.token, 'closing releases nothing');
      assert.equal(await admin.exists(key('after')), 0);
      await admin.del(h.key, kept.key);
    });

    test('a release or extend in flight when close() comes says it may have been carried out', async () => {
      for (const call of ['release', 'extend']) {
        const lock = make({ maxInstances: 1 });
        const h = await lock.acquire(key(`in-flight-${call}`), 60_000);
        // Writes wait in Redis: the call is under way when close() comes.
        await admin.call('CLIENT', 'PAUSE', '60000', 'WRITE');
        const pending = rejection(call === 'release' ? h.release() : h.extend(600_000));
        try {
          await until('the call to wait in Redis', async () => /^blocked_clients:[1-9]/m.test(await admin.info('clients')));
          await lock.close();
        } finally {
          await admin.call('CLIENT', 'UNPAUSE');
        }
        const e = await pending;
        assert.ok(e instanceof ClientClosedError, `${call}: ${e}`);
        assert.equal(e.inFlight, true, `${call}: it ran in Redis all the same`);
        if (call === 'release') {
          await until('the release to be carried out', async () => (await admin.exists(h.key)) === 0);
        } else {
          await until('the extend to be carried out', async () => (await admin.pttl(h.key)) > 60_000);
        }
        await admin.del(h.key);
      }
    });
  });
}

test('worker reply wait: a reply posted while the worker drains older replies is not missed', () => {
  // The owning thread posts a reply, then stores 1 in the flag and notifies. Here it does so at
  // the worst moment: right after the worker found the port empty, before it waits again.
  const ctrl = new Int32Array(new SharedArrayBuffer(4));
  const port = [{ id: 1, val: 'stale' }];
  Atomics.store(ctrl, 0, 1); // the stale reply's notification
  let posted = false;
  const receive = () => {
    if (port.length > 0) return port.shift();
    if (!posted) {
      posted = true;
      port.push({ id: 2, val: 'ours' });
      Atomics.store(ctrl, 0, 1);
      Atomics.notify(ctrl, 0);
    }
    return undefined;
  };
  // Every wait is made with timeout 0 and recorded: 'timed-out' is a wait that would have
  // blocked although the reply was there (the notification lost).
  const waits = [];
  const wait = (a, i, v) => {
    const r = Atomics.wait(a, i, v, 0);
    waits.push(r);
    return r;
  };
  const reply = awaitReply(ctrl, receive, 2, performance.now() + 60_000, wait);
  assert.deepEqual(reply, { id: 2, val: 'ours' });
  assert.ok(!waits.includes('timed-out'), `waits: ${waits}`);
});

for (const backend of backends()) {
  test(`a wait queued behind an acquire that then returns a handle never delays that handle (${backend})`, async () => {
    const lock = new DistributedLock(server.client(), { backend, maxInstances: 1, retryCount: 1_000_000, retryDelayMs: 10, maxRetryDelayMs: 10 });
    try {
      const [k1, k2] = [`safety:${backend}:q1:${randomUUID()}`, `safety:${backend}:q2:${randomUUID()}`];
      await admin.set(k1, 'other', 'PX', 60_000);
      await admin.set(k2, 'other', 'PX', 60_000);
      const first = lock.acquire(k1, 60_000); // retries on the one instance
      let waitSettled = false;
      const wait = lock.waitForLock(k2, 60_000, 60_000).finally(() => {
        waitSettled = true;
      }); // queued behind it: the instance holds no handle yet
      await admin.del(k1);
      const h = await first; // now the instance holds a handle, and the wait was queued there
      const guard = new Promise((resolve) => setTimeout(resolve, 10_000).unref());
      const got = await Promise.race([h.extend(60_000).then(() => 'extended'), guard.then(() => 'the extend waited behind the wait')]);
      assert.equal(got, 'extended');
      await h.release();
      assert.equal(waitSettled, false);
      await admin.del(k2);
      await (await wait).release();
    } finally {
      await lock.close();
    }
  });
}
