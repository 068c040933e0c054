// The package on an ioredis Cluster client against a real Redis Cluster (3 primaries), with
// every backend this Node has: locks and fences on keys of every primary, and wake-up on
// release: a waiter blocks (BLPOP) on the signal list at the primary serving the key's slot,
// on a connection of its own to that primary, and a release there wakes it. The Rust host's
// tests/tests/e2e/cluster.rs asserts the same of that host.
//
// No assertion here is about time: where a release must wake a waiter, the waiter's only other
// way to the lock is a backoff of ten minutes, far past the hang guard that fails the test.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DistributedLock } from '../src/index.js';
import { backends, releaseWakesTheWaiter, startCluster } from './helpers.mjs';

const cluster = await startCluster(3);
const TTL = 60_000;
const TEN_MINUTES = 600_000;
/** Hang guard for events that must happen (never a timing assertion). */
const GUARD = 30_000;
const WAKE_OR_NOTHING = { wakeOnRelease: 'always', retryCount: 1, retryDelayMs: TEN_MINUTES, maxRetryDelayMs: TEN_MINUTES };

/** Keys of `n` different primaries, named after `what`. */
async function keysOfEveryPrimary(what) {
  const byPrimary = new Map();
  for (let i = 0; byPrimary.size < cluster.ports.length; i++) {
    const key = `${what}:${i}`;
    const port = await cluster.primaryOf(key);
    if (!byPrimary.has(port)) byPrimary.set(port, key);
  }
  return [...byPrimary.entries()];
}

for (const backend of backends()) {
  describe(`a Redis Cluster (${backend})`, () => {
    const locks = [];
    const make = (options = {}) => {
      const l = new DistributedLock(cluster.cluster(), { backend, ...options });
      locks.push(l);
      return l;
    };
    after(() => Promise.all(locks.map((l) => l.close())));

    test('locks and fences on keys of every primary', async () => {
      const lock = make({ fencing: true });
      for (const [port, key] of await keysOfEveryPrimary(`c:${backend}:lock`)) {
        const node = cluster.node(port);
        const h = await lock.acquire(key, TTL);
        assert.equal(h.fence, 1n);
        assert.equal(await node.get(key), h.token, `held on its primary (${port})`);
        await h.extend(TTL);
        await h.release();
        assert.equal(await node.exists(key), 0);
        const again = await lock.acquire(key, TTL);
        assert.equal(again.fence, 2n);
        await again.release();
      }
    });

    test("a waiter blocks on the signal list at its key's primary and a release wakes it", async () => {
      const holder = make();
      const waiter = make(WAKE_OR_NOTHING);
      for (const [port, key] of await keysOfEveryPrimary(`c:${backend}:wake`)) {
        await releaseWakesTheWaiter(cluster.node(port), holder, waiter, key, GUARD);
      }
    });
  });
}
