// Acquire+release pairs per second through this package (both backends), through a
// plain-JavaScript implementation of the same algorithm and scripts (the original package's
// approach), through node-redlock's maintained fork on one node and through redis-semaphore's
// Mutex: all over one ioredis client to one local redis-server (started here on a free
// loopback port unless REDIS_URL is set).
//
//   node bench.mjs [--seconds S] [--rounds R] [--concurrency 1,32]
//                  [--impls dlock,dlock-worker,plain,redlock,semaphore,dlock-sem,redis-semaphore-sem]
//
// `dlock-sem` and `redis-semaphore-sem` are counting semaphores instead: one permit of one
// shared key (limit 1000) per pair, this package's `lock.semaphore` against redis-semaphore's
// `Semaphore`.
//
// Each (implementation, concurrency) is run R rounds, interleaved, each round S seconds after a
// short warm-up; the table shows the median round. CPU per pair is this process' user+system CPU
// (process.cpuUsage, all threads) over the pairs done. Keys are distinct per concurrent loop, so
// there is no contention: this measures the cost of the path, not the lock's fairness.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Redlock } from '@sesamecare-oss/redlock';
import { Mutex, Semaphore } from 'redis-semaphore';
import { DistributedLock, defaultBackend } from './src/index.js';
import { freePort } from './test/helpers.mjs';

