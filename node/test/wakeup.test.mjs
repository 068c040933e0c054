// Push wake-up against a real Redis, with every backend this Node has: a waiter blocks (BLPOP)
// on the key's signal list on a connection of its own, and a release wakes it; a signal taken by
// a waiter that gave up is handed to the next waiter; a broken wait connection leaves polling.
// The Rust host's tests/tests/e2e/wakeup.rs asserts the same of that host.
//
// No assertion here is about time: where a release must wake a waiter, the waiter's only other
// way to the lock is a backoff of ten minutes, far past the hang guard that fails the test.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { ClientClosedError, DistributedLock, LockHandle } from '../src/index.js';
import { bundledScripts, resolvePolicy, TokenBucket } from '../src/policy.js';
import { RedisHost } from '../src/redis-host.js';
import { backends, rejection, scriptCalls, startRedis, until } from './helpers.mjs';
import { BlockingPool, Waits } from '../src/wait.js';

const server = await startRedis();
const admin = server.admin;
// Cached up front, so that every script call counts once (a NOSCRIPT reply and the EVAL after
// it would count twice).
for (const { source } of bundledScripts()) await admin.script('LOAD', source);
const TTL = 60_000;
const TEN_MINUTES = 600_000;
/** Hang guard for events that must happen (never a timing assertion). */
const GUARD = 30_000;
/** A waiter whose one retry comes after ten minutes, unless a release wakes it. */
const WAKE_OR_NOTHING = { wakeOnRelease: 'always', retryCount: 1, retryDelayMs: TEN_MINUTES, maxRetryDelayMs: TEN_MINUTES };

/** The server's clients: `[{id, flags, cmd, ...}]` (CLIENT LIST). */
async function clients() {
  const list = await admin.client('LIST');
  return list
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => Object.fromEntries(l.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])));
}

/** The ids of the clients blocked in BLPOP. */
async function blocked() {
  return (await clients()).filter((c) => c.cmd === 'blpop' && c.flags.includes('b')).map((c) => c.id);
}

/** How many clients are blocked in a command, as Redis counts them. */
async function blockedClients() {
  const info = await admin.info('clients');
  return Number(info.match(/blocked_clients:(\d+)/)[1]);
}

