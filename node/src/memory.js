// The memory cap of an instance, checked after each call into the component.

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
