#!/usr/bin/env node
// The worker protocol (tests/src/protocol.rs) over this package: lock clients driven over stdin
// and stdout, one JSON object per line, for `torture --node-workers` and the cross-runtime tests,
// which run it beside the Rust `worker` binary and pause, kill or cut it off.
//
//   node tools/protocol-worker.mjs [--resource URL]
//
// The lock's Redis is in DLOCK_REDIS_URL (not on the command line, where `ps` would show a
// password; a comma list is independent primaries, quorum mode); the fenced resource and
// guarded sets live at --resource (default: the lock's Redis).
// DLOCK_NODE_MAX_INSTANCES (a positive integer) sets the DistributedLock's `maxInstances` (else
// the package default), DLOCK_NODE_BACKEND its `backend` (`auto`, the default, `jspi`, `worker`).
//
// Lanes: a request names its lane (`"lane": N`, absent = 0), an independent lock client with its
// own handle (the one its last `acquire` returned), fence and guarded read. Every lane runs on
// ONE DistributedLock, as the calls of a Node service share one lock object: lanes' calls run
// concurrently, each lane's requests are answered in order, one reply each, naming its lane
// (no `lane` field for lane 0: lane-0 traffic is that of a single-client worker). A line that is
// not a request is answered `fail` on lane 0, in lane 0's order. Times are CLOCK_MONOTONIC
// nanoseconds (process.hrtime.bigint()), comparable across processes.
//
// What the package cannot do, and how the requests for it are answered:
// - `acquire.cancel_after_ms`: the package has no way to cancel one call (no AbortSignal; only
//   close() ends calls, all of them), so the field is ignored and the call runs to its end.
// - `keep` / `lost`: the package has no keep-alive; both are answered `fail` `unsupported`.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { ClientClosedError, DistributedLock, LockAcquisitionError } from '../src/index.js';

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

// A comma before a scheme starts the next URL: several are independent primaries (quorum
// mode, which has no fencing), as the Rust worker reads them.
const lockUrls = lockUrl.split(/,(?=[a-z+]+:\/\/)/);
const options = { fencing: lockUrls.length === 1 };
const maxInstances = process.env.DLOCK_NODE_MAX_INSTANCES;
if (maxInstances !== undefined && maxInstances !== '') {
  if (!/^[1-9][0-9]*$/.test(maxInstances) || !Number.isSafeInteger(Number(maxInstances))) {
    usage(`DLOCK_NODE_MAX_INSTANCES must be a positive integer, got ${JSON.stringify(maxInstances)}`);
  }
  options.maxInstances = Number(maxInstances);
}
if (process.env.DLOCK_NODE_BACKEND) options.backend = process.env.DLOCK_NODE_BACKEND;

const primaries = lockUrls.map((url) => new Redis(url));
const redis = primaries.length === 1 ? primaries[0] : primaries;
const resource = new Redis(resourceUrl);
// Connection errors surface in the calls (as `unknown` outcomes); the clients reconnect.
for (const c of [...primaries, resource]) c.on('error', () => {});
let client;
try {
  client = new DistributedLock(redis, options);
} catch (e) {
  usage(e?.message ?? e);
}

// Replies list their fields in the order the Rust `Reply` serialises them.
const ok = (extra = {}) => ({ outcome: 'ok', ...extra });
const message = (error) => String(error?.message ?? error);
const fail = (error) => ({ outcome: 'fail', error: message(error) });
const unknown = (error) => ({ outcome: 'unknown', error: message(error) });
const busy = (error) => ({ outcome: 'fail', busy: true, error: message(error) });

/** A lock error: `unknown` when a retry might help (the outcome may be either: this includes
 * `LockGrantedTooLateError`), `fail` with `busy` when the lock was held by someone else, else
 * `fail`. */
function fromLockError(e) {
  if (e?.retryable) return unknown(e);
  if (e instanceof LockAcquisitionError) return busy(e);
  return fail(e);
}

/**
 * A call's error. The closed error of a call that was in flight when its DistributedLock was
 * closed (it may have run in Redis: a release or extend carried out, an acquire's grant being
 * given back) is `unknown`; so is an acquire refused because its lock was closed (the test
 * closed it: that is no failure of the lock). A handle call refused because its lock was
 * closed before the call began is `fail`.
 */
function fromCallError(e, acquiring) {
  if (e instanceof ClientClosedError && (e.inFlight || acquiring)) return unknown(e);
  return fromLockError(e);
}

function held(h) {
  const info = h.info;
  return ok({ token: info.token, fence: info.fence ?? undefined, valid_until_ns: info.validUntilNs });
}

/** A new lane: no handle (`lock`, made by the DistributedLock `owner`), no fence, no guarded
 * read; `tail` settles once its last request is answered. */
