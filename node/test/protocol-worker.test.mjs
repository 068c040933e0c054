// The protocol worker (tools/protocol-worker.mjs), run as the soak test runs it: a child process
// over stdin/stdout, against a real redis-server, on each backend (DLOCK_NODE_BACKEND). Lanes
// share one DistributedLock; replies are routed by lane; each lane is answered in order; a
// `close` ends every call in flight with an error reply (`unknown` for a release or extend that
// may have run in Redis), fails the closed lock's handles, and never hangs or kills the worker.
// What Redis holds is read on a client of its own.
//
// No assertion depends on timing: a call is known to be pending because what would end it
// (a release, a close) has not been sent yet, or because Redis counts its blocked wait; every
// reply is awaited with a hang guard.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { backends, startRedis, until } from './helpers.mjs';

const server = await startRedis();
const admin = server.admin;
const WORKER = fileURLToPath(new URL('../tools/protocol-worker.mjs', import.meta.url));
const GUARD_MS = 60_000; // no reply takes this long in a correct run
const LONG = 600_000; // a TTL or wait no test reaches

const children = new Set();
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

/** Rejects naming `what` if `promise` has not settled within GUARD_MS (a hang guard). */
function guarded(promise, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no reply to ${what} within ${GUARD_MS} ms`)), GUARD_MS);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/**
 * Starts the protocol worker with `env` added to its environment. `send(lane, request)` writes
 * one request and resolves to the next reply on that lane (replies of a lane come in its
 * requests' order); `raw(text)` writes a line as it is, answered on lane 0. `lines` holds every
 * line the worker wrote, in order; `stray` those no request was waiting for. `end()` closes
 * stdin and resolves to the exit code once the worker is gone.
 */
function startWorker(env = {}) {
  const child = spawn(process.execPath, [WORKER], {
    env: { ...process.env, DLOCK_REDIS_URL: `redis://127.0.0.1:${server.port}`, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => {
    stderr += d;
  });
  const waiting = new Map(); // lane -> replies awaited, in request order
  const lines = [];
  const stray = [];
  createInterface({ input: child.stdout }).on('line', (text) => {
    lines.push(text);
    let reply;
    try {
      reply = JSON.parse(text);
    } catch {
      stray.push(text);
      return;
    }
    const next = waiting.get(reply.lane ?? 0)?.shift();
    if (next === undefined) stray.push(text);
    else next.resolve(reply);
  });
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      for (const queue of waiting.values()) {
        for (const w of queue.splice(0)) w.reject(new Error(`the worker exited (${code ?? signal}) before answering; stderr: ${stderr}`));
      }
      resolve(code ?? signal);
    });
  });
  const expect = (lane, what) => {
    const reply = new Promise((resolve, reject) => {
      if (!waiting.has(lane)) waiting.set(lane, []);
      waiting.get(lane).push({ resolve, reject });
    });
    return guarded(reply, what);
  };
  return {
    lines,
    stray,
    get stderr() {
      return stderr;
    },
    send(lane, request) {
      const reply = expect(lane, `lane ${lane}'s ${JSON.stringify(request)}`);
      child.stdin.write(`${JSON.stringify(lane === 0 ? request : { lane, ...request })}\n`);
      return reply;
    },
    raw(text) {
      const reply = expect(0, JSON.stringify(text));
      child.stdin.write(`${text}\n`);
      return reply;
    },
    end() {
      child.stdin.end();
      return guarded(exited, 'the worker exiting');
    },
  };
}

/** Clients blocked (BLPOP) on the server: waits for a release in progress. */
const blocked = async () => Number((await admin.info('clients')).match(/blocked_clients:(\d+)/)[1]);

/** `promise`, with `state.settled` set once it settles. */
function tracked(promise) {
  const state = { settled: false };
  state.promise = promise.finally(() => {
    state.settled = true;
  });
  return state;
}

test('DLOCK_NODE_MAX_INSTANCES must be a positive integer', async () => {
  for (const bad of ['0', '-1', 'two', '1.5']) {
    const w = startWorker({ DLOCK_NODE_MAX_INSTANCES: bad });
    assert.equal(await w.end(), 2, `DLOCK_NODE_MAX_INSTANCES=${bad}`);
    assert.match(w.stderr, /DLOCK_NODE_MAX_INSTANCES must be a positive integer/);
  }
});

