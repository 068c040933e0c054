// Component instances of one DistributedLock, each running one operation at a time.
//
// An instance must never be re-entered while a call into it is suspended (its linear memory and
// stack are in the middle of that call), so each instance has a queue. Concurrent calls on one
// DistributedLock go to different instances: the pool grows up to `maxInstances`, preferring an
// idle instance; a lock handle stays with the instance that created it.
//
// Which instance owns a handle is named in one place: Slot.step, where the operation that
// created the handle completed and the handle is counted. A queued call is one job object that
// sits in exactly one queue at a time and is settled by the slot that runs it (or fails it);
// moving a call to another instance moves that object.

// Operations whose result names a new lock handle in the instance.
const HANDLE_OPS = new Set(['acquire', 'tryAcquire', 'waitForLock', 'attach', 'acquirePermits', 'tryAcquirePermits', 'waitForPermits']);
// Operations that can wait long (acquire's retries, waitForLock's polling).
export const BLOCKING_OPS = new Set(['acquire', 'waitForLock', 'acquirePermits', 'waitForPermits']);

/** `v`, or for a function its value now (see `Slot.step`). */
const now = (v) => (typeof v === 'function' ? v() : v);

class Slot {
  constructor(instance, pool) {
    this.instance = instance;
    this.pool = pool;
    this.queue = [];
    this.busy = false;
    this.handles = 0; // live lock handles created here
    this.failed = null;
    // For instances that start asynchronously: a promise, which may resolve to the instance
    // that replaces this one once it has started.
    this.ready = instance.ready ?? null;
    this.drops = []; // handles given up, dropped before the next operation
    this.dropScheduled = false;
    this.givenBack = null; // once failed: settles when the failed call's locks are given back
  }

  get load() {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  /** Whether the pool was closed: nothing runs here any more. */
  get closed() {
    return this.pool.closedErr !== null;
  }

  /** The error a call here fails with at once: the pool's closed error once it is closed (also
   * for an instance that failed before), else the failure that ended the instance, else null. */
  refusal() {
    return this.pool.closedErr ?? this.failed;
  }

  /**
   * Runs one operation once the instance is free; resolves to its result (see `step`). Rejects
   * at once with the closed error after Pool.close(), or with the failure that ended the
   * instance.
   */
  run(op, a, b, c) {
    const refused = this.refusal();
    if (refused !== null) return Promise.reject(refused);
    if (this.busy || this.ready !== null) {
      return new Promise((resolve, reject) => this.enqueue({ op, a, b, c, resolve, reject }));
    }
    // Without async functions on this path: see docs/history/NODE.md.
    this.busy = true;
    return this.step(op, a, b, c).then(
      (r) => {
        this.idle();
        return r;
      },
      (e) => {
        this.idle();
        throw e;
      },
    );
  }

  /**
   * Queues `job` (`{ op, a, b, c, resolve, reject }`) here, to be settled once: by its result
   * here, by this slot's failure or close, or by whichever slot it is moved to.
   */
  enqueue(job) {
    const refused = this.refusal();
    if (refused !== null) {
      job.reject(refused);
      return;
    }
    this.queue.push(job);
    if (!this.busy) this.drain();
  }

  /**
   * One operation on the instance, which is free (handles given up are dropped first): its
   * result once it passed the host's check, counted. A result with a new lock handle is
   * `{ ok: id, info, slot }`, `slot` being this slot, whose instance holds the handle. A
   * failure (a trap) fails the slot. An argument that is a function is called when the
   * operation reaches the instance, for its value then (a wait's time left, after the time
   * the call spent queued or waiting for the instance to start).
   */
  step(op, a, b, c) {
    const exec = this.instance;
    let started = false;
    const run = () => {
      started = true;
      return exec.exec(op, now(a), now(b), now(c));
    };
    // A close() while the drops run ends the call before it reaches the instance.
    const then = () => (this.closed ? Promise.reject(this.refusal()) : run());
    const p = this.drops.length > 0 ? exec.exec('drop', this.drops.splice(0)).then(then) : run();
    return p.then(
      (r) => {
        const trap = this.closed ? this.closedDuring(started) : this.checked();
        if (trap !== null) {
          // A trap after the call (its memory cap), or a call that ended after close(): what it
          // returned is discarded, so the locks it took are given back.
          this.fail(trap, true);
          throw trap;
        }
        exec.succeeded?.();
        if (typeof r.ok !== 'number' || !HANDLE_OPS.has(op)) return r;
        this.handles += 1; // before the slot can be picked again (Pool.pick)
        // Waits queued here while it held no handle must not delay this one's calls.
        if (this.queue.length > 0) this.pool.moveBlocking(this);
        return { ...r, slot: this };
      },
      (e) => {
        const err = this.closed ? this.closedDuring(started) : e;
        this.fail(err, true);
        throw err;
      },
    );
  }

  /** The error of a call that close() ended: the closed error, marked `inFlight` when the call
   * had reached the instance (it may have acted in Redis: a release or extend may have been
   * carried out, and a lock an acquire was granted is being given back). */
  closedDuring(started) {
    if (!started) return this.refusal();
    const err = this.pool.closedError();
    err.inFlight = true;
    return err;
  }

  idle() {
    this.busy = false;
    if (this.queue.length > 0) this.drain();
  }

  /** The instance's check after a call (its memory cap): a trap, or null. */
  checked() {
    return this.instance.afterCall === undefined ? null : this.instance.afterCall();
  }

  /**
   * The instance's state is unknown from here on (a trap), or it is closed: fails everything
   * queued on it; `giveBack`: the call that failed was in flight, so the locks it may have taken
   * are given back (never those of calls that returned their handles).
   */
  fail(e, giveBack) {
    if (giveBack && this.givenBack === null) this.givenBack = Promise.resolve(this.instance.trapped?.());
    this.failed ??= e;
    for (const job of this.queue.splice(0)) job.reject(this.failed);
  }

  async drain() {
    this.busy = true;
    if (this.ready !== null) {
      try {
        const started = await this.ready;
        this.ready = null;
        if (started !== undefined) this.instance = started;
      } catch (e) {
        this.fail(e, false);
        this.busy = false;
        return;
      }
    }
    while (this.queue.length > 0 && !this.failed) {
      const job = this.queue.shift();
      try {
        job.resolve(await this.step(job.op, job.a, job.b, job.c));
      } catch (e) {
        job.reject(e);
      }
    }
    this.busy = false;
  }

  /** A handle's lock is no longer here (released: the instance dropped its resource). */
  forget() {
    this.handles -= 1;
  }

  /** Gives a lock handle's resource back to the instance, before its next operation or soon. */
  dropLater(id) {
    this.handles -= 1;
    if (this.failed) return;
    this.drops.push(id);
    if (!this.dropScheduled) {
      this.dropScheduled = true;
      setImmediate(() => {
        this.dropScheduled = false;
        if (this.drops.length > 0 && !this.failed) this.run('drop', this.drops.splice(0)).catch(() => {});
      }).unref();
    }
  }

  /** Ends the instance (the pool is closed): every later call fails with `err`; a call in
   * flight gives back its locks. */
  close(err) {
    this.fail(err, false);
    return this.instance.close();
  }
}

export class Pool {
  /**
   * @param {() => {exec, close, ready?}} create makes one instance (`ready`: a promise that
   *   settles once it can run calls, resolving to the instance to run them on, if another)
   * @param {number} maxInstances
   * @param {() => Error} closedError the error of every call after close()
   */
  constructor(create, maxInstances, closedError = () => new Error('dlock: closed')) {
    this.create = create;
    this.max = maxInstances;
    this.slots = [];
    this.closedError = closedError;
    this.closedErr = null; // the error of every call once close() was called
    this.closing = null;
  }