const { values: argv } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,32' },
    impls: { type: 'string', default: '' },
    warmup: { type: 'string', default: '0.5' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (argv.help) {
  console.log(`usage: node bench.mjs [--seconds S] [--rounds R] [--concurrency 1,32] [--impls dlock,dlock-worker,plain,redlock,semaphore,dlock-sem,redis-semaphore-sem] [--warmup S]

Acquire+release pairs per second, median of R interleaved rounds of S seconds each, for this
package (JSPI where this Node has it, and the worker backend), a plain-JavaScript lock with the
same scripts, node-redlock's fork on one node and redis-semaphore's Mutex, over one ioredis
client to a redis-server started here (or REDIS_URL). Defaults: 3 s, 3 rounds, concurrency 1
and 32, every implementation, 0.5 s warm-up.`);
  process.exit(0);
}
const SECONDS = Number(argv.seconds);
const ROUNDS = Number(argv.rounds);
const WARMUP = Number(argv.warmup);
const CONCURRENCY = argv.concurrency.split(',').map(Number);

// ---------------------------------------------------------------------------------------------
// A plain-JavaScript lock: the original package's algorithm (UUID token, acquire script, retry
// with exponential backoff; release by compare-and-delete) with the component's own scripts.
const scripts = Object.fromEntries(
  JSON.parse(readFileSync(new URL('./gen/component.json', import.meta.url), 'utf8')).scripts.map((s) => [s.name, s]),
);

class PlainLock {
  constructor(redis, { retryCount = 5, retryDelayMs = 100 } = {}) {
    this.redis = redis;
    this.retryCount = retryCount;
    this.retryDelayMs = retryDelayMs;
  }
  async run(script, key, args) {
    try {
      return await this.redis.evalsha(script.sha1, 1, key, ...args);
    } catch (e) {
      if (e?.message?.startsWith('NOSCRIPT')) return this.redis.eval(script.source, 1, key, ...args);
      throw e;
    }
  }
  async acquire(key, ttlMs) {
    const token = randomUUID();
    for (let attempt = 1; attempt <= this.retryCount + 1; attempt++) {
      if (attempt > 1) await new Promise((r) => setTimeout(r, this.retryDelayMs * 2 ** (attempt - 2)));
      const acquiredAt = Date.now();
      if ((await this.run(scripts.acquire, key, [token, String(ttlMs)])) > 0) {
        return new PlainHandle(this, key, token, acquiredAt, acquiredAt + ttlMs);
      }
    }
    throw new Error(`could not acquire ${key}`);
  }
}

class PlainHandle {
  constructor(lock, key, token, acquiredAt, expiresAt) {
    Object.assign(this, { lock, key, token, acquiredAt, expiresAt, held: true });
  }
  get isHeld() {
    return this.held && Date.now() < this.expiresAt;
  }
  async release() {
    if (!this.held) throw new Error('not held');
    const r = await this.lock.run(scripts.release, this.key, [this.token]);
    this.held = false;
    if (r !== 1) throw new Error('not held');
  }
}

// ---------------------------------------------------------------------------------------------

async function startRedis() {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: () => {} };
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => {}); // refused until the server listens
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return { url, stop: () => child.kill('SIGKILL') };
    } catch {
      probe.disconnect();
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill('SIGKILL');
  throw new Error('redis-server did not start');
}

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Runs `pair(loopIndex)` in `concurrency` loops for `seconds`; returns the figures. */
async function measure(pair, concurrency, seconds) {
  const lat = [];
  let stop = false;
  const loop = async (w) => {
    while (!stop) {
      const t0 = process.hrtime.bigint();
      await pair(w);
      lat.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const loops = Array.from({ length: concurrency }, (_, w) => loop(w));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  stop = true;
  await Promise.all(loops);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  lat.sort((a, b) => a - b);
  return {
    pairs: lat.length,
    opsPerSec: lat.length / elapsed,
    p50us: pct(lat, 50),
    p99us: pct(lat, 99),
    cpuUsPerPair: (cpu.user + cpu.system) / lat.length,
  };
}

const { url, stop } = await startRedis();
const redis = new Redis(url, { enableAutoPipelining: process.env.AUTOPIPE === "1" });
await redis.ping();

// The bench measures throughput: the policy's rates (4 MiB/s by default per DistributedLock,
// about 20k pairs/s) are not in the way.
const policy = { maxBytesPerSecond: Number.MAX_SAFE_INTEGER, maxEvalsPerSecond: 2 ** 32 - 1 };
const impls = {
  dlock: () => {
    const lock = new DistributedLock(redis, { policy });
    return { name: `dlock (${lock.backend})`, pair: async (w) => (await lock.acquire(`bench:dlock:${w}`, 10000)).release(), close: () => lock.close() };
  },
  'dlock-worker': () => {
    const lock = new DistributedLock(redis, { backend: 'worker', maxInstances: 32, policy });
    return { name: 'dlock (worker)', pair: async (w) => (await lock.acquire(`bench:dlockw:${w}`, 10000)).release(), close: () => lock.close() };
  },
  plain: () => {
    const lock = new PlainLock(redis);
    return { name: 'plain JS', pair: async (w) => (await lock.acquire(`bench:plain:${w}`, 10000)).release() };
  },
  redlock: () => {
    const redlock = new Redlock([redis], { retryCount: 5, retryDelay: 100, retryJitter: 0, automaticExtensionThreshold: 500 });
    return { name: 'redlock (1 node)', pair: async (w) => (await redlock.acquire([`bench:redlock:${w}`], 10000)).release() };
  },
  semaphore: () => {
    // One Mutex per loop (a Mutex is one key); no refresh timer, as none of the others has one.
    const mutexes = new Map();
    const mutex = (w) => {
      let m = mutexes.get(w);
      if (m === undefined) mutexes.set(w, (m = new Mutex(redis, `bench:semaphore:${w}`, { lockTimeout: 10000, refreshInterval: 0 })));
      return m;
    };
    return {
      name: 'redis-semaphore Mutex',
      pair: async (w) => {
        const m = mutex(w);
        await m.acquire();
        await m.release();
      },
    };
  },
};
// Counting semaphores: one permit of one shared key per pair, with a limit above any
// concurrency measured (every loop gets its permit; the key's sorted set is shared).
const SEM_LIMIT = 1000;
Object.assign(impls, {
  'dlock-sem': () => {
    const lock = new DistributedLock(redis, { policy });
    const sem = lock.semaphore('bench:dlock-sem', SEM_LIMIT);
    return { name: `dlock semaphore (${lock.backend})`, pair: async () => (await sem.acquire(10000)).release(), close: () => lock.close() };
  },
  'redis-semaphore-sem': () => {
    // One Semaphore object per loop (each is one holder), all on one key; no refresh timer.
    const sems = new Map();
    const sem = (w) => {
      let s = sems.get(w);
      if (s === undefined) sems.set(w, (s = new Semaphore(redis, 'bench:rs-sem', SEM_LIMIT, { lockTimeout: 10000, refreshInterval: 0 })));
      return s;
    };
    return {
      name: 'redis-semaphore Semaphore',
      pair: async (w) => {
        const s = sem(w);
        await s.acquire();
        await s.release();
      },
    };
  },
});
const chosen = argv.impls ? argv.impls.split(',') : (defaultBackend() === 'jspi' ? ['dlock', 'dlock-worker'] : ['dlock']).concat(['plain', 'redlock', 'semaphore']);
const runners = Object.fromEntries(chosen.map((k) => [k, impls[k]()]));

console.log(`node ${process.version}, default backend ${defaultBackend()}, redis ${url}, ${ROUNDS} rounds x ${SECONDS}s, median round shown`);
const results = {};
for (const c of CONCURRENCY) {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [k, r] of Object.entries(runners)) {
      await measure(r.pair, c, WARMUP);
      (results[`${k}@${c}`] ??= []).push(await measure(r.pair, c, SECONDS));
    }
  }
}

const rows = [];
for (const c of CONCURRENCY) {
  const plain = results[`plain@${c}`];
  const plainMed = plain ? median(plain.map((x) => x.opsPerSec)) : NaN;
  for (const [k, r] of Object.entries(runners)) {
    const rs = results[`${k}@${c}`];
    const med = rs.slice().sort((a, b) => a.opsPerSec - b.opsPerSec)[Math.floor(rs.length / 2)];
    rows.push({
      impl: r.name,
      conc: c,
      'pairs/s': Math.round(med.opsPerSec),
      'vs plain': (med.opsPerSec / plainMed).toFixed(2),
      'p50 us': Math.round(med.p50us),
      'p99 us': Math.round(med.p99us),
      'CPU us/pair': med.cpuUsPerPair.toFixed(1),
      'rounds pairs/s': rs.map((x) => Math.round(x.opsPerSec)).join(' '),
    });
  }
}
console.table(rows);
if (process.env.BENCH_JSON) console.log(JSON.stringify(rows));

function median(xs) {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

for (const r of Object.values(runners)) await r.close?.();
redis.disconnect();
stop();
