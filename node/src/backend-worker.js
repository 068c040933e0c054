// The worker backend, for Node without JSPI (22, or 24 releases with JSPI behind a flag): one
// worker thread per component instance (see worker.js). This thread does the Redis calls over
// the caller's client and answers the worker through a MessagePort plus Atomics.notify.
import { MessageChannel, Worker } from 'node:worker_threads';
import { evalScript } from './redis-host.js';

const WORKER = new URL('./worker.js', import.meta.url);

/**
 * One component instance in its own worker thread. `ready` settles once it is instantiated;
 * `exec` runs one operation (the caller serialises them); `close` ends the thread.
 */
export function createWorkerInstance({ redis, policy, witOptions }) {
  const ctrl = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(WORKER, {
    workerData: { policy, witOptions, ctrl, port: port2 },
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
    if (pending) {
      const p = pending;
      pending = null;
      p.reject(err);
    }
  };
  worker.on('message', (msg) => {
    switch (msg.t) {
      case 'eval': {
        const entry = policy.allowed.get(msg.sha1);
        const answer = (reply) => {
          port1.postMessage(reply);
          Atomics.store(ctrl, 0, 1);
          Atomics.notify(ctrl, 0);
        };
        evalScript(redis, policy, entry, msg.keys, msg.args).then(
          (val) => answer({ id: msg.id, val }),
          (err) => answer({ id: msg.id, err }),
        );
        break;
      }
      case 'done': {
        const p = pending;
        pending = null;
        worker.unref();
        p.resolve(msg.res);
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
      return new Promise((resolve, reject) => {
        pending = { resolve, reject };
        worker.ref(); // an operation in flight keeps the process alive, as a timer would
        worker.postMessage({ op, a, b, c });
      });
    },
    close() {
      failure ??= new Error('dlock: closed');
      return worker.terminate();
    },
  };
}
