// The pool (src/pool.js) on its own, as pure scheduling: its instances are stand-in executors
// whose operations complete when, and how, the test decides (no Redis, no component). Each
// case draws from a seed: 1-4 instances, 1-100 calls arriving and completing in random orders,
// instances that start asynchronously (as worker threads do, or as JSPI instances do before the
// bindings load: then `ready` resolves to the instance that runs the calls), waits given up
// (an acquire or waitForLock ending without a lock: its timeout or retries ran out, or close()
// cancelled it), traps, handles released, extended and given up (markAsReleased, the
// finalizer), and close().
//
// Invariants checked: every call settles exactly once and none is lost; no operation runs
// twice; an instance never runs two operations at once, nor any after it failed or was closed;
// a call that can wait long never runs on an instance holding a live handle; the result of a
// handle-creating call names the slot whose instance ran it; release, extend and drop of a
// handle run on the instance that created it; a slot's handle count is its live handles; after
// close() every call fails with the closed error, and so does every call whose operation ended
// after close(), whose locks are given back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BLOCKING_OPS, Pool } from '../src/pool.js';
import { seeds, withSeed } from './random.mjs';

const HANDLE_OPS = new Set(['acquire', 'tryAcquire', 'waitForLock', 'attach']);
const NEW_CALLS = ['acquire', 'waitForLock', 'tryAcquire', 'attach', 'isLocked', 'keyState'];
const ID_SPACE = 1_000_000; // handle ids are unique across instances: instance * ID_SPACE + n

class ClosedError extends Error {}

class Trap extends Error {
  constructor(instance, what) {
    super(`instance ${instance.n}: ${what}`);
    this.instance = instance;
  }
}

/** The test's world: stand-in instances, the operations in flight, what ran where. */
class World {
  constructor(rng, knobs) {
    this.rng = rng;
    this.knobs = knobs;
    this.instances = [];
    this.inFlight = []; // operations started on an instance, not yet completed
    this.starting = []; // instances whose `ready` the test has not settled yet
    this.runs = new Map(); // call id -> { instance, closedFirst }: where and when it ran
    this.givenUp = new Set(); // handle ids the test gave up (dropLater)
    this.closeCalled = false;
    this.errors = []; // what failed inside the pool's callbacks, thrown by the driver
  }

  create() {
    const instance = new StandIn(this, this.instances.length + 1);
    this.instances.push(instance);
    if (instance.ready !== undefined && this.rng.chance(0.5)) {
      // As the JSPI backend before its bindings load: a stand-in of the stand-in, whose
      // `ready` resolves to the instance that runs the calls.
      return { ready: instance.ready.then(() => instance), close: () => instance.close() };
    }
    return instance;
  }

  /** Records a broken invariant (thrown by the driver: a throw here would land in the pool). */
  check(ok, message) {
    if (!ok) this.errors.push(new assert.AssertionError({ message }));
  }

  /** `fn()`, whose assertion failures are recorded. */
  guard(fn) {
    try {
      fn();
    } catch (e) {
      this.errors.push(e);
    }
  }

  throwFirst() {
    if (this.errors.length > 0) throw this.errors[0];
  }
}

/** One stand-in component instance. Its operations complete when the test says. */
class StandIn {
  constructor(world, n) {
    this.world = world;
    this.n = n;
    this.table = new Map(); // handle id -> call id that created it
    this.nextId = 1;
    this.running = null;
    this.failed = false;
    this.closed = false;
    this.readyState = 'ready';
    this.trappedCalls = 0;
    this.trapAfter = null; // set by the test: afterCall reports this trap
    if (world.rng.chance(world.knobs.asyncStart)) {
      this.readyState = 'starting';
      this.ready = new Promise((resolve, reject) => {
        this.settleReady = (ok) => {
          this.readyState = ok ? 'ready' : 'failed';
          if (ok) resolve();
          else {
            this.failed = true;
            reject(new Trap(this, 'did not start'));
          }
        };
      });
      world.starting.push(this);
    }
  }

  exec(op, a, b) {
    const w = this.world;
    w.check(this.running === null, `instance ${this.n} entered (${op}) while running ${this.running?.op}`);
    w.check(!this.failed, `instance ${this.n} ran ${op} after it failed`);
    w.check(!this.closed, `instance ${this.n} ran ${op} after it was closed`);
    w.check(this.readyState === 'ready', `instance ${this.n} ran ${op} before it started`);
    if (BLOCKING_OPS.has(op)) {
      const live = [...this.table.keys()].filter((id) => !w.givenUp.has(id));
      w.check(live.length === 0, `instance ${this.n} runs ${op} while holding handles ${live}`);
    }
    if (op === 'release' || op === 'extend' || op === 'drop') {
      for (const id of op === 'drop' ? a : [a]) {
        const owner = Math.floor(id / ID_SPACE);
        w.check(owner === this.n, `${op} of handle ${id} (instance ${owner}'s) ran on instance ${this.n}`);
      }
    }
    if (typeof a === 'string' && a.startsWith('call')) {
      w.check(!w.runs.has(a), `${a} ran twice`);
      w.runs.set(a, { instance: this, closedFirst: null });
    }
    return new Promise((resolve, reject) => {
      const op1 = { instance: this, op, a, b, resolve, reject };
      this.running = op1;
      w.inFlight.push(op1);
    });
  }