  /**
   * Runs a new operation (one that is not a handle's) on the slot Pool.pick chooses. A result
   * with a new lock handle names the slot that owns it (`slot`, see Slot.step), which may not
   * be the slot first picked: a queued wait can move (Pool.moveBlocking). Rejects with the
   * closed error after close().
   */
  run(op, a, b, c) {
    let slot;
    try {
      slot = this.pick(BLOCKING_OPS.has(op));
    } catch (e) {
      return Promise.reject(e);
    }
    return slot.run(op, a, b, c);
  }

  /**
   * The slot for a new operation. A lock handle's release and extend run on the instance that
   * created it, so an operation that can wait long (`blocking`: acquire's retries,
   * waitForLock's polling) goes only to an instance holding no handles: a release or extend
   * must never wait behind someone else's wait. When every instance at the cap holds handles,
   * a blocking operation gets a new instance beyond the cap. Otherwise: an idle instance (one
   * without handles first), else a new one while under the cap, else the least loaded.
   * Throws the closed error after close().
   */
  pick(blocking) {
    if (this.closing !== null) throw this.closedError();
    let idleFree = null; // idle, no handles
    let idle = null; // idle, with handles
    let failed = 0;
    for (const s of this.slots) {
      if (s.failed) {
        failed += 1;
      } else if (!s.busy) {
        if (s.handles === 0) {
          idleFree = s;
          break;
        }
        idle ??= s;
      }
    }
    if (idleFree !== null) return idleFree;
    if (idle !== null && !blocking) return idle;
    if (failed > 0) this.slots = this.slots.filter((s) => !s.failed);
    if (this.slots.length < this.max) return this.add();
    // At the cap: the least loaded instance; for a blocking call, the least loaded without
    // handles, or a new one.
    let least = null;
    let leastFree = null;
    for (const s of this.slots) {
      if (least === null || s.load < least.load) least = s;
      if (s.handles === 0 && (leastFree === null || s.load < leastFree.load)) leastFree = s;
    }
    if (blocking) return leastFree ?? this.add();
    return least;
  }

  /**
   * Moves the blocking jobs queued on `slot` (which now holds a handle) to the slots Pool.pick
   * chooses for them, as they are: the slot that finally runs a job settles it, and names itself
   * in a handle it returns (Slot.step).
   */
  moveBlocking(slot) {
    const moved = slot.queue.filter((j) => BLOCKING_OPS.has(j.op));
    if (moved.length === 0) return;
    slot.queue = slot.queue.filter((j) => !BLOCKING_OPS.has(j.op));
    for (const job of moved) {
      let to;
      try {
        to = this.pick(true);
      } catch (e) {
        job.reject(e);
        continue;
      }
      to.enqueue(job);
    }
  }

  add() {
    const slot = new Slot(this.create(), this);
    this.slots.push(slot);
    return slot;
  }

  /** Ends every instance; final (later calls fail with the closed error, on every slot) and
   * idempotent. */
  close() {
    if (this.closing === null) {
      const slots = this.slots;
      this.slots = [];
      this.closedErr = this.closedError();
      this.closing = Promise.all(slots.map((s) => s.close(this.closedErr))).then(() => {});
    }
    return this.closing;
  }
}
