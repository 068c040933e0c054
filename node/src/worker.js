// The worker thread of the worker backend: one component instance (jco's sync build). A
// `redis-eval` posts the call to the thread that owns the Redis client and blocks this thread
// (Atomics.wait) until the reply is there; sleeps block this thread too. The owning thread's
// event loop never waits for the component.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { instantiateSync } from './backend-sync.js';
import { admitScript, EvalWindow } from './policy.js';
import { refusal } from './redis-host.js';
import { createExecutor, SUSPENDING_OPS } from './wit.js';

const { policy, witOptions, ctrl, port } = workerData;
const window = new EvalWindow();
// A reply that comes later than this is given up (the owner's own timer ends every call long
// before; this only guards against an owner whose event loop is stuck).
const FAILSAFE_MS = policy.commandTimeoutMs + 5000;
let seq = 0;

class Script {
  constructor(entry) {
    this.entry = entry;
  }
  static load(source) {
    const entry = admitScript(policy, source);
    if (typeof entry === 'string') throw { tag: 'denied', val: entry };
    return new Script(entry);
  }
}

function redisEval(script, keys, args) {
  const denied = refusal(policy, window, keys, args);
  if (denied !== null) throw denied;
  const id = ++seq;
  Atomics.store(ctrl, 0, 0);
  parentPort.postMessage({ t: 'eval', id, sha1: script.entry.sha1, keys, args });
  const deadline = performance.now() + FAILSAFE_MS;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) throw { tag: 'timeout' };
    Atomics.wait(ctrl, 0, 0, left);
    let msg;
    while ((msg = receiveMessageOnPort(port)) !== undefined) {
      if (msg.message.id === id) {
        if (msg.message.err !== undefined) throw msg.message.err;
        return msg.message.val;
      }
      // a reply to a call given up on earlier: dropped
    }
    Atomics.store(ctrl, 0, 0);
  }
}

let executor;
try {
  const root = instantiateSync({ Script, redisEval });
  executor = createExecutor(root.lock, witOptions);
  parentPort.postMessage({ t: 'ready' });
} catch (e) {
  parentPort.postMessage({ t: 'trap', error: e?.stack ?? String(e), payload: e?.payload });
}

parentPort.on('message', ({ op, a, b, c }) => {
  if (SUSPENDING_OPS.has(op)) window.begin();
  executor.exec(op, a, b, c).then(
    (res) => parentPort.postMessage({ t: 'done', res }),
    (e) => parentPort.postMessage({ t: 'trap', error: e?.stack ?? String(e) }),
  );
});
