// The worker backend, for Node without JSPI (22, or 24 releases with JSPI behind a flag): one
// worker thread per component instance (see worker.js). This thread applies the policy and does
// the Redis calls and the waits for a release over the caller's client (RedisHost), answers the
// worker through a MessagePort plus Atomics.notify, and watches how long the worker computes: a
// call that computes longer than `policy.maxComputeMs` without calling Redis or sleeping has its
// worker terminated (a trap), as the Rust host's epoch watchdog does.
import { MessageChannel, Worker } from 'node:worker_threads';
import { RedisHost } from './redis-host.js';

const WORKER = new URL('./worker.js', import.meta.url);

/**
 * One component instance in its own worker thread. `ready` settles once it is instantiated;
 * `exec` runs one operation (the caller serialises them); `close` ends the thread.
 */
export function createWorkerInstance({ redis, policy, witOptions, bytes, blocking, testSpinMs }) {
  const host = new RedisHost(redis, policy, bytes, blocking);
  const ctrl = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(WORKER, {
    workerData: { policy, witOptions, ctrl, port: port2, testSpinMs, nodeCount: host.nodeCount },
    transferList: [port2],
  });
  port1.unref();
  let pending = null; // {resolve, reject} of the operation in flight
  let failure = null;
  let readyResolve, readyReject;
  const ready = new Promise((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  const fail = (err) => {
    failure ??= err;
    readyReject(err);
    stopWatch();
    if (pending) {
      const p = pending;
      pending = null;
      p.reject(err);
    }
  };

  // The compute watchdog: while an operation runs, the worker is computing except while this
  // thread has one of its Redis calls or waits in flight or it sleeps.
  const maxCompute = policy.maxComputeMs;
  let computingSince = 0; // when the worker last started computing (performance.now())
  let evalsInFlight = 0;
  let watch = null;
  const check = () => {
    if (evalsInFlight === 0 && performance.now() - computingSince > maxCompute) {
      fail(new Error(`the component computed more than ${maxCompute} ms without calling Redis or sleeping`));
      worker.terminate();
    }
  };
  const startWatch = () => {
    computingSince = performance.now();
    watch = setInterval(check, Math.max(10, Math.min(250, maxCompute / 4)));
    watch.unref();
  };
  function stopWatch() {
    if (watch !== null) clearInterval(watch);
    watch = null;
  }

  const answer = (reply) => {
    port1.postMessage(reply);
    Atomics.store(ctrl, 0, 1);
    Atomics.notify(ctrl, 0);
    evalsInFlight -= 1;
    computingSince = performance.now();
  };
  worker.on('message', (msg) => {
    switch (msg.t) {
      case 'eval':
      case 'evalAll': {
        evalsInFlight += 1;
        const entry = policy.allowed.get(msg.sha1);
        const run = msg.t === 'eval' ? host.eval(entry, msg.keys, msg.args) : host.evalAll(entry, msg.keys, msg.args);
        run.then(
          (val) => answer({ id: msg.id, val }),
          (err) => answer({ id: msg.id, err }),
        );
        break;
      }
      case 'wait':
        evalsInFlight += 1;
        host.wait(msg.key, msg.timeoutMs, msg.listen).then(
          (val) => answer({ id: msg.id, val }),
          (err) => answer({ id: msg.id, err }),
        );
        break;
      case 'sleep':
        // The worker sleeps until then: not computing.
        computingSince = Math.max(computingSince, performance.now() + msg.ms);
        break;
      case 'done': {
        stopWatch();
        const p = pending;
        pending = null;
        worker.unref();
        p?.resolve(msg.res);
        break;
      }
      case 'ready':
        worker.unref();
        readyResolve();
        break;
      case 'trap': {
        const err = new Error(`dlock: the component trapped in its worker: ${msg.error}`);
        if (msg.payload !== undefined) err.payload = msg.payload;
        fail(err);
        worker.terminate();
        break;
      }
    }
  });
  worker.on('error', (e) => fail(e));
  worker.on('exit', (code) => fail(new Error(`dlock: the component's worker exited (${code})`)));
  return {
    ready,
    exec(op, a, b, c) {
      if (failure) return Promise.reject(failure);
      host.begin();
      return new Promise((resolve, reject) => {
        pending = { resolve, reject };
        worker.ref(); // an operation in flight keeps the process alive, as a timer would
        startWatch();
        worker.postMessage({ op, a, b, c });
      });
    },
    succeeded() {
      host.end();
    },
    trapped() {
      host.close();
      return host.releaseGrants();
    },
    close() {
      failure ??= new Error('dlock: closed');
      stopWatch();
      host.close();
      return worker.terminate();
    },
    /** @internal for tests */
    host,
    /** @internal for tests */
    worker,
  };
}