for (const backend of backends()) {
  describe(`protocol worker (${backend})`, () => {
    let n = 0;
    const key = (what) => `pw:${backend}:${what}:${n++}`;
    const start = (env = {}) => startWorker({ DLOCK_NODE_BACKEND: backend, ...env });
    /** Ends `w` and checks that it exited cleanly having written only awaited replies. */
    const finish = async (w) => {
      assert.equal(await w.end(), 0, `the worker exited cleanly; stderr: ${w.stderr}`);
      assert.deepEqual(w.stray, [], 'every line answered a request');
    };

    test('lane 0 is answered as a single client was: no lane field, bad lines in its order', async () => {
      const w = start();
      const k = key('lane0');
      const pending = [w.send(0, { cmd: 'ping' }), w.raw('not json'), w.raw('{"lane":-1,"cmd":"ping"}')];
      pending.push(w.send(0, { cmd: 'acquire', key: k, ttl_ms: LONG }), w.send(0, { cmd: 'release' }));
      const [ping, notJson, badLane, acquired, released] = await Promise.all(pending);
      assert.deepEqual(ping, { outcome: 'ok' });
      assert.equal(notJson.outcome, 'fail');
      assert.match(notJson.error, /^bad request/);
      assert.equal(badLane.outcome, 'fail');
      assert.match(badLane.error, /^bad request: lane/);
      assert.equal(acquired.outcome, 'ok');
      assert.equal(typeof acquired.fence, 'number');
      assert.deepEqual(released, { outcome: 'ok' });
      // Lane 0 in request order, and no line names lane 0.
      assert.equal(w.lines[0], '{"outcome":"ok"}');
      assert.deepEqual(w.lines.map((l) => JSON.parse(l).outcome), ['ok', 'fail', 'fail', 'ok', 'ok']);
      assert.ok(w.lines.every((l) => !l.includes('"lane"')), w.lines.join('\n'));
      assert.equal(await admin.exists(k), 0);
      await finish(w);
    });

    test('unsupported requests: keep and lost fail, cancel_after_ms is ignored, an unknown cmd fails on its lane', async () => {
      const w = start();
      const k = key('unsupported');
      const got = await w.send(2, { cmd: 'acquire', key: k, ttl_ms: LONG, cancel_after_ms: 1 });
      assert.equal(got.outcome, 'ok');
      assert.equal(got.cancelled, undefined);
      assert.equal(await admin.get(k), got.token);
      assert.deepEqual(await w.send(2, { cmd: 'keep', ttl_ms: 1000 }), { lane: 2, outcome: 'fail', error: 'unsupported' });
      assert.deepEqual(await w.send(2, { cmd: 'lost' }), { lane: 2, outcome: 'fail', error: 'unsupported' });
      const unknownCmd = await w.send(3, { cmd: 'frobnicate' });
      assert.equal(unknownCmd.lane, 3);
      assert.equal(unknownCmd.outcome, 'fail');
      assert.match(unknownCmd.error, /^bad request: unknown cmd/);
      assert.deepEqual(await w.send(2, { cmd: 'release' }), { lane: 2, outcome: 'ok' });
      assert.equal(await admin.exists(k), 0);
      await finish(w);
    });

    test('replies are routed by lane, and a lane is answered in order while another lane waits', async () => {
      const w = start();
      const [hot, other] = [key('hot'), key('other')];
      const holder = await w.send(3, { cmd: 'acquire', key: hot, ttl_ms: LONG });
      assert.equal(holder.outcome, 'ok');
      // Lane 1 waits for the lock lane 3 holds; its extend is queued behind the wait.
      const waited = tracked(w.send(1, { cmd: 'acquire', key: hot, ttl_ms: LONG, wait_ms: LONG }));
      const extended = w.send(1, { cmd: 'extend', ttl_ms: LONG });
      await until('lane 1 to block on the lock', async () => (await blocked()) === 1, GUARD_MS);
      // Lane 2 is served meanwhile.
      const ownLock = await w.send(2, { cmd: 'acquire', key: other, ttl_ms: LONG });
      assert.equal(ownLock.lane, 2);
      assert.equal(ownLock.outcome, 'ok');
      assert.deepEqual(await w.send(2, { cmd: 'guarded_read', set: `${other}:set` }), { lane: 2, outcome: 'ok' });
      assert.deepEqual(await w.send(2, { cmd: 'guarded_write', set: `${other}:set`, element: 'x' }), { lane: 2, outcome: 'ok' });
      assert.deepEqual(await w.send(2, { cmd: 'release' }), { lane: 2, outcome: 'ok' });
      assert.equal(await admin.get(`${other}:set`), 'x');
      assert.equal(waited.settled, false, 'lane 1 still waits: only lane 3 can free the lock');
      assert.deepEqual(await w.send(3, { cmd: 'release' }), { lane: 3, outcome: 'ok' });
      const got = await waited.promise;
      assert.equal(got.lane, 1);
      assert.equal(got.outcome, 'ok');
      assert.equal(await admin.get(hot), got.token);
      // The extend ran after the acquire, on its handle.
      const ext = await extended;
      assert.equal(ext.outcome, 'ok', JSON.stringify(ext));
      assert.equal(ext.token, got.token);
      assert.ok(ext.fence > holder.fence);
      assert.ok(await admin.pttl(hot) > LONG / 2);
      assert.deepEqual(await w.send(1, { cmd: 'release' }), { lane: 1, outcome: 'ok' });
      assert.equal(await admin.exists(hot), 0);
      await finish(w);
    });

    test('three lanes on one instance hold three keys at once; each release deletes only its own key', async () => {
      const w = start({ DLOCK_NODE_MAX_INSTANCES: '1' });
      const lanes = [1, 2, 3];
      const keys = lanes.map((l) => key(`own${l}`));
      const got = await Promise.all(lanes.map((l, i) => w.send(l, { cmd: 'acquire', key: keys[i], ttl_ms: LONG })));
      got.forEach((g, i) => {
        assert.equal(g.lane, lanes[i]);
        assert.equal(g.outcome, 'ok', JSON.stringify(g));
      });
      assert.equal(new Set(got.map((g) => g.token)).size, 3);
      assert.deepEqual(await admin.mget(keys), got.map((g) => g.token));
      const held = [...got.map((g) => g.token)];
      for (const i of [1, 0, 2]) {
        assert.deepEqual(await w.send(lanes[i], { cmd: 'release' }), { lane: lanes[i], outcome: 'ok' });
        held[i] = null;
        assert.deepEqual(await admin.mget(keys), held, `after lane ${lanes[i]}'s release`);
      }
      await finish(w);
    });

    test('an acquire of a key another lane holds fails busy; other failures are not busy', async () => {
      const w = start();
      const [k, hash] = [key('busy'), key('hash')];
      const holder = await w.send(1, { cmd: 'acquire', key: k, ttl_ms: LONG });
      assert.equal(holder.outcome, 'ok');
      const refused = await w.send(2, { cmd: 'acquire', key: k, ttl_ms: LONG, wait_ms: 0 });
      assert.equal(refused.lane, 2);
      assert.equal(refused.outcome, 'fail');
      assert.equal(refused.busy, true, JSON.stringify(refused));
      await admin.hset(hash, 'f', 'v');
      const notALock = await w.send(2, { cmd: 'acquire', key: hash, ttl_ms: LONG, wait_ms: 0 });
      assert.equal(notALock.outcome, 'fail');
      assert.equal(notALock.busy, undefined, JSON.stringify(notALock));
      assert.equal(await admin.get(k), holder.token);
      assert.deepEqual(await w.send(1, { cmd: 'release' }), { lane: 1, outcome: 'ok' });
      const got = await w.send(2, { cmd: 'acquire', key: k, ttl_ms: LONG, wait_ms: 0 });
      assert.equal(got.outcome, 'ok');
      assert.deepEqual(await w.send(2, { cmd: 'release' }), { lane: 2, outcome: 'ok' });
      await finish(w);
    });

    test('close fails the handles of the closed lock, keeps their locks, and later calls succeed', async () => {
      const w = start({ DLOCK_NODE_MAX_INSTANCES: '1' });
      const [k1, k2, k3] = [key('closed1'), key('closed2'), key('after')];
      const [h1, h2] = await Promise.all([
        w.send(1, { cmd: 'acquire', key: k1, ttl_ms: LONG }),
        w.send(2, { cmd: 'acquire', key: k2, ttl_ms: LONG }),
      ]);
      assert.equal(h1.outcome, 'ok');
      assert.equal(h2.outcome, 'ok');
      assert.deepEqual(await w.send(0, { cmd: 'close' }), { outcome: 'ok' });
      const released = await w.send(1, { cmd: 'release' });
      assert.equal(released.outcome, 'fail');
      assert.match(released.error, /closed/);
      const extended = await w.send(2, { cmd: 'extend', ttl_ms: LONG });
      assert.equal(extended.outcome, 'fail');
      assert.match(extended.error, /closed/);
      // The locks stay in Redis until their TTL.
      assert.deepEqual(await admin.mget(k1, k2), [h1.token, h2.token]);
      assert.ok(await admin.pttl(k1) > 0);
      assert.deepEqual(await w.send(1, { cmd: 'release' }), { lane: 1, outcome: 'fail', error: 'no lock' });
      // The new lock serves every lane; the closed lock's keys are busy.
      const busy = await w.send(1, { cmd: 'acquire', key: k1, ttl_ms: LONG, wait_ms: 0 });
      assert.equal(busy.busy, true, JSON.stringify(busy));
      const got = await w.send(2, { cmd: 'acquire', key: k3, ttl_ms: LONG });
      assert.equal(got.outcome, 'ok', JSON.stringify(got));
      assert.equal(await admin.get(k3), got.token);
      assert.equal((await w.send(2, { cmd: 'extend', ttl_ms: LONG })).outcome, 'ok');
      assert.deepEqual(await w.send(2, { cmd: 'release' }), { lane: 2, outcome: 'ok' });
      assert.equal(await admin.exists(k3), 0);
      assert.deepEqual(await w.send(0, { cmd: 'close' }), { outcome: 'ok' });
      await finish(w);
    });

    test('a release or extend in flight when the lock is closed is answered unknown: it runs in Redis', async () => {
      const w = start();
      /** Lane `lane` acquires `k`, sends `request` while Redis holds scripts back, and the lock
       * is closed once Redis holds the call; resolves to the call's reply. */
      const closeDuring = async (lane, k, request) => {
        const got = await w.send(lane, { cmd: 'acquire', key: k, ttl_ms: LONG });
        assert.equal(got.outcome, 'ok');
        await admin.client('PAUSE', LONG, 'WRITE'); // holds the scripts back; not CLIENT UNPAUSE
        try {
          const reply = w.send(lane, request);
          await until('the call to be held by the pause', async () => (await blocked()) === 1, GUARD_MS);
          assert.deepEqual(await w.send(0, { cmd: 'close' }), { outcome: 'ok' });
          return [got, reply];
        } finally {
          await admin.client('UNPAUSE');
        }
      };
      const [k1, k2] = [key('inflight-extend'), key('inflight-release')];
      const [h1, extended] = await closeDuring(1, k1, { cmd: 'extend', ttl_ms: 2 * LONG });
      const ext = await extended;
      assert.equal(ext.outcome, 'unknown', JSON.stringify(ext));
      assert.match(ext.error, /closed/);
      assert.ok(await admin.pttl(k1) > LONG, 'the extend ran in Redis');
      const [, released] = await closeDuring(2, k2, { cmd: 'release' });
      const rel = await released;
      assert.equal(rel.outcome, 'unknown', JSON.stringify(rel));
      assert.equal(await admin.exists(k2), 0, 'the release ran in Redis');
      // A later call on a handle of a closed lock is refused before Redis.
      const again = await w.send(1, { cmd: 'extend', ttl_ms: LONG });
      assert.equal(again.outcome, 'fail', JSON.stringify(again));
      assert.match(again.error, /closed/);
      assert.deepEqual(await w.send(1, { cmd: 'release' }), { lane: 1, outcome: 'fail', error: 'dlock: this DistributedLock is closed' });
      assert.equal(await admin.get(k1), h1.token);
      await admin.del(k1);
      await finish(w);
    });

    test('a close racing with calls in flight on other lanes answers every request', async () => {
      // Instances: 3 with the handles of lanes 9-11, 4 for the waits, 1 for the acquires.
      const w = start({ DLOCK_NODE_MAX_INSTANCES: '8' });
      const hot = key('race-hot');
      const heldKeys = [key('race-held10'), key('race-held11')];
      const [holder, ...handles] = await Promise.all([
        w.send(9, { cmd: 'acquire', key: hot, ttl_ms: LONG }),
        ...[10, 11].map((l, i) => w.send(l, { cmd: 'acquire', key: heldKeys[i], ttl_ms: LONG })),
      ]);
      for (const h of [holder, ...handles]) assert.equal(h.outcome, 'ok', JSON.stringify(h));
      // Lanes 1-4 wait for lane 9's lock, blocked in Redis, each with a release behind it.
      const waits = [1, 2, 3, 4].map((l) => [l, w.send(l, { cmd: 'acquire', key: hot, ttl_ms: LONG, wait_ms: LONG }), w.send(l, { cmd: 'release' })]);
      await until('the waits to block on the lock', async () => (await blocked()) >= 4, GUARD_MS);
      // Lanes 5-8 start acquire, extend, release on keys of their own, racing with the close:
      // lane 5's acquire gets the last instance under the cap, the others queue behind it.
      const fresh = [5, 6, 7, 8].map((l) => {
        const k = key(`race${l}`);
        return [l, k, w.send(l, { cmd: 'acquire', key: k, ttl_ms: LONG }), w.send(l, { cmd: 'extend', ttl_ms: LONG }), w.send(l, { cmd: 'release' })];
      });
      // Lanes 10-11 start extend and release, racing with the close.
      const holding = [10, 11].map((l, i) => [l, heldKeys[i], w.send(l, { cmd: 'extend', ttl_ms: LONG }), w.send(l, { cmd: 'release' })]);
      const closed = w.send(0, { cmd: 'close' });
      assert.deepEqual(await closed, { outcome: 'ok' });
      for (const [l, acquired, released] of waits) {
        const a = await acquired;
        // Ended by the close: whatever it was granted is given back in the background.
        assert.equal(a.outcome, 'unknown', `lane ${l}: ${JSON.stringify(a)}`);
        assert.match(a.error, /closed/);
        assert.deepEqual(await released, { lane: l, outcome: 'fail', error: 'no lock' });
      }
      for (const [l, k, acquired, extended, released] of fresh) {
        const replies = [await acquired, await extended, await released];
        for (const r of replies) {
          assert.equal(r.lane, l);
          assert.ok(r.outcome === 'ok' || /closed|no lock/.test(r.error), `lane ${l}: ${JSON.stringify(r)}`);
        }
        if (replies[0].outcome === 'unknown') {
          // An acquire ended by the close leaves no lock behind (a grant is given back).
          await until(`${k} to be free`, async () => (await admin.exists(k)) === 0, GUARD_MS);
        } else if (replies[2].outcome === 'fail') {
          assert.equal(await admin.get(k), replies[0].token, 'a handle of the closed lock keeps its lock');
        }
      }
      for (const [i, [l, k, extended, released]] of holding.entries()) {
        const replies = [await extended, await released];
        for (const r of replies) {
          assert.equal(r.lane, l);
          assert.ok(r.outcome === 'ok' || /closed/.test(r.error), `lane ${l}: ${JSON.stringify(r)}`);
        }
        const outcome = replies[1].outcome;
        if (outcome !== 'unknown') assert.equal(await admin.get(k), outcome === 'ok' ? null : handles[i].token);
      }
      assert.equal(await admin.get(hot), holder.token, 'no waiter took the lock');
      // Every lane goes on, on the new lock.
      const later = await Promise.all([0, 1, 5, 9].map((l) => w.send(l, { cmd: 'acquire', key: key(`next${l}`), ttl_ms: LONG })));
      for (const a of later) assert.equal(a.outcome, 'ok', JSON.stringify(a));
      const releases = await Promise.all([0, 1, 5, 9].map((l) => w.send(l, { cmd: 'release' })));
      for (const r of releases) assert.equal(r.outcome, 'ok', JSON.stringify(r));
      await finish(w);
    });
  });
}
