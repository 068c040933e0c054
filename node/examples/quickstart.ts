// A nightly job that must run on one machine of a fleet at a time: the lock's API is the one of
// @lilith/distributed-lock, its logic the dlock WebAssembly component (the same .wasm the Rust
// host runs), sandboxed under Node.
//
//   REDIS_URL=redis://127.0.0.1:6379 node quickstart.js      (after tsc)
import { Redis } from 'ioredis';
import {
  COMPONENT,
  DistributedLock,
  LockAcquisitionError,
  LockRedisError,
  type LockHandle,
  type LockInfo,
} from '@dlock/node';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const lock = new DistributedLock(redis, { retryCount: 3, retryDelayMs: 50, fencing: true });

async function nightlyReport(): Promise<void> {
  let handle: LockHandle;
  try {
    handle = await lock.acquire('reports:nightly', 30_000);
  } catch (e) {
    if (e instanceof LockAcquisitionError) {
      console.log('another machine is running the report');
      return;
    }
    if (e instanceof LockRedisError && e.retryable) {
      console.log(`Redis is not answering (${e.kind}); try again later`);
      return;
    }
    throw e;
  }
  try {
    const info: LockInfo = handle.info;
    console.log(`running the report with fence ${info.fence} until ${new Date(info.expiresAt).toISOString()}`);
    await handle.extend(30_000); // a long job keeps its lease
    // Another client sees the lock; a second acquire of the same key fails fast.
    const other = await lock.tryAcquire('reports:nightly', 30_000);
    console.log(`while held: isLocked=${await lock.isLocked('reports:nightly')} tryAcquire=${other}`);
  } finally {
    await handle.release();
  }
  console.log(`released: isHeld=${handle.isHeld} status=${handle.info.status}`);
}

console.log(`dlock component ${COMPONENT.sha256.slice(0, 16)}..., backend ${lock.backend}`);
await nightlyReport();
await lock.close();
redis.disconnect();
