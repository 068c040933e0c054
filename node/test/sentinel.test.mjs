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
import { DistributedLock } from '../src/index.js';
import { backends, releaseWakesTheWaiter, startSentinel } from './helpers.mjs';

const set = await startSentinel();
const TEN_MINUTES = 600_000;
/** Hang guard for events that must happen (never a timing assertion). */
const GUARD = 30_000;
const WAKE_OR_NOTHING = { wakeOnRelease: 'always', retryCount: 1, retryDelayMs: TEN_MINUTES, maxRetryDelayMs: TEN_MINUTES };

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
    for (const [backend, holder, waiter] of pairs) await releaseWakesTheWaiter(set.primary.admin, holder, waiter, `s:${backend}:before`, GUARD);
    await set.failover();
    for (const [backend, holder, waiter] of pairs) await releaseWakesTheWaiter(set.replica.admin, holder, waiter, `s:${backend}:after`, GUARD);
  });
});
