// The component in its synchronous build (jco --instantiation sync), for the worker backend and
// for what needs no Redis in the caller's thread (the default options, checking options).
import { instantiate } from '../gen/sync/component.js';
import { coreModule, instantiateCore } from './memory.js';
import { wasiImports } from './wasi.js';


/**
 * Instantiates the sync build with this `dlock:lock/redis` import; returns jco's root. The
 * instance's memories are pushed onto `memories` (for the memory cap); `onSleep(ms)` is told
 * of every sleep before it starts; `overrides` replace WASI functions (tests only).
 */
export function instantiateSync(redisImport, memories = [], onSleep = undefined, overrides = {}) {
  const imports = { 'dlock:lock/redis': redisImport, ...wasiImports('sync', overrides, onSleep) };
  return instantiate(coreModule, imports, instantiateCore(memories));
}

let probe;
/** An instance that may not reach Redis: for `default-options` and `client.create` checks.
 * Its `wait-for-release` answers `unsupported` (the component would sleep): its imports run in
 * the caller's thread and answer synchronously, so it could only wait by blocking that thread,
 * and it never meets a busy lock anyway. The worker backend runs this same sync build with
 * imports that wait (worker.js). */
export function probeInstance() {
  probe ??= instantiateSync({
    Script: class {
      static load() {
        throw { tag: 'denied', val: 'no Redis in the probe instance' };
      }
    },
    redisEval() {
      throw { tag: 'denied', val: 'no Redis in the probe instance' };
    },
    waitForRelease() {
      return 'unsupported';
    },
    nodeCount: () => 1,
    redisEvalAll() {
      throw { tag: 'denied', val: 'no Redis in the probe instance' };
    },
  });
  return probe;
}
