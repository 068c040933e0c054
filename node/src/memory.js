// The component's core modules and their instances' memories (for the memory cap, checked after
// each call into the component), shared by the JSPI and sync builds.
import { readFileSync } from 'node:fs';

const modules = new Map();

/** jco's `getCoreModule` for both builds (their core modules are the same: `gen/core/`): each
 * compiled once per process. */
export function coreModule(path) {
  let m = modules.get(path);
  if (m === undefined) {
    m = new WebAssembly.Module(readFileSync(new URL(`../gen/core/${path}`, import.meta.url)));
    modules.set(path, m);
  }
  return m;
}

/** jco's `instantiateCore`: instantiates synchronously and pushes the instance's memories onto
 * `memories`. */
export function instantiateCore(memories) {
  return (module, imp) => {
    const instance = new WebAssembly.Instance(module, imp);
    for (const v of Object.values(instance.exports)) if (v instanceof WebAssembly.Memory) memories.push(v);
    return instance;
  };
}

/**
 * A check of the memories' sizes against `max`, for after each call: an Error when one is
 * over, else null. Cheap when nothing grew: a memory's old ArrayBuffer is detached
 * (byteLength 0) exactly when it grows, so the costly `memory.buffer` getter runs only then.
 */
export function memoryCap(memories, max) {
  const buffers = memories.map((m) => m.buffer);
  return () => {
    for (let i = 0; i < buffers.length; i++) {
      if (buffers[i].byteLength !== 0) continue;
      buffers[i] = memories[i].buffer;
      const size = buffers[i].byteLength;
      if (size > max) return new Error(`the component's memory grew to ${size} bytes; the limit is ${max}`);
    }
    return null;
  };
}
