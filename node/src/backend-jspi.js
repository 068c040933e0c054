// The JSPI backend: component instances in the caller's thread, built with jco's
// `--async-mode jspi`. A call into the component that reaches `redis-eval` (or a sleep) suspends
// the component's stack (WebAssembly.Suspending) and gives the event loop back until the
// promise settles: nothing blocks, and many instances can be suspended at once. So does
// `wait-for-release` (a BLPOP on one of the DistributedLock's wait connections, or a pause:
// wait.js).
import { setFlagsFromString } from 'node:v8';
import { coreModule, instantiateCore, memoryCap } from './memory.js';
import { RedisHost, scriptResource } from './redis-host.js';
import { wasiImports } from './wasi.js';
import { createExecutor } from './wit.js';

/** Whether this Node has JSPI as the component needs it (the current API). */
export function jspiAvailable() {
  return typeof WebAssembly.Suspending === 'function' && typeof WebAssembly.promising === 'function';
}

let generated; // the jco bindings module, loaded on first use (it cannot run without JSPI)

/**
 * The size of the stack V8 gives each suspendable call, in KiB. V8's default (984 KiB) is above
 * glibc's mmap threshold, so every call into the component maps and unmaps a fresh stack and
 * faults its pages in: measured, that tripled the CPU per acquire+release at concurrency 32
 * (see docs/history/NODE.md). Only wasm frames live on these stacks (V8 runs JavaScript imports on the
 * central stack), and the component's frames are small: 64 KiB is many times what it needs.
 * A process that sets the flag itself (NODE_OPTIONS or the command line) keeps its value;
 * DLOCK_WASM_STACK_KB=0 leaves V8's default.
 */
const STACK_KB = Number(process.env.DLOCK_WASM_STACK_KB ?? 64);

function tuneStacks() {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
    .some((a) => a.startsWith('--wasm-stack-switching-stack-size'));
  if (!given && Number.isSafeInteger(STACK_KB) && STACK_KB > 0) {
    setFlagsFromString(`--wasm-stack-switching-stack-size=${STACK_KB}`);
  }
}

let loading; // the import of the bindings, once started

/** Loads the bindings (once; later calls share the first). */
export function loadJspi() {
  if (loading === undefined) {
    tuneStacks();
    loading = import('../gen/jspi/component.js').then((m) => {
      generated = m;
      return m;
    });
  }
  return loading;
}

/** The `dlock:lock/redis` import for one instance: `redisEval` and `waitForRelease` return
 * promises the component's stack waits on. */
function redisImports(host) {
  return {
    Script: scriptResource(host.policy),
    redisEval: (script, keys, args) => host.eval(script.entry, keys, args),
    waitForRelease: (key, timeoutMs, listen) => host.wait(key, timeoutMs, listen),
    nodeCount: () => host.nodeCount,
    redisEvalAll: (script, keys, args) => host.evalAll(script.entry, keys, args),
  };
}

/**
 * One component instance with its lock client, in this thread. `exec` runs one operation; the
 * caller serialises them (a suspended instance must not be re-entered). `trapped` is called
 * when an operation failed with a trap: the locks that call may have taken are given back.
 * Core modules are compiled and instantiated synchronously (allowed in Node) once the
 * bindings are loaded. `wasi` replaces WASI functions (tests only).
 */
export function createJspiInstance(options) {
  if (generated !== undefined) return jspiInstance(options);
  // The first instances of a process start once the bindings are loaded (importing this
  // package loads nothing, so that `require` works): the pool waits on `ready` and runs calls
  // on the instance it resolves to.
  let closed = false;
  return {
    ready: loadJspi().then(() => {
      const instance = jspiInstance(options);
      if (closed) instance.close();
      return instance;
    }),
    close() {
      closed = true;
    },
  };
}

function jspiInstance({ redis, policy, witOptions, bytes, blocking, wasi }) {
  const host = new RedisHost(redis, policy, bytes, blocking);
  const imports = { 'dlock:lock/redis': redisImports(host), ...wasiImports('async', wasi) };
  const memories = [];
  const root = generated.instantiate(coreModule, imports, instantiateCore(memories));
  if (typeof root?.then === 'function') throw new Error('dlock: jco instantiation did not complete synchronously');
  const executor = createExecutor(root.lock, witOptions);
  const memoryCheck = memoryCap(memories, policy.maxMemoryBytes);
  return {
    exec(op, a, b, c) {
      host.begin();
      return executor.exec(op, a, b, c);
    },
    afterCall: memoryCheck,
    succeeded() {
      host.end();
    },
    trapped() {
      host.close();
      return host.releaseGrants();
    },
    close() {
      host.close();
    },
    /** @internal for tests */
    host,
  };
}
