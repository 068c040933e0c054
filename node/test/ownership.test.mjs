// More concurrent calls than `maxInstances`: each lock handle's extend and release reach the
// component instance that created it. Judged in Redis, on a client of its own: after each
// release exactly that handle's key is gone and every other holder's key still holds its token;
// an extend lengthens its own key's TTL and no other.
//
// Calls wait on keys set by "someone else" and freed in a chosen order, so that calls queue
// behind each other and are passed between instances (Pool.moveBlocking) as instances get
// handles; no assertion depends on timing.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { DistributedLock, LockHandle } from '../src/index.js';
import { backends, startRedis } from './helpers.mjs';
import { seeds, withSeed } from './random.mjs';

const server = await startRedis();
const admin = server.admin;
const TTL = 60_000;
const LONGER = 3_600_000; // an extend's TTL: far above TTL, so PTTL tells extended keys apart
// Waits that never give up within a test and notice a freed key soon.
const PATIENT = { retryCount: 1_000_000, retryDelayMs: 5, maxRetryDelayMs: 5 };
const DEFAULT_MAX_INSTANCES = { jspi: 64, worker: 8 };

/** Starts `op` on `key` (acquire, waitForLock, tryAcquire). */
function start(lock, op, key) {
  if (op === 'waitForLock') return lock.waitForLock(key, TTL, TTL);
  return lock[op](key, TTL);
}

/** Every key holds its holder's token, or is gone once released. `holders`: `{ key, token,
 * released }`, the key as the caller named it and the token the acquisition returned. */
async function assertKeys(holders, after) {
  const values = await admin.mget(holders.map((h) => h.key));
  holders.forEach((h, i) => {
    const want = h.released ? null : h.token;
    assert.equal(values[i], want, `${after}: ${h.key} should ${h.released ? 'be gone' : `hold ${h.token}`}, holds ${values[i]}`);
  });
}

/** A holder for `handle`, which an acquisition of `key` returned. */
function holderOf(handle, key) {
  assert.ok(handle instanceof LockHandle && handle.isHeld, `the acquisition of ${key}`);
  assert.equal(handle.key, key);
  return { handle, key, token: handle.token, released: false };
}

/** Extends each holder's handle in `order` to LONGER, checking after each that exactly the
 * keys extended so far have a TTL above TTL and that the handle still names its key. */
async function extendEach(order) {
  const extended = new Set();
  for (const h of order) {
    await h.handle.extend(LONGER);
    assert.equal(h.handle.key, h.key, `the handle of ${h.key} after its extend`);
    extended.add(h);
    const ttls = await Promise.all(order.map((o) => admin.pttl(o.key)));
    order.forEach((o, i) => {
      if (extended.has(o)) assert.ok(ttls[i] > TTL, `after extending ${h.key}: ${o.key} has PTTL ${ttls[i]}, not extended`);
      else assert.ok(ttls[i] > 0 && ttls[i] <= TTL, `extending ${h.key} changed ${o.key}: PTTL ${ttls[i]}`);
    });
  }
}

/** Releases each holder's handle in `order`, checking every key in `holders` after each. */
async function releaseEach(order, holders) {
  for (const h of order) {
    await h.handle.release();
    assert.equal(h.handle.isHeld, false);
    h.released = true;
    await assertKeys(holders, `after releasing ${h.key}`);
  }
}

