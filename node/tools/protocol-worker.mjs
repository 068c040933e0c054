#!/usr/bin/env node
// The worker protocol (tests/src/protocol.rs) over this package: a lock client driven over stdin
// and stdout, one JSON object per line, for `torture --node-workers` and the cross-runtime tests,
// which run it beside the Rust `worker` binary and pause, kill or cut it off.
//
//   node tools/protocol-worker.mjs [--resource URL]
//
// The lock's Redis is in DLOCK_REDIS_URL (not on the command line, where `ps` would show a
// password); the fenced resource and guarded sets live at --resource (default: the lock's Redis).
// Requests act on the handle the last `acquire` returned; each gets one reply, in order. Times
// are CLOCK_MONOTONIC nanoseconds (process.hrtime.bigint()), comparable across processes.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { DistributedLock } from '../src/index.js';

const FENCED_WRITE = readFileSync(new URL('../../examples/fenced-write.lua', import.meta.url), 'utf8');

/** A fenced register write (the Rust worker's FENCED_SET): 1 written, 0 refused. */
const FENCED_SET = "local highest = tonumber(redis.call('GET', KEYS[2]) or '0') "
  + "if tonumber(ARGV[1]) < highest then return 0 end "
  + "redis.call('SET', KEYS[2], ARGV[1]) redis.call('SET', KEYS[1], ARGV[2]) return 1";

const usage = (message) => {
  process.stderr.write(`protocol-worker: ${message}\n`);
  process.exit(2);
};

const lockUrl = process.env.DLOCK_REDIS_URL ?? usage('DLOCK_REDIS_URL is not set');
const argv = process.argv.slice(2);
let resourceUrl = lockUrl;
if (argv.length === 2 && argv[0] === '--resource') resourceUrl = argv[1];
else if (argv.length !== 0) usage('usage: protocol-worker [--resource URL]');

const redis = new Redis(lockUrl);
const resource = new Redis(resourceUrl);
// Connection errors surface in the calls (as `unknown` outcomes); the clients reconnect.
redis.on('error', () => {});
resource.on('error', () => {});
const client = new DistributedLock(redis, { fencing: true });

let lock = null; // the handle of the last acquire
let fence = null;
let read = null; // the value of the last guarded_read

const ok = (extra = {}) => ({ outcome: 'ok', ...extra });
const fail = (error) => ({ outcome: 'fail', error: String(error?.message ?? error) });
const unknown = (error) => ({ outcome: 'unknown', error: String(error?.message ?? error) });
/** A lock error: `unknown` when a retry might help (the outcome may be either), else `fail`. */
const fromLockError = (e) => (e?.retryable ? unknown(e) : fail(e));

function held(h) {
  const info = h.info;
  return ok({ token: info.token, fence: info.fence ?? undefined, valid_until_ns: info.validUntilNs });
}

async function handle(req) {
  switch (req.cmd) {
    case 'ping':
      await Promise.all([redis.ping(), resource.ping()]);
      return ok();
    case 'acquire':
      try {
        const h = req.wait_ms === undefined || req.wait_ms === null
          ? await client.acquire(req.key, req.ttl_ms)
          : await client.waitForLock(req.key, req.wait_ms, req.ttl_ms);
        lock = h;
        fence = h.fence;
        return held(h);
      } catch (e) {
        return fromLockError(e);
      }
    case 'extend':
      if (lock === null) return fail('no lock');
      try {
        await lock.extend(req.ttl_ms);
        return held(lock);
      } catch (e) {
        return fromLockError(e);
      }
    case 'release': {
      if (lock === null) return fail('no lock');
      const h = lock;
      lock = null;
      try {
        await h.release();
        return ok();
      } catch (e) {
        return fromLockError(e);
      }
    }
    case 'fenced_write': {
      if (fence === null) return fail('no fence');
      try {
        const accepted = await resource.eval(FENCED_WRITE, 2, req.resource, `${req.resource}:max-fence`, String(fence), req.element);
        return accepted === 1 ? ok() : fail(`fence ${fence} rejected as stale`);
      } catch (e) {
        return unknown(e);
      }
    }
    case 'guarded_read':
      try {
        read = (await resource.get(req.set)) ?? '';
        return ok();
      } catch (e) {
        return unknown(e);
      }
    case 'guarded_write': {
      if (read === null) return fail('guarded_write without guarded_read');
      const value = read === '' ? req.element : `${read},${req.element}`;
      read = null;
      try {
        if (req.fenced) {
          const written = await resource.eval(FENCED_SET, 2, req.set, `${req.set}:max-fence`, String(fence ?? 0n), value);
          return written === 1 ? ok() : fail('a newer holder has written');
        }
        await resource.set(req.set, value);
        return ok();
      } catch (e) {
        return unknown(e);
      }
    }
    default:
      return fail(`bad request: unknown cmd ${JSON.stringify(req.cmd)}`);
  }
}

/** A reply as one JSON line; bigints (fence, valid_until_ns) as exact integers. */
function line(reply) {
  return `${JSON.stringify(reply, (_, v) => (typeof v === 'bigint' ? `#big#${v}` : v)).replace(/"#big#(\d+)"/g, '$1')}\n`;
}

const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const text of input) {
  let reply;
  try {
    reply = await handle(JSON.parse(text));
  } catch (e) {
    reply = fail(`bad request: ${e?.message ?? e}`);
  }
  if (!process.stdout.write(line(reply))) await new Promise((r) => process.stdout.once('drain', r));
}
await client.close();
redis.disconnect();
resource.disconnect();
