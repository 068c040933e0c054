// The worker thread of the worker backend: one component instance (jco's sync build). A
// `redis-eval` posts the call to the thread that owns the Redis client (which applies the
// policy and runs it) and blocks this thread (Atomics.wait) until the reply is there; a
// `wait-for-release` is carried the same way (the owning thread waits for the release signal,
// or pauses, and answers how the wait ended); sleeps block this thread too. The owning thread's
// event loop never waits for the component.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { memoryCap } from './memory.js';
import { instantiateSync } from './backend-sync.js';
import { scriptResource } from './redis-host.js';
import { awaitReply } from './reply-wait.js';
import { MAX_WAIT_MS } from './wait.js';
import { createExecutor } from './wit.js';

const { policy, witOptions, ctrl, port, nodeCount } = workerData;
// A reply that comes later than this is given up (the owner's own timer ends every call long
// before; this only guards against an owner whose event loop is stuck).
const FAILSAFE_MS = policy.commandTimeoutMs + 5000;
let seq = 0;

const Script = scriptResource(policy);

/** A Redis call (`eval`: `redis-eval`, `evalAll`: `redis-eval-all`) carried to the owning
 * thread, which polices and runs it; this thread blocks until the answer is there. */
function ask(kind, script, keys, args) {
  const id = ++seq;
  parentPort.postMessage({ t: kind, id, sha1: script.entry.sha1, keys, args });
  const reply = awaitReply(ctrl, receive, id, performance.now() + FAILSAFE_MS);
  if (reply === null) throw { tag: 'timeout' };
  if (reply.err !== undefined) throw reply.err;
  return reply.val;
}

const redisEval = (script, keys, args) => ask('eval', script, keys, args);

/** One result per primary (RedisHost.evalAll). */
const redisEvalAll = (script, keys, args) => ask('evalAll', script, keys, args);

const receive = () => receiveMessageOnPort(port)?.message;

/** `wait-for-release`: the owning thread waits (backend-worker.js, wait.js) and answers with the
 * WIT `wake`; its answer comes within the wait plus the command timeout. */
function waitForRelease(key, timeoutMs, listen) {
  const id = ++seq;
  parentPort.postMessage({ t: 'wait', id, key, timeoutMs, listen });
  const ms = timeoutMs > BigInt(MAX_WAIT_MS) ? MAX_WAIT_MS : Number(timeoutMs);
  const reply = awaitReply(ctrl, receive, id, performance.now() + ms + FAILSAFE_MS);
  if (reply === null) throw { tag: 'timeout' };
  if (reply.err !== undefined) throw reply.err;
  return reply.val;
}

// Sleeps are announced to the owning thread, whose watchdog does not count them as computing.
const onSleep = (ms) => parentPort.postMessage({ t: 'sleep', ms });

/** Tests only (`createWorkerInstance({ testSpinMs })`): the first random draw computes that
 * long, standing in for a component that loops without calling Redis or sleeping. */
function testOverrides() {
  let spin = workerData.testSpinMs ?? 0;
  if (spin === 0) return {};
  const compute = () => {
    const until = performance.now() + spin;
    spin = 0;
    while (performance.now() < until);
  };
  return {
    'wasi:random/random': {
      getRandomU64() {
        compute();
        return crypto.getRandomValues(new BigUint64Array(1))[0];
      },
      getRandomBytes(len) {
        compute();
        return crypto.getRandomValues(new Uint8Array(Number(len)));
      },
    },
  };
}

let executor;
let memoryCheck = () => null;
try {
  const memories = [];
  const root = instantiateSync({ Script, redisEval, waitForRelease, nodeCount: () => nodeCount, redisEvalAll }, memories, onSleep, testOverrides());
  memoryCheck = memoryCap(memories, policy.maxMemoryBytes);
  executor = createExecutor(root.lock, witOptions);
  parentPort.postMessage({ t: 'ready' });
} catch (e) {
  parentPort.postMessage({ t: 'trap', error: e?.stack ?? String(e), payload: e?.payload });
}

parentPort.on('message', ({ op, a, b, c }) => {
  executor.exec(op, a, b, c).then(
    (res) => {
      const trap = memoryCheck();
      if (trap !== null) parentPort.postMessage({ t: 'trap', error: trap.message });
      else parentPort.postMessage({ t: 'done', res });
    },
    (e) => parentPort.postMessage({ t: 'trap', error: e?.stack ?? String(e) }),
  );
});
