// The component path without Redis or ioredis: K instances of the JSPI backend driven
// concurrently through acquire+release, `redis-eval` answered on the next setImmediate (1 for
// every script: acquired, released). Measures what this package, jco's glue, JSPI and the
// component cost per pair on the main thread (CPU us/pair = user+system over the pairs).
//
//   node bench-micro.mjs            (K=32 N=20000 RUNS=3 in the environment to change them)
//
// docs/history/NODE.md used it for A/B comparisons (best of RUNS, alternating builds or settings).
const { createJspiInstance, loadJspi } = await import('./src/backend-jspi.js');
const { resolvePolicy, TokenBucket } = await import('./src/policy.js');
const { probeInstance } = await import('./src/backend-sync.js');
await loadJspi();
const K = Number(process.env.K || 32);
const N = Number(process.env.N || 20000);
const fake = { evalshaBuffer: () => new Promise((r) => setImmediate(r, 1)) };
const witOptions = probeInstance().lock.defaultOptions();
const policy = resolvePolicy();
const instances = Array.from({ length: K }, () => createJspiInstance({ redis: fake, policy, witOptions, bytes: new TokenBucket(1e12) }));
for (let run = 0; run < Number(process.env.RUNS || 3); run++) {
  let done = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(instances.map(async (instance, w) => {
    while (done < N) {
      done++;
      const r = await instance.exec('acquire', `k${w}`, 1000n);
      await instance.exec('release', r.ok);
    }
  }));
  const c = process.cpuUsage(c0);
  console.log(`K=${K} ${((c.user + c.system) / N).toFixed(2)} us cpu/pair ${(N / (performance.now() - t0) * 1000).toFixed(0)} pairs/s`);
}
