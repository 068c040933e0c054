// Component instances of one DistributedLock, each running one operation at a time.
//
// An instance must never be re-entered while a call into it is suspended (its linear memory and
// stack are in the middle of that call), so each instance has a queue. Concurrent calls on one
// DistributedLock go to different instances: the pool grows up to `maxInstances`, preferring an
// idle instance; a lock handle stays with the instance that created it.

// Operations whose result names a new lock handle in the instance.
const HANDLE_OPS = new Set(['acquire', 'tryAcquire', 'waitForLock', 'attach']);

class Slot {
  constructor(instance) {
    this.instance = instance;
    this.queue = [];
    this.busy = false;
    this.handles = 0; // live lock handles created here
    this.failed = null;
    this.ready = instance.ready ?? null; // a promise for instances that start asynchronously
    this.drops = []; // handles given up, dropped before the next operation
    this.dropScheduled = false;
  }

  get load() {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  /** Runs one operation once the instance is free; resolves to its result. */
  run(op, a, b, c) {
    if (this.failed) return Promise.reject(this.failed);
    if (this.busy || this.ready !== null) {
      return new Promise((resolve, reject) => {
        this.queue.push({ op, a, b, c, resolve, reject });
        if (!this.busy) this.drain();
      });
    }
    this.busy = true;
    // Without async functions on this path: see NOTES.md.
    const p = this.drops.length > 0 ? this.instance.exec('drop', this.drops.splice(0)).then(() => this.instance.exec(op, a, b, c)) : this.instance.exec(op, a, b, c);
    return p.then(
      (r) => {
        const trap = this.checked();
        if (trap !== null) {
          this.fail(trap);
          this.idle();
          throw trap;
        }
        this.count(op, r);
        this.idle();
        return r;
      },
      (e) => {
        this.fail(e);
        this.idle();
        throw e;
      },
    );
  }

  idle() {
    this.busy = false;
    if (this.queue.length > 0) this.drain();
  }

  /** Counts a new handle before the instance can be picked again (see Pool.pick). */
  count(op, result) {
    if (typeof result.ok === 'number' && HANDLE_OPS.has(op)) this.handles += 1;
    return result;
  }

  /** The instance's check after a call (its memory cap): a trap, or null. */
  checked() {
    return this.instance.afterCall === undefined ? null : this.instance.afterCall();
  }

  fail(e) {
    // A trap: the instance's state is unknown from here on; fail everything queued on it, and
    // give back the locks the failed call may have taken.
    if (this.failed === null) this.instance.trapped?.();
    this.failed ??= e;
    for (const job of this.queue.splice(0)) job.reject(e);
  }

  async drain() {
    this.busy = true;
    if (this.ready !== null) {
      try {
        await this.ready;
        this.ready = null;
      } catch (e) {
        this.fail(e);
        this.busy = false;
        return;
      }
    }
    while (this.queue.length > 0 && !this.failed) {
      const job = this.queue.shift();
      try {
        if (this.drops.length > 0) await this.instance.exec('drop', this.drops.splice(0));
        const r = await this.instance.exec(job.op, job.a, job.b, job.c);
        const trap = this.checked();
        if (trap !== null) throw trap;
        job.resolve(this.count(job.op, r));
      } catch (e) {
        job.reject(e);
        this.fail(e);
      }
    }
    this.busy = false;
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
}

export class Pool {
  /**
   * @param {() => {exec, close, ready?}} create makes one instance
   * @param {number} maxInstances
   */
  constructor(create, maxInstances) {
    this.create = create;
    this.max = maxInstances;
    this.slots = [];
  }

  /**
   * The slot for a new operation. A lock handle's release and extend run on the instance that
   * created it, so an operation that can wait long (`blocking`: acquire's retries,
   * waitForLock's polling) goes only to an instance holding no handles: a release must never
   * wait behind someone else's wait. Otherwise: an idle instance (one without handles first),
   * else a new one while under the cap, else the least loaded.
   */
  pick(blocking) {
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
    if (this.slots.length < this.max) {
      const slot = new Slot(this.create());
      this.slots.push(slot);
      return slot;
    }
    // At the cap: the least loaded instance, among those without handles for a blocking call
    // when there is one.
    let least = null;
    let leastFree = null;
    for (const s of this.slots) {
      if (least === null || s.load < least.load) least = s;
      if (s.handles === 0 && (leastFree === null || s.load < leastFree.load)) leastFree = s;
    }
    return (blocking ? leastFree : null) ?? least;
  }

  async close() {
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map((s) => s.instance.close()));
  }
}