for (const backend of backends()) {
  describe(`handles beyond maxInstances (${backend})`, () => {
    const key = (what) => `own:${backend}:${what}:${randomUUID()}`;

    for (const third of ['acquire', 'waitForLock']) {
      for (const first of ['release', 'extend']) {
        test(`a call passed on twice between instances holds its own lock (third call: ${third}; ${first} first)`, async () => {
          // Two instances: a and b each wait on a held key, one per instance; c (a wait, free
          // key) queues behind one of them, d (tryAcquire, free key) behind the other. Freeing
          // a, then b, gives each instance a handle in turn, and c is passed on at each.
          const lock = new DistributedLock(server.client(), { backend, maxInstances: 2, ...PATIENT });
          try {
            const [ka, kb, kc, kd] = ['a', 'b', 'c', 'd'].map(key);
            await admin.set(ka, 'other', 'PX', TTL);
            await admin.set(kb, 'other', 'PX', TTL);
            const a = lock.acquire(ka, TTL);
            const b = lock.waitForLock(kb, TTL, TTL);
            const c = start(lock, third, kc);
            const d = lock.tryAcquire(kd, TTL);
            await admin.del(ka);
            const ha = await a;
            await admin.del(kb);
            const [hb, hc, hd] = await Promise.all([b, c, d]);
            const holders = [holderOf(ha, ka), holderOf(hb, kb), holderOf(hc, kc), holderOf(hd, kd)];
            await assertKeys(holders, 'after acquiring');
            const [oa, ob, oc, od] = holders;
            if (first === 'release') {
              await releaseEach([oc], holders);
              await extendEach([od, ob, oa]);
              await releaseEach([od, ob, oa], holders);
            } else {
              await extendEach([oc, od, ob, oa]);
              await releaseEach([oc, od, ob, oa], holders);
            }
          } finally {
            await lock.close();
          }
        });
      }
    }

    /** Runs `plan` (`{ op, key, held }`) at once on one client: `held` keys are set by someone
     * else first and, except tryAcquire's (refused), freed in `freeOrder(plan)`; then extends
     * and releases every handle in random orders, checking Redis after each. */
    async function run(rng, options, plan, freeOrder) {
      const lock = new DistributedLock(server.client(), { backend, ...PATIENT, ...options });
      try {
        for (const c of plan) if (c.held) await admin.set(c.key, 'other', 'PX', TTL);
        const calls = plan.map((c) => start(lock, c.op, c.key));
        for (const c of freeOrder(plan.filter((c) => c.held && c.op !== 'tryAcquire'))) await admin.del(c.key);
        const got = await Promise.all(calls);
        const holders = [];
        const held = [];
        plan.forEach((c, i) => {
          if (c.held && c.op === 'tryAcquire') {
            assert.equal(got[i], null, `tryAcquire of the held ${c.key}`);
            holders.push({ key: c.key, token: 'other', released: false });
          } else {
            const h = holderOf(got[i], c.key);
            held.push(h);
            holders.push(h);
          }
        });
        await assertKeys(holders, 'after acquiring');
        await extendEach(rng.shuffled(held));
        await releaseEach(rng.shuffled(held), holders);
      } finally {
        await lock.close();
      }
    }

    test('random mixes of acquire, waitForLock and tryAcquire, 1-3 instances, keys freed in random orders', async () => {
      for (const seed of seeds(12)) {
        await withSeed(seed, async (rng) => {
          const maxInstances = rng.int(1, 3);
          const plan = Array.from({ length: rng.int(maxInstances + 1, 3 * maxInstances + 2) }, (_, i) => {
            const op = rng.pick(['acquire', 'waitForLock', 'tryAcquire']);
            return { op, key: key(`mix${i}`), held: rng.chance(op === 'tryAcquire' ? 0.3 : 0.7) };
          });
          await run(rng, { maxInstances }, plan, (held) => rng.shuffled(held));
        });
      }
    });

    test('the default maxInstances, two waits beyond it and two tryAcquires, keys freed in arrival order', async () => {
      for (const seed of seeds(1)) {
        await withSeed(seed, async (rng) => {
          const waits = DEFAULT_MAX_INSTANCES[backend] + 2;
          const plan = Array.from({ length: waits }, (_, i) => ({ op: i % 2 ? 'waitForLock' : 'acquire', key: key(`def${i}`), held: true }));
          plan.push({ op: 'tryAcquire', key: key('def-try'), held: false }, { op: 'tryAcquire', key: key('def-held'), held: true });
          await run(rng, {}, plan, (held) => held);
        });
      }
    });
  });
}
