// Quorum mode (Redlock over independent primaries): a list of ioredis clients, the Rust host's
// quorum scenarios (tests/tests/e2e/quorum.rs) on both backends, and exclusion both ways with
// node-redlock (@sesamecare-oss/redlock) over the same three servers.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { Redlock } from '@sesamecare-oss/redlock';
import {
  DistributedLock,
  InvalidArgumentError,
  LockExpiredError,
  LockRedisError,
  LockReleaseIncompleteError,
  LockTakenOverError,
} from '../src/index.js';
import { backends, rejection, startRedis, until } from './helpers.mjs';

const TTL = 10_000;
/** Hang guard for events that must happen (never a timing assertion). */
const GUARD = 30_000;

/** Three fresh primaries, a client of each for the lock, and an admin connection to each. */
async function three() {
  const servers = await Promise.all([startRedis(), startRedis(), startRedis()]);
  // No offline queue: a call to a stopped primary fails rather than waiting for it to return.
  const clients = servers.map((s) => s.client({ enableOfflineQueue: false, maxRetriesPerRequest: 0 }));
  await Promise.all(clients.map((c) => (c.status === 'ready' ? null : once(c, 'ready'))));
  return { servers, clients, admins: servers.map((s) => s.admin) };
}

const blocked = async (admin) => Number((await admin.info('clients')).match(/blocked_clients:(\d+)/)[1]);

/** Settles with `promise`'s value, or fails naming `what` after the hang guard. */
function guarded(what, promise) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), GUARD);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

describe('quorum mode: what is refused', () => {
  test('a quorum needs 2 to 9 distinct ioredis clients of one server each', async () => {
    const { clients } = await three();
    const make = (list) => () => new DistributedLock(list);
    assert.throws(make([clients[0]]), { name: 'InvalidArgumentError', message: /2 to 9 independent Redis primaries .* not 1; for one Redis, pass its client itself/ });
    assert.throws(make(Array(10).fill(clients[0])), InvalidArgumentError);
    assert.throws(make([clients[0], clients[1], clients[0]]), /element 2 of the quorum names 127\.0\.0\.1:\d+\/0 again/);
    assert.throws(make([clients[0], {}]), /element 1 is not one/);
    assert.throws(make([clients[0], { evalshaBuffer() {}, isCluster: true }]), /a Cluster is one store/);
  });
});

for (const backend of backends()) {
  describe(`quorum mode (${backend})`, () => {
    test('three primaries hold with one down and refuse with two down, leaving nothing behind', async () => {
      const { servers, clients, admins } = await three();
      const lock = new DistributedLock(clients, { backend, retryCount: 1, retryDelayMs: 10, policy: { commandTimeoutMs: 2000 } });
      const values = (up) => Promise.all(admins.map((a, i) => (up[i] ? a.get('job') : null)));
      let h = await lock.acquire('job', TTL);
      assert.deepEqual(await values([true, true, true]), [h.token, h.token, h.token]);
      assert.equal(await lock.isLocked('job'), true);
      await h.extend(TTL);
      await h.release();
      assert.deepEqual(await values([true, true, true]), [null, null, null]);

      // One killed: still a majority.
      await servers[0].stop();
      h = await lock.acquire('job', TTL);
      assert.deepEqual(await values([false, true, true]), [null, h.token, h.token]);
      await h.extend(TTL);
      await h.release();

      // A second one paused: no majority, and the survivor is left clean.
      servers[1].pause();
      const err = await rejection(lock.acquire('job', TTL));
      servers[1].resume();
      assert.ok(err instanceof LockRedisError && err.retryable, err);
      assert.match(err.message, /no quorum: 1 of 3 Redis primaries answered, 2 needed/);
      assert.equal(await admins[2].exists('job'), 0);
      await lock.close();
    });

    test('release and extend outcomes follow the majority', async () => {
      const { clients, admins } = await three();
      const lock = new DistributedLock(clients, { backend });
      const other = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
      const h = await lock.acquire('job', TTL);
      for (const a of admins.slice(0, 2)) await a.set('job', other);
      assert.ok((await rejection(h.extend(TTL))) instanceof LockTakenOverError);
      assert.ok((await rejection(h.release())) instanceof LockTakenOverError);
      assert.deepEqual(await Promise.all(admins.slice(0, 2).map((a) => a.get('job'))), [other, other]);

      const gone = await lock.acquire('gone', TTL);
      for (const a of admins.slice(1)) await a.del('gone');
      assert.ok((await rejection(gone.release())) instanceof LockExpiredError);
      await lock.close();
    });

    test('a release one primary refuses and one cannot hear is incomplete until a majority confirms', async () => {
      const { servers, clients, admins } = await three();
      const lock = new DistributedLock(clients, { backend, policy: { commandTimeoutMs: 2000 } });
      const h = await lock.acquire('job', TTL);
      await admins[2].call('ACL', 'SETUSER', 'default', '-del');
      servers[1].pause();
      const err = await rejection(h.release());
      servers[1].resume();
      assert.ok(err instanceof LockReleaseIncompleteError && err.retryable, err);
      assert.match(err.message, /1 of 3/);
      assert.equal(h.info.status, 'releasing');
      assert.equal(h.isHeld, false);
      assert.equal(await admins[2].get('job'), h.token, 'the refusing primary still holds the token');
      await h.release();
      assert.equal(await admins[1].exists('job'), 0);
      await lock.close();
    });

    test('a waiter blocks at every primary and a release wakes it', async () => {
      const { clients, admins } = await three();
      const holder = new DistributedLock(clients, { backend });
      // Only a release can wake it: its backoff is ten minutes.
      const waiter = new DistributedLock(clients, {
        backend,
        retryCount: 3,
        retryDelayMs: 600_000,
        maxRetryDelayMs: 600_000,
        wakeOnRelease: 'always',
      });
      const held = await holder.acquire('job', 60_000);
      for (const a of admins) await a.persist('job');
      const waiting = waiter.acquire('job', 60_000);
      await until('the waiter to block at every primary', async () => (await Promise.all(admins.map(blocked))).every((n) => n === 1), GUARD);
      for (const a of admins) assert.equal(await a.exists('{job}:waiters'), 1);
      await held.release();
      const got = await guarded('the release to wake the waiter', waiting);
      const holding = (await Promise.all(admins.map((a) => a.get('job')))).filter((v) => v === got.token).length;
      assert.ok(holding >= 2, `held on ${holding} of 3 primaries`);
      await got.release();
      await holder.close();
      await waiter.close();
    });

    test('node-redlock over the same primaries is excluded by and excludes dlock', async () => {
      const { clients, admins } = await three();
      const lock = new DistributedLock(clients, { backend, retryCount: 0 });
      const redlock = new Redlock(clients, { retryCount: 0 });
      const ours = await lock.acquire('shared', TTL);
      await assert.rejects(redlock.acquire(['shared'], TTL));
      assert.deepEqual(await Promise.all(admins.map((a) => a.get('shared'))), [ours.token, ours.token, ours.token]);
      await ours.release();

      const theirs = await redlock.acquire(['shared'], TTL);
      assert.equal(await lock.tryAcquire('shared', TTL), null);
      const stale = await lock.attach('shared', ours.token);
      assert.ok((await rejection(stale.release())) instanceof LockTakenOverError, 'a stale handle leaves theirs alone');
      assert.deepEqual(await Promise.all(admins.map((a) => a.get('shared'))), [theirs.value, theirs.value, theirs.value]);
      await theirs.release();
      const again = await lock.acquire('shared', TTL);
      await again.release();
      await lock.close();
    });
  });
}