  /** Completes the operation in flight with `outcome`: 'ok' (the lock, when it takes one),
   * 'given-up' (a wait ended without a lock), 'trap' (rejects), 'trap-after' (returns, then
   * the call's check reports a trap). */
  complete(op1, outcome) {
    const w = this.world;
    w.inFlight.splice(w.inFlight.indexOf(op1), 1);
    this.running = null;
    const run = w.runs.get(op1.a);
    if (run) run.closedFirst = w.closeCalled;
    if (outcome === 'trap') {
      this.failed = true;
      op1.reject(new Trap(this, `trapped in ${op1.op}`));
      return;
    }
    if (outcome === 'trap-after') this.trapAfter = new Trap(this, `trapped after ${op1.op}`);
    op1.resolve(this.result(op1, outcome));
  }

  result({ op, a, b }, outcome) {
    switch (op) {
      case 'acquire':
      case 'waitForLock':
      case 'tryAcquire':
      case 'attach': {
        if (outcome === 'given-up') return op === 'tryAcquire' ? { ok: null } : { err: { tag: 'timeout' } };
        const id = this.n * ID_SPACE + this.nextId++;
        this.table.set(id, a);
        return { ok: id, info: { key: a, instance: this.n } };
      }
      case 'release':
        if (!this.table.has(a)) return { err: { tag: 'not-held' }, info: null };
        if (outcome === 'given-up') return { ok: 'expired', info: { key: this.table.get(a) } };
        this.table.delete(a);
        return { ok: 'released', info: null };
      case 'extend':
        if (!this.table.has(a)) return { err: { tag: 'not-held' }, info: null };
        return { ok: null, info: { key: this.table.get(a), ttl: b } };
      case 'drop':
        for (const id of a) this.table.delete(id);
        return { ok: null };
      default:
        return { ok: true };
    }
  }

  afterCall() {
    const t = this.trapAfter;
    this.trapAfter = null;
    if (t !== null) this.failed = true;
    return t;
  }

  succeeded() {}

  trapped() {
    this.trappedCalls += 1;
    return Promise.resolve();
  }