const newLane = () => ({ lock: null, owner: null, fence: null, read: null, tail: Promise.resolve() });

/** Lane `lane`'s answer to `req` (a parsed request line); never rejects. */
async function handle(lane, req) {
  switch (req.cmd) {
    case 'ping':
      await Promise.all([...primaries, resource].map((c) => c.ping()));
      return ok();
    case 'acquire':
      // `cancel_after_ms` is ignored: the package cannot cancel one call (see the top). An
      // acquire ended by a close is `unknown`: a lock it was granted is given back by the
      // package, in the background.
      try {
        const owner = client;
        const h = req.wait_ms === undefined || req.wait_ms === null
          ? await owner.acquire(req.key, req.ttl_ms)
          : await owner.waitForLock(req.key, req.wait_ms, req.ttl_ms);
        lane.lock = h;
        lane.owner = owner;
        lane.fence = h.fence;
        return held(h);
      } catch (e) {
        return fromCallError(e, true);
      }
    case 'extend': {
      if (lane.lock === null) return fail('no lock');
      try {
        await lane.lock.extend(req.ttl_ms);
        return held(lane.lock);
      } catch (e) {
        return fromCallError(e, false);
      }
    }
    case 'release': {
      if (lane.lock === null) return fail('no lock');
      const h = lane.lock;
      lane.lock = null;
      lane.owner = null;
      try {
        await h.release();
        return ok();
      } catch (e) {
        return fromCallError(e, false);
      }
    }
    case 'keep':
    case 'lost':
      return fail('unsupported');
    case 'close': {
      // Calls that start from now on (on any lane) use the new DistributedLock. The old one's
      // calls in flight end `unknown` (they may have run in Redis); its handles fail from now
      // on, their locks staying in Redis until their TTL.
      const old = client;
      try {
        client = new DistributedLock(redis, options);
        await old.close();
        return ok();
      } catch (e) {
        return fail(e);
      }
    }
    case 'fenced_write': {
      if (lane.fence === null) return fail('no fence');
      try {
        const accepted = await resource.eval(FENCED_WRITE, 2, req.resource, `${req.resource}:max-fence`, String(lane.fence), req.element);
        return accepted === 1 ? ok() : fail(`fence ${lane.fence} rejected as stale`);
      } catch (e) {
        return unknown(e);
      }
    }
    case 'guarded_read':
      try {
        lane.read = (await resource.get(req.set)) ?? '';
        return ok();
      } catch (e) {
        return unknown(e);
      }
    case 'guarded_write': {
      if (lane.read === null) return fail('guarded_write without guarded_read');
      const value = lane.read === '' ? req.element : `${lane.read},${req.element}`;
      lane.read = null;
      try {
        if (req.fenced) {
          const written = await resource.eval(FENCED_SET, 2, req.set, `${req.set}:max-fence`, String(lane.fence ?? 0n), value);
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

// Each reply is one write of one whole line, so replies of different lanes never interleave.
// While stdout's buffer is full, every lane waits for the same drain.
let drained = null;
async function write(reply) {
  if (!process.stdout.write(line(reply))) {
    drained ??= new Promise((r) => process.stdout.once('drain', r)).finally(() => {
      drained = null;
    });
  }
  if (drained !== null) await drained;
}

/** A request line as `{ lane, req }`, or `{ lane: 0, error }` when it is not one. */
function parse(text) {
  let req;
  try {
    req = JSON.parse(text);
  } catch (e) {
    return { lane: 0, error: `bad request: ${e?.message ?? e}` };
  }
  if (req === null || typeof req !== 'object' || Array.isArray(req)) return { lane: 0, error: 'bad request: not an object' };
  const lane = req.lane ?? 0;
  if (!Number.isInteger(lane) || lane < 0 || lane > 0xffff_ffff) {
    return { lane: 0, error: `bad request: lane must be an integer from 0 to 2^32-1, got ${JSON.stringify(req.lane)}` };
  }
  return { lane, req };
}

const lanes = new Map();
const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const text of input) {
  const { lane: n, req, error } = parse(text);
  let lane = lanes.get(n);
  if (lane === undefined) {
    lane = newLane();
    lanes.set(n, lane);
  }
  // The chain never rejects, so a failed write cannot skip the lane's later requests.
  lane.tail = lane.tail
    .then(async () => {
      let reply;
      try {
        reply = error === undefined ? await handle(lane, req) : fail(error);
      } catch (e) {
        reply = fail(`bad request: ${e?.message ?? e}`);
      }
      await write(n === 0 ? reply : { lane: n, ...reply });
    })
    .catch((e) => process.stderr.write(`protocol-worker: lane ${n}: ${e?.stack ?? e}\n`));
}
await Promise.all([...lanes.values()].map((l) => l.tail));
await client.close();
for (const c of primaries) c.disconnect();
resource.disconnect();
