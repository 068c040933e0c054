// Breaks a V8 CPU profile (`node --cpu-prof`) of this package down by where the main thread's
// time goes: self time summed per category (the component's wasm, jco's generated glue, this
// package's modules by file, ioredis, Node's internals, idle and GC), and the heaviest
// functions. Used for the numbers in docs/PERFORMANCE.md's Node section.
//
//   node tools/profile-breakdown.mjs PROFILE.cpuprofile [--top N]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
if (positionals.length !== 1) {
  console.error('usage: node tools/profile-breakdown.mjs PROFILE.cpuprofile [--top N]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(positionals[0], 'utf8'));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map(); // node id -> microseconds
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}

/** The category of a call frame. */
function category({ url, functionName }) {
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'V8 (program: unattributed native)';
  if (url.startsWith('wasm://') || /^[0-9a-f]{8}$/.test(url) || functionName.startsWith('wasm-function')) return 'component (wasm)';
  if (url.includes('/gen/')) return 'jco glue (gen/*/component.js)';
  if (url.includes('/node/src/')) return `dlock: ${url.slice(url.lastIndexOf('/') + 1)}`;
  if (url.includes('ioredis') || url.includes('redis-parser') || url.includes('denque')) return 'ioredis';
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  if (url === '') return `native: ${functionName || '(anonymous)'}`;
  return `other: ${url.slice(url.lastIndexOf('/') + 1)}`;
}

const byCategory = new Map();
const byFunction = new Map();
let total = 0;
for (const [id, us] of self) {
  const frame = nodes.get(id).callFrame;
  const cat = category(frame);
  total += us;
  byCategory.set(cat, (byCategory.get(cat) ?? 0) + us);
  const fn = `${frame.functionName || '(anonymous)'} ${frame.url.slice(frame.url.lastIndexOf('/') + 1)}:${frame.lineNumber + 1}`;
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
}
const busy = total - (byCategory.get('idle') ?? 0);
const pct = (us, of) => `${((100 * us) / of).toFixed(1)}%`;
console.log(`profile: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (not idle)`);
console.log('\nself time by category (share of busy time):');
for (const [cat, us] of [...byCategory].sort((a, b) => b[1] - a[1])) {
  if (cat !== 'idle') console.log(`  ${pct(us, busy).padStart(6)}  ${cat}`);
}
console.log(`\nheaviest functions (self time, share of busy time):`);
for (const [fn, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
  if (!fn.startsWith('(idle)')) console.log(`  ${pct(us, busy).padStart(6)}  ${fn}`);
}
