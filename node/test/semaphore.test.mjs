// Counting semaphores (`DistributedLock#semaphore`) on both backends, against a real
// redis-server: permits up to the limit, handles that give back and renew their permits,
// fences across permits, many waiters sharing the permits, bad input and other data refused.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { Semaphore as RedisSemaphore } from 'redis-semaphore';
import { DistributedLock, InvalidArgumentError, LockAcquisitionError, NotALockError } from '../src/index.js';
import { backends, rejection, startRedis } from './helpers.mjs';

const server = await startRedis();
const admin = server.admin;
const TTL = 60_000;

for (const backend of backends()) {
  describe(`semaphores (${backend})`, () => {
    const withLock = async (options, body) => {
      const lock = new DistributedLock(server.client(), { backend, ...options });
      try {
        await body(lock);
      } finally {
        await lock.close();
      }
    };

    test('permits up to the limit; a release frees them and an extend renews them', () =>
      withLock({ fencing: true }, async (lock) => {
        const key = `pool-${randomUUID()}`;
        const pool = lock.semaphore(key, 3);
        const two = await pool.acquire(TTL, 2);
        const one = await pool.tryAcquire(TTL);
        assert.ok(one?.isHeld, 'one permit was free');
        assert.equal(await pool.tryAcquire(TTL), null, 'none free');
        const state = await pool.state();
        assert.equal(state.held, 3);
        assert.ok(state.firstEndsInMs > 0 && state.firstEndsInMs <= TTL, `${state.firstEndsInMs}`);
        assert.deepEqual([two.fence, one.fence], [1n, 2n], 'fences increase across permits');
        await two.release();
        assert.equal(await admin.zcard(key), 1);
        await admin.pexpire(key, 5_000);
        await one.extend(600_000);
        assert.ok((await admin.pttl(key)) > 500_000, 'the set lasts as long as the renewed permit');
        await one.release();
        assert.equal(await admin.exists(key), 0, 'the empty set is deleted');
        assert.deepEqual(await pool.state(), { held: 0, firstEndsInMs: null });
      }));

    test('waiters share the permits: never more holders than the limit, and all get a turn', () =>
      withLock({ retryDelayMs: 5, maxRetryDelayMs: 20 }, async (lock) => {
        const key = `pool-${randomUUID()}`;
        const pool = lock.semaphore(key, 2);
        let holding = 0;
        let most = 0;
        let turns = 0;
        await Promise.all(
          Array.from({ length: 6 }, async () => {
            for (let i = 0; i < 3; i++) {
              const permit = await pool.waitFor(TTL, TTL);
              holding += 1;
              most = Math.max(most, holding);
              await new Promise((r) => setImmediate(r));
              holding -= 1;
              await permit.release();
              turns += 1;
            }
          }),
        );
        assert.equal(turns, 18);
        assert.ok(most >= 1 && most <= 2, `${most} holders at once`);
      }));

    test('bad limits and counts are refused; other data is no semaphore and stays', () =>
      withLock({ retryCount: 0 }, async (lock) => {
        for (const [limit, count] of [[0, 1], [1001, 1], [2, 3], [2, 0]]) {
          const e = await rejection(lock.semaphore('pool', limit).tryAcquire(TTL, count));
          assert.ok(e instanceof InvalidArgumentError, `${limit} ${count}: ${e}`);
        }
        for (const [limit, count] of [[2.5, 1], [2, -1], ['2', 1]]) {
          const e = await rejection(lock.semaphore('pool', limit).tryAcquire(TTL, count));
          assert.ok(e instanceof InvalidArgumentError, `${limit} ${count}: ${e}`);
        }
        const key = `data-${randomUUID()}`;
        await admin.set(key, 'data');
        assert.ok((await rejection(lock.semaphore(key, 2).acquire(TTL))) instanceof NotALockError);
        assert.ok((await rejection(lock.semaphore(key, 2).state())) instanceof NotALockError);
        assert.equal(await admin.get(key), 'data');
        const full = lock.semaphore(`full-${randomUUID()}`, 1);
        const held = await full.acquire(TTL);
        assert.ok((await rejection(full.acquire(TTL))) instanceof LockAcquisitionError);
        await held.release();
      }));
  });
}

// redis-semaphore 5.8.0 keeps a semaphore in a sorted set too (at `semaphore:NAME`), scored
// by when each holder acquired; dlock scores by when each lease ends. The two cannot share a key: dlock refuses a
// set holding redis-semaphore's members (NotALockError) and changes nothing in it, and a dlock
// handle whose set redis-semaphore wrote to still gives back exactly its own permits.
describe('semaphores beside redis-semaphore', () => {
  test('dlock leaves redis-semaphore\'s semaphore alone, and its own permits stay its own', async () => {
    const redis = server.client();
    const lock = new DistributedLock(redis, { retryCount: 0 });
    try {
      const name = `rs-${randomUUID()}`;
      const theirs = `semaphore:${name}`;
      const held = new RedisSemaphore(redis, name, 3, { lockTimeout: TTL, refreshInterval: 0 });
      await held.acquire();
      const before = await admin.zrange(theirs, 0, -1, 'WITHSCORES');
      assert.ok((await rejection(lock.semaphore(theirs, 3).tryAcquire(TTL))) instanceof NotALockError);
      assert.ok((await rejection(lock.semaphore(theirs, 3).state())) instanceof NotALockError);
      assert.deepEqual(await admin.zrange(theirs, 0, -1, 'WITHSCORES'), before);
      await held.release();

      const shared = `dl-${randomUUID()}`;
      const ours = `semaphore:${shared}`;
      const permit = await lock.semaphore(ours, 3).acquire(TTL, 2);
      const intruder = new RedisSemaphore(redis, shared, 3, { lockTimeout: TTL, refreshInterval: 0 });
      assert.equal(await intruder.tryAcquire(), true, 'redis-semaphore counts the 2 dlock permits of 3');
      assert.ok((await rejection(lock.semaphore(ours, 3).tryAcquire(TTL))) instanceof NotALockError);
      await permit.release();
      assert.deepEqual(await admin.zrange(ours, 0, -1), [intruder.identifier], 'only dlock\'s own permits went');
      await intruder.release();
    } finally {
      await lock.close();
    }
  });
});
