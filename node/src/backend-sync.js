// The component in its synchronous build (jco --instantiation sync), for the worker backend and
// for what needs no Redis in the caller's thread (the default options, checking options).
import { readFileSync } from 'node:fs';
import { instantiate } from '../gen/sync/component.js';
import { wasiImports } from './wasi.js';

const modules = new Map();

function getCoreModule(path) {
  let m = modules.get(path);
  if (m === undefined) {
    m = new WebAssembly.Module(readFileSync(new URL(`../gen/sync/${path}`, import.meta.url)));
    modules.set(path, m);
  }
  return m;
}

/** Instantiates the sync build with this `dlock:lock/redis` import; returns jco's root. */
export function instantiateSync(redisImport) {
  return instantiate(getCoreModule, { 'dlock:lock/redis': redisImport, ...wasiImports('sync') });
}

let probe;
/** An instance that may not reach Redis: for `default-options` and `client.create` checks. */
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
  });
  return probe;
}
