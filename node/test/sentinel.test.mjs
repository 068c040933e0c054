// The package on an ioredis client that finds the primary through a Sentinel (a primary, its
// replica, one Sentinel), with every backend this Node has: a waiter blocks (BLPOP) on the
// key's signal list at the primary the Sentinel names and a release wakes it, and after a
// failover at the promoted replica (the wait connection to the old primary fails, and the
// wait's second try asks the Sentinel again). The Rust host's tests/tests/e2e/sentinel.rs
// asserts the same of that host.
//
// No assertion here is about time: where a release must wake a waiter, the waiter's only other
// way to the lock is a backoff of ten minutes, far past the hang guard that fails the test.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DistributedLock, LockHandle } from '../src/index.js';
import { backends, startSentinel, until } from './helpers.mjs';

const set = await startSentinel();
const TTL = 60_000;
const TEN_MINUTES = 600_000;
/** Hang guard for events that must happen (never a timing assertion). */
const GUARD = 30_000;
const WAKE_OR_NOTHING = { wakeOnRelease: 'always', retryCount: 1, retryDelayMs: TEN_MINUTES, maxRetryDelayMs: TEN_MINUTES };

/** A release of `key` held by `holder` wakes `waiter` blocked at `server`, the primary. */
async function releaseWakesTheWaiter(server, holder, waiter, key) {
  const blocked = async () => Number((await server.admin.info('clients')).match(/blocked_clients:(\d+)/)[1]);
  const lock = await holder.acquire(key, TTL);
  // No expiry: no wait is cut at the holder's expiry.
  await server.admin.persist(key);
  const waiting = waiter.acquire(key, TTL);
  await until('the waiter to block on the signal list', async () => (await blocked()) === 1, GUARD);
  assert.equal(await server.admin.exists(`{${key}}:waiters`), 1, 'the waiter marked the key');
  await lock.release();
  const got = await waiting;
  assert.ok(got instanceof LockHandle && got.isHeld);
  assert.equal(await server.admin.get(key), got.token);
  assert.equal(await server.admin.exists(`{${key}}:signal`), 0, 'the waiter took the signal');
  await got.release();
}

describe('Sentinel', () => {
  const locks = [];
  const make = (backend, options = {}) => {
    const l = new DistributedLock(set.client(), { backend, ...options });
    locks.push(l);
    return l;
  };
  after(() => Promise.all(locks.map((l) => l.close())));

  test('waiters block at the primary the Sentinel names, and at the new one after a failover', async () => {
    const pairs = backends().map((backend) => [backend, make(backend), make(backend, WAKE_OR_NOTHING)]);
    for (const [backend, holder, waiter] of pairs) await releaseWakesTheWaiter(set.primary, holder, waiter, `s:${backend}:before`);
    await set.failover();
    for (const [backend, holder, waiter] of pairs) await releaseWakesTheWaiter(set.replica, holder, waiter, `s:${backend}:after`);
  });
});
