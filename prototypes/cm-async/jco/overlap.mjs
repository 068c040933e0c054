// Usage: node overlap.mjs DIR/MODULE.js K: starts K acquire calls without awaiting in between
// (JSPI build of world a), to see whether jco lets them overlap in one instance.
const [mod, k = '8'] = process.argv.slice(2);
const m = await import(mod);
try {
  const rs = await Promise.all(Array.from({ length: Number(k) }, (_, i) => m.acquire(`lock:${i}`, 30000n)));
  console.log(`${k} overlapping acquires -> ${rs.join(',')}`);
} catch (e) { console.log(`${k} overlapping acquires failed: ${e}`); }
