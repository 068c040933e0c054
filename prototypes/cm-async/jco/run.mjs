// Usage: node run.mjs DIR/MODULE.js [N]: calls acquire("lock:k", 30000n) and prints the reply,
// then times N calls.
const [mod, n = '0'] = process.argv.slice(2);
const m = await import(mod);
let r = m.acquire('lock:k', 30000n);
const isPromise = r instanceof Promise;
r = await r;
console.log(`acquire -> ${r} (returned a Promise: ${isPromise}); eval saw ${JSON.stringify(globalThis.seen)}`);
const calls = Number(n);
if (calls > 0) {
  const t = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) { const v = await m.acquire('lock:k', 30000n); if (v !== 1n) throw new Error(`got ${v}`); }
  console.log(`${calls} calls: ${Number(process.hrtime.bigint() - t) / calls} ns/call`);
}