  close() {
    this.closed = true;
    return Promise.resolve();
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** One case: drives a pool of stand-ins through random arrivals and completions. */
async function runCase(rng) {
  const knobs = {
    max: rng.int(1, 4),
    calls: rng.int(1, 100),
    asyncStart: rng.pick([0, 0.5, 1]),
    trap: rng.pick([0, 0.03]),
    closeAt: rng.chance(0.5) ? rng.next() : null, // when close() comes, as a share of the calls
  };
  const world = new World(rng, knobs);
  const pool = new Pool(() => world.create(), knobs.max, () => new ClosedError('closed'));
  const calls = []; // { id, op, settled, closedBefore }
  const handles = []; // { id, slot, instance, busy, gone, dead }
  let closing = null;

  const settle = (call, how, value) => world.guard(() => settled(call, how, value));
  const settled = (call, how, value) => {
    call.settled += 1;
    assert.equal(call.settled, 1, `${call.id} settled twice`);
    const run = world.runs.get(call.id);
    if (call.closedBefore) {
      assert.ok(how === 'rejected' && value instanceof ClosedError, `${call.id} (${call.op}) issued after close() ${how}: ${value?.message ?? JSON.stringify(value)}`);
      assert.equal(run, undefined, `${call.id} issued after close() ran`);
      return;
    }
    if (run?.closedFirst) assert.ok(value instanceof ClosedError, `${call.id} ended after close() but ${how}`);
    if (how === 'rejected') {
      assert.ok(value instanceof ClosedError || value instanceof Trap, `${call.id} rejected with ${value}`);
      if (value instanceof ClosedError) assert.ok(world.closeCalled, `${call.id} got the closed error before close()`);
      return;
    }
    assert.ok(run !== undefined, `${call.id} resolved without running`);
    if (HANDLE_OPS.has(call.op) && typeof value.ok === 'number') {
      assert.equal(value.info.key, call.id, `${call.id} got another call's result`);
      assert.ok(value.slot !== undefined, `${call.id}'s handle names no slot`);
      assert.ok(value.slot.instance === run.instance, `${call.id} ran on instance ${run.instance.n}, its handle names instance ${value.slot.instance.n}`);
      handles.push({ id: value.ok, slot: value.slot, instance: run.instance, busy: false, gone: false, dead: false });
    }
  };

  const newCall = () => {
    const op = rng.pick(NEW_CALLS);
    const call = { id: `call${calls.length}`, op, settled: 0, closedBefore: world.closeCalled };
    calls.push(call);
    pool.run(op, call.id, 1000n, 1000n).then(
      (r) => settle(call, 'resolved', r),
      (e) => settle(call, 'rejected', e),
    );
  };

  // What LockHandle does: one call at a time per handle; a release that released forgets the
  // handle; markAsReleased (or the finalizer) gives it up with dropLater.
  const handleCall = (h) => {
    const what = rng.pick(['release', 'release', 'extend', 'drop']);
    if (what === 'drop') {
      h.gone = true;
      world.givenUp.add(h.id);
      h.slot.dropLater(h.id);
      return;
    }
    h.busy = true;
    const closedBefore = world.closeCalled;
    h.slot.run(what, h.id, 1000n).then(
      (r) => {
        h.busy = false;
        world.check(!closedBefore, `${what} of handle ${h.id} after close() resolved`);
        if (what === 'release' && r.ok === 'released' && !h.gone) {
          h.gone = true;
          h.slot.forget();
        }
      },
      (e) => {
        h.busy = false;
        h.dead = true; // its instance failed or was closed: the handle can do nothing more
        if (closedBefore) world.check(e instanceof ClosedError, `${what} of handle ${h.id} after close() failed with ${e}`);
        else world.check(e instanceof ClosedError || e instanceof Trap, `${what} of handle ${h.id}: ${e}`);
      },
    );
  };

  const complete = (op1) => {
    const r = rng.next();
    const trap = knobs.trap;
    let outcome = 'ok';
    if (r < trap) outcome = 'trap';
    else if (r < 2 * trap) outcome = 'trap-after';
    else if (r < 0.4 && op1.op !== 'drop') outcome = 'given-up';
    op1.instance.complete(op1, outcome);
  };

  const close = () => {
    world.closeCalled = true;
    closing = pool.close();
    assert.equal(pool.close(), closing, 'close() again returns the same promise');
  };

  let issued = 0;
  for (;;) {
    const idle = handles.filter((h) => !h.busy && !h.gone && !h.dead);
    const actions = [];
    if (issued < knobs.calls) actions.push('call', 'call');
    if (idle.length > 0) actions.push('handle');
    if (world.inFlight.length > 0) actions.push('complete', 'complete');
    if (world.starting.length > 0) actions.push('start');
    if (closing === null && knobs.closeAt !== null && issued >= knobs.closeAt * knobs.calls) actions.push('close');
    if (actions.length === 0) {
      // Drops given up are sent on the next turn of the event loop (Slot.dropLater).
      await tick();
      if (world.inFlight.length === 0 && world.starting.length === 0) break;
      continue;
    }
    switch (rng.pick(actions)) {
      case 'call':
        issued += 1;
        newCall();
        break;
      case 'handle':
        handleCall(rng.pick(idle));
        break;
      case 'complete':
        complete(rng.pick(world.inFlight));
        break;
      case 'start': {
        const i = rng.int(0, world.starting.length - 1);
        const [instance] = world.starting.splice(i, 1);
        instance.settleReady(!rng.chance(knobs.trap * 3));
        break;
      }
      case 'close':
        close();
        break;
    }
    // Sometimes several steps in one turn, sometimes a few microtasks, sometimes a full turn.
    const pause = rng.int(0, 3);
    if (pause === 1) await Promise.resolve();
    else if (pause === 2) for (let i = rng.int(1, 8); i > 0; i--) await Promise.resolve();
    else if (pause === 3) await tick();
    world.throwFirst();
  }
  await tick();
  world.throwFirst();

  for (const call of calls) assert.equal(call.settled, 1, `${call.id} (${call.op}) never settled`);
  assert.ok(handles.every((h) => !h.busy), 'a handle call never settled');
  for (const slot of new Set([...pool.slots, ...handles.map((h) => h.slot)])) {
    if (slot.failed) continue;
    const live = handles.filter((h) => h.slot === slot && !h.gone).length;
    assert.equal(slot.handles, live, `instance ${slot.instance.n} counts ${slot.handles} handles, has ${live} live`);
    assert.equal(slot.busy, false, `instance ${slot.instance.n} busy with nothing in flight`);
    assert.equal(slot.queue.length, 0, `instance ${slot.instance.n} has calls queued with nothing in flight`);
  }
  // A call whose operation ended after close() had what it took given back (`trapped`).
  for (const instance of world.instances) {
    const late = [...world.runs.values()].some((run) => run.instance === instance && run.closedFirst);
    if (late) assert.ok(instance.trappedCalls > 0, `instance ${instance.n} ended a call after close() without giving its locks back`);
  }

  if (closing === null) close();
  await closing;
  // After close(): new calls, and every handle's calls, fail with the closed error.
  const after = await Promise.allSettled([pool.run('acquire', 'late', 1000n), ...handles.map((h) => h.slot.run('extend', h.id, 1000n))]);
  for (const r of after) assert.ok(r.status === 'rejected' && r.reason instanceof ClosedError, `after close(): ${r.status} ${r.reason ?? ''}`);
  for (const instance of world.instances) assert.ok(instance.closed || instance.failed, `instance ${instance.n} neither closed nor failed`);
  world.throwFirst();
}

test('pool: random arrivals, completions, waits given up, traps and close()', async () => {
  for (const seed of seeds(300)) await withSeed(seed, runCase);
});
