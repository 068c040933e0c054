// Component instances of one DistributedLock, each running one operation at a time.
//
// An instance must never be re-entered while a call into it is suspended (its linear memory and
// stack are in the middle of that call), so each instance has a queue. Concurrent calls on one
// DistributedLock go to different instances: the pool grows up to `maxInstances`, preferring an
// idle instance; a lock handle stays with the instance that created it.

class Slot {
  constructor(instance) {
    this.instance = instance;
    this.queue = [];
    this.busy = false;
    this.handles = 0; // live lock handles created here
    this.failed = null;
    this.ready = instance.ready ?? null; // a promise for instances that start asynchronously
  }

  get load() {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  run(op, a, b, c) {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.queue.push({ op, a, b, c, resolve, reject });
      if (!this.busy) this.drain();
    });
  }

  async drain() {
    this.busy = true;
    if (this.ready !== null) {
      try {
        await this.ready;
        this.ready = null;
      } catch (e) {
        this.failed = e;
        for (const job of this.queue.splice(0)) job.reject(e);
        this.busy = false;
        return;
      }
    }
    while (this.queue.length > 0) {
      const job = this.queue.shift();
      try {
        job.resolve(await this.instance.exec(job.op, job.a, job.b, job.c));
      } catch (e) {
        // A trap: the instance's state is unknown from here on; fail everything queued on it.
        this.failed = e;
        job.reject(e);
        for (const rest of this.queue.splice(0)) rest.reject(e);
      }
    }
    this.busy = false;
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

  /** The slot for a new operation: an idle one (fewest handles first), else a new one while
   * under the cap, else the least loaded. */
  pick() {
    let idle = null;
    let least = null;
    for (const s of this.slots) {
      if (s.failed) continue;
      if (!s.busy && (idle === null || s.handles < idle.handles)) idle = s;
      if (least === null || s.load < least.load) least = s;
    }
    if (idle !== null) return idle;
    this.slots = this.slots.filter((s) => !s.failed);
    if (this.slots.length < this.max) {
      const slot = new Slot(this.create());
      this.slots.push(slot);
      return slot;
    }
    return least ?? this.pick();
  }

  async close() {
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map((s) => s.instance.close()));
  }
}
