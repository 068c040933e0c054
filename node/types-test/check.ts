// Type-checked by `npm run typecheck`: the declarations fit an ioredis client and the API's use.
import { Redis } from 'ioredis';
import { ClientClosedError, COMPONENT, ComponentTrapError, DistributedLock, DistributedLockError, InvalidArgumentError, InvalidLockError, LockAcquisitionError, LockGrantedTooLateError, LockRedisError, NotALockError, type HandleStatus, type KeyState, type LockHandle, type LockInfo, type LockInfoJSON, type LockOptions, type PolicyOptions, type Semaphore, type SemaphoreState } from '../src/index.js';

async function main(): Promise<void> {
  const redis = new Redis();
  const lock = new DistributedLock(redis, { retryCount: 3, retryDelayMs: 50, keyPrefix: 'app:', fencing: true, policy: { keyNamespace: 'app:' } });
  // Quorum mode: one client per independent primary.
  const quorum = new DistributedLock([new Redis(6379), new Redis(6380), new Redis(6381)], { retryCount: 3 });
  void quorum;
  // The options the contract generates (src/generated/contract.d.ts) are typed, not `any`.
  const policy: PolicyOptions = { maxKeys: 4, maxMemoryBytes: 1 << 20, reconnectAfterTimeouts: 0 };
  const options: LockOptions = { maxRetryDelayMs: 1000, safetyMarginMs: 5n, wakeOnRelease: 'never' };
  // @ts-expect-error maxKeys is a number
  const badPolicy: PolicyOptions = { maxKeys: '4' };
  // @ts-expect-error jitter is a boolean
  const badOptions: LockOptions = { jitter: 1 };
  console.log(policy, options, badPolicy, badOptions);
  const h: LockHandle = await lock.acquire('job', 10_000);
  const info: LockInfo = h.info;
  const held: boolean = h.isHeld;
  const fence: bigint | null = info.fence;
  await h.extend(5_000);
  await h.release();
  const pool: Semaphore = lock.semaphore('exports', 3);
  const permits: LockHandle = await pool.acquire(10_000, 2);
  const slot: LockHandle | null = await pool.tryAcquire(10_000);
  const taken: SemaphoreState = await pool.state();
  console.log(taken.held, taken.firstEndsInMs, slot?.fence, await pool.waitFor(1000, 1000));
  await permits.release();
  const maybe: LockHandle | null = await lock.tryAcquire('job', 1000);
  if (maybe) await maybe.release();
  try {
    await lock.waitForLock('job', 1000, 1000);
  } catch (e) {
    if (e instanceof LockGrantedTooLateError && e.retryable) console.log('retry with a longer TTL');
    else if (e instanceof LockAcquisitionError) console.log(e.key);
    else if (e instanceof NotALockError) console.log(e.key);
    else if (e instanceof InvalidLockError) console.log(e.key);
    else if (e instanceof LockRedisError && e.retryable) console.log(e.kind);
  }
  const locked: boolean = await lock.isLocked('job');
  const state: KeyState = await lock.keyState('job');
  if (state.state === 'expiring') console.log(state.ttlMs);
  const status: HandleStatus = info.status;
  console.log(status, COMPONENT.sha256);
  console.log(held, fence, locked, lock.backend);
  const json: LockInfoJSON = JSON.parse(JSON.stringify(info));
  const until: string = json.validUntilNs;
  console.log(until, json.fence);
  // every error class exported at runtime, with its constructor
  const errors: DistributedLockError[] = [
    new DistributedLockError('m'),
    new LockAcquisitionError('k'),
    new LockGrantedTooLateError('k'),
    new NotALockError('k'),
    new InvalidLockError('k', 'm'),
    new InvalidArgumentError('m'),
    new LockRedisError('timeout', 'no reply'),
    new ComponentTrapError('m', { cause: 1 }),
    new ClientClosedError(),
  ];
  console.log(errors.map((e) => e.retryable));
  await lock.close();
  redis.disconnect();
}
void main;
