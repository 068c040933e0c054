// The JSPI backend: component instances in the caller's thread, built with jco's
// `--async-mode jspi`. A call into the component that reaches `redis-eval` (or a sleep) suspends
// the component's stack (WebAssembly.Suspending) and gives the event loop back until the
// promise settles: nothing blocks, and many instances can be suspended at once.
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { EvalWindow } from './policy.js';
import { redisImportsAsync } from './redis-host.js';
import { wasiImports } from './wasi.js';
import { createExecutor, SUSPENDING_OPS } from './wit.js';

/** Whether this Node has JSPI as the component needs it (the current API). */
export function jspiAvailable() {
  return typeof WebAssembly.Suspending === 'function' && typeof WebAssembly.promising === 'function';
}

let generated; // the jco bindings module, loaded on first use (it cannot run without JSPI)
const modules = new Map(); // core modules, compiled once per process

function getCoreModule(path) {
  let m = modules.get(path);
  if (m === undefined) {
    m = new WebAssembly.Module(readFileSync(new URL(`../gen/jspi/${path}`, import.meta.url)));
    modules.set(path, m);
  }
  return m;
}

/**
 * The size of the stack V8 gives each suspendable call, in KiB. V8's default (984 KiB) is above
 * glibc's mmap threshold, so every call into the component maps and unmaps a fresh stack and
 * faults its pages in: measured, that tripled the CPU per acquire+release at concurrency 32
 * (see NOTES.md). Only wasm frames live on these stacks (V8 runs JavaScript imports on the
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

/** Loads the bindings; call (and await) once before `createJspiInstance`. */
export async function loadJspi() {
  if (generated === undefined) {
    tuneStacks();
    generated = await import('../gen/jspi/component.js');
  }
  return generated;
}

/**
 * One component instance with its lock client, in this thread. `exec` runs one operation; the
 * caller serialises them (a suspended instance must not be re-entered).
 * Synchronous: core modules are compiled and instantiated synchronously (allowed in Node).
 */
export function createJspiInstance({ redis, policy, witOptions }) {
  const ctx = { redis, policy, window: new EvalWindow() };
  const imports = { 'dlock:lock/redis': redisImportsAsync(ctx), ...wasiImports('async') };
  const root = generated.instantiate(getCoreModule, imports, (module, imp) => new WebAssembly.Instance(module, imp));
  if (typeof root?.then === 'function') throw new Error('dlock: jco instantiation did not complete synchronously');
  const executor = createExecutor(root.lock, witOptions);
  return {
    exec(op, a, b, c) {
      if (SUSPENDING_OPS.has(op)) ctx.window.begin();
      return executor.exec(op, a, b, c);
    },
    close() {},
  };
}
