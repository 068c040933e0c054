// The package from CommonJS: `require` (Node's require of an ES module, Node 20.19+/22.12+)
// loads it without starting anything; the component starts on the first call.
//
//   REDIS_URL=redis://127.0.0.1:6379 node commonjs.cjs      (after tsc)
import { Redis } from 'ioredis';
import dlock = require('@dlock/node');

async function main(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const lock = new dlock.DistributedLock(redis, { retryCount: 0 });
  const handle: dlock.LockHandle | null = await lock.tryAcquire('reports:weekly', 10_000);
  if (handle === null) throw new Error('reports:weekly is held by someone else');
  const busy = await lock.tryAcquire('reports:weekly', 10_000);
  await handle.release();
  console.log(`required: backend=${lock.backend} busy=${busy === null} status=${handle.info.status}`);
  await lock.close();
  redis.disconnect();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