/** `promise`, failed with `what` if it has not settled within the hang guard. */
function guarded(what, promise) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang guard: ${what}`)), GUARD);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

for (const backend of backends()) {
  describe(`wake-up on release (${backend})`, () => {
    const locks = [];
    const make = (options = {}) => {
      const l = new DistributedLock(server.client(), { backend, ...options });
      locks.push(l);
      return l;
    };
    after(() => Promise.all(locks.map((l) => l.close())));
    let n = 0;
    const key = (what) => `w:${backend}:${what}:${n++}`;

    test('a release wakes a waiter blocked on the signal list', async () => {
      const k = key('wake');
      const holder = make();
      const lock = await holder.acquire(k, TTL);
      // No expiry: no wait is cut at the holder's expiry.
      await admin.persist(k);
      const waiting = make(WAKE_OR_NOTHING).acquire(k, TTL);
      await until('the waiter to block on the signal list', async () => (await blockedClients()) === 1, GUARD);
      assert.equal(await admin.exists(`{${k}}:waiters`), 1, 'the waiter marked the key');

      const before = await scriptCalls(admin);
      await lock.release();
      const got = await guarded('the release did not wake the waiter', waiting);
      assert.ok(got instanceof LockHandle && got.isHeld);
      assert.equal(await admin.get(k), got.token);
      assert.equal(await admin.exists(`{${k}}:signal`), 0, 'the waiter took the signal');
      // The release, then the waiter's one attempt after the wake-up.
      assert.equal((await scriptCalls(admin)) - before, 2);
      await got.release();
    });

    test('the time a waitForLock waits for its instance counts against its timeout', async () => {
      const [busy, queuedKey] = [key('occupying'), key('queued')];
      const holder = make();
      const held = await holder.acquire(busy, TTL);
      await holder.acquire(queuedKey, TTL);
      const blpops = async () => Number((await admin.info('commandstats')).match(/cmdstat_blpop:calls=(\d+),/)?.[1] ?? 0);
      const before = await blpops();
      // One instance: the wait queues behind an acquire that blocks (once: its backoff is ten
      // minutes) until `held` goes.
      const lock = make({ maxInstances: 1, ...WAKE_OR_NOTHING });
      const occupying = lock.acquire(busy, TTL);
      await until('the acquire to block', async () => (await blockedClients()) === 1, GUARD);
      const since = performance.now();
      const queued = rejection(lock.waitForLock(queuedKey, 200, TTL));
      await until('the queued wait\'s timeout to pass', async () => performance.now() - since > 250, GUARD);
      await held.release();
      await (await guarded('the acquire to take its lock', occupying)).release();
      // It reached the component with no time left: one attempt, no wait on the signal list.
      assert.equal((await queued).name, 'LockAcquisitionError');
      assert.equal(await blpops(), before + 1, 'only the acquire blocked');
    });

    test("waitForLock's waits listen by default (wake-on-release wait-for-lock)", async () => {
      const k = key('wait');
      const lock = await make().acquire(k, TTL);
      const waiting = make().waitForLock(k, GUARD, TTL);
      // (A wait that ended may leave its BLPOP blocked a little longer: Redis times blocked
      // clients out about every 100 ms.)
      await until('the waiter to block on the signal list', async () => (await blockedClients()) >= 1, GUARD);
      assert.equal(await admin.exists(`{${k}}:waiters`), 1);
      await lock.release();
      const got = await guarded('the waiter did not get the lock', waiting);
      assert.equal(await admin.get(k), got.token);
      await got.release();
    });

    test('a signal taken by a waiter that gave up (its client closed) is passed on to the next', async () => {
      const k = key('pass');
      const holder = make();
      const lock = await holder.acquire(k, TTL);
      await admin.persist(k);
      const quitter = make(WAKE_OR_NOTHING);
      const gaveUp = quitter.acquire(k, TTL);
      await until('the first waiter to block', async () => (await blockedClients()) === 1, GUARD);
      const [first] = await blocked();
      await quitter.close();
      assert.ok((await rejection(gaveUp)) instanceof ClientClosedError);
      // Its BLPOP runs on (as the Rust host's does after a cancelled wait) and is first in line.
      assert.equal(await blockedClients(), 1);

      const next = make(WAKE_OR_NOTHING);
      const waiting = next.acquire(k, TTL);
      await until('the second waiter to block', async () => (await blockedClients()) === 2, GUARD);
      const second = (await blocked()).find((id) => id !== first);
      await lock.release();
      // Redis hands the one signal to the first blocked client, which gave up: only its passing
      // the signal on can wake the second before its ten-minute backoff.
      const got = await guarded('the signal was not passed on', waiting);
      assert.equal(await admin.get(k), got.token);
      assert.equal(await admin.exists(`{${k}}:signal`), 0, 'the second waiter took the passed-on signal');
      await got.release();
      await next.close();
      const open = async () => (await clients()).filter((c) => c.id === first || c.id === second).length;
      await until("the closed clients' wait connections to close", async () => (await open()) === 0, GUARD);
    });

    test('a wait whose connection breaks pauses instead, and the next wait connects again', async () => {
      const k = key('broken');
      const lock = await make().acquire(k, TTL);
      // Waits of a second: the first BLPOP is the only one until the connection is killed.
      const waiting = make({ wakeOnRelease: 'always', retryCount: 100, retryDelayMs: 1000, maxRetryDelayMs: 1000 }).acquire(k, TTL);
      await until('the waiter to block', async () => (await blocked()).length === 1, GUARD);
      const [first] = await blocked();
      await admin.client('KILL', 'ID', first);
      await until('the waiter to block again on a new connection', async () => (await blocked()).some((id) => id !== first), GUARD);
      await lock.release();
      const got = await guarded('the waiter did not get the lock', waiting);
      assert.equal(await admin.get(k), got.token);
      await got.release();
    });
  });
}

test('wait-for-release is policed like redis-eval: namespace, lock keys only, a signal list to listen on', async () => {
  const policy = resolvePolicy({ keyNamespace: 'app:' });
  const host = new RedisHost(server.client(), policy, new TokenBucket(policy.maxBytesPerSecond));
  const refused = async (key, listen, pattern) => {
    const e = await rejection(host.wait(key, 1n, listen));
    assert.equal(e.tag, 'denied', key);
    assert.match(e.val, pattern);
  };
  await refused('other:job', true, /outside the namespace/);
  await refused('{app:job}:signal', true, /is a lock's signal list, not a lock/);
  await refused('{app:job}:waiters', false, /is a lock's waiters' mark, not a lock/);
  await refused('app:a}b', true, /has no signal list/);
  // Without listening, a key without companions may still pause.
  assert.equal(await host.wait('app:a}b', 1n, false), 'timed-out');
  host.close();
  assert.equal(await host.wait('app:job', 1n, true), 'cancelled', 'a closed host waits no more');
});

test('a wait connection that stops answering is counted out of the pool once', async () => {
  const redis = server.client();
  const policy = resolvePolicy({ commandTimeoutMs: 50 });
  const pool = new BlockingPool(redis);
  const waits = new Waits(redis, policy, pool);
  assert.equal(await waits.wait('job', 1n, true), 'timed-out');
  await until('the first wait to hand its connection back', () => pool.idleConnections.length === 1);
  const [conn] = pool.idleConnections;
  // The server answers nothing for a while: the next wait's BLPOP goes unanswered, its guard
  // drops the connection, and closing it fails the BLPOP too.
  await admin.client('PAUSE', '1000', 'ALL');
  assert.equal(await waits.wait('job', 20n, true), 'timed-out');
  await until('the silent connection to be closed', () => conn.status === 'end');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(pool.inUse, 0);
  pool.close();
});
