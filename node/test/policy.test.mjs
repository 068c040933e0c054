// The host's policy (as the Rust host's: host/src/policy.rs, limits.rs, reply.rs) and the
// classification of Redis failures: the rules alone, then through the component on a real
// redis-server.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DistributedLock, InvalidArgumentError, LockRedisError } from '../src/index.js';
import { bundledScripts, checkRequest, classify, flatten, resolvePolicy, sha1Hex } from '../src/policy.js';
import { backends, rejection, startRedis, timed } from './helpers.mjs';

describe('policy rules', () => {
  test('the default allowlist is exactly the bundled scripts', () => {
    const p = resolvePolicy();
    const names = bundledScripts().map((s) => s.name).sort();
    assert.deepEqual(names, ['acquire', 'check', 'extend', 'release']);
    assert.deepEqual([...p.allowed.keys()].sort(), bundledScripts().map((s) => s.sha1).sort());
    for (const s of bundledScripts()) assert.equal(sha1Hex(s.source), s.sha1);
    assert.equal(resolvePolicy({ denyBundledScripts: true }).allowed.size, 0);
    assert.equal(resolvePolicy({ allowScripts: ['return 1'] }).allowed.size, 5);
  });

  test('request caps, empty keys, control characters', () => {
    const p = resolvePolicy({ maxKeys: 2, maxRequestBytes: 10 });
    assert.equal(checkRequest(p, ['a', 'b'], []), null);
    assert.match(checkRequest(p, ['a', 'b', 'c'], []), /3 keys/);
    assert.match(checkRequest(p, ['a'], ['123456789', 'x']), /bytes of keys/);
    assert.match(checkRequest(resolvePolicy(), ['k'.repeat(1025)], []), /1025 bytes/);
    assert.match(checkRequest(resolvePolicy({ maxKeyBytes: 4 }), ['ééé'], []), /6 bytes/);
    for (const bad of ['', 'a\nb', 'nul\0', 'tab\t', '\u007f', '\u0085']) {
      assert.match(checkRequest(resolvePolicy(), [bad], []), /key/, JSON.stringify(bad));
    }
    assert.equal(checkRequest(resolvePolicy(), ['*', 'other:secret'], []), null);
  });

  test('the namespace admits its keys and their fence counters only', () => {
    const p = resolvePolicy({ keyNamespace: 'app:' });
    for (const ok of ['app:job', 'app:{job}', 'app:{job}:fence', '{app:job}:fence']) {
      assert.equal(checkRequest(p, [ok], []), null, ok);
    }
    for (const bad of ['other:secret', '*', 'ap', '{other}:fence', 'x{app:job}']) {
      assert.match(checkRequest(p, ['app:ok', bad], []), /outside the namespace/, bad);
    }
  });

  test('replies: flat values cross, nested ones are rejected, the byte budget is enforced', () => {
    assert.deepEqual(flatten(-2, 64), { tag: 'ok', val: { tag: 'int', val: -2n } });
    assert.deepEqual(flatten(null, 64), { tag: 'ok', val: { tag: 'nil' } });
    assert.deepEqual(flatten(Buffer.from('tok'), 64).val.tag, 'bulk');
    const arr = flatten([1, Buffer.from('x'), null], 64);
    assert.equal(arr.val.tag, 'array');
    assert.deepEqual(arr.val.val.map((s) => s.tag), ['int', 'bulk', 'nil']);
    assert.match(flatten([[1]], 64).val.val, /nested array/);
    assert.equal(flatten(Buffer.alloc(64), 64).tag, 'ok');
    assert.equal(flatten(Buffer.alloc(65), 64).val.tag, 'denied');
    assert.equal(flatten(new Array(9).fill(0), 64).val.tag, 'denied'); // 8 bytes per element
  });

  test('failures are classified by whether a retry can help', () => {
    const reply = (message) => Object.assign(new Error(message), { name: 'ReplyError' });
    assert.equal(classify(reply('LOADING Redis is loading')).tag, 'unavailable');
    assert.equal(classify(reply('BUSY Redis is busy running a script')).tag, 'unavailable');
    assert.equal(classify(reply('READONLY You can\'t write against a read only replica.')).tag, 'unavailable');
    assert.equal(classify(reply('WRONGTYPE Operation against a key holding the wrong kind of value')).tag, 'rejected');
    assert.equal(classify(reply('NOPERM this user has no permissions')).tag, 'rejected');
    assert.equal(classify(reply('ERR Error running script')).tag, 'rejected');
    assert.equal(classify(new Error('Connection is closed.')).tag, 'unavailable');
    assert.equal(classify(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })).tag, 'unavailable');
    assert.equal(classify(new Error('Command timed out')).tag, 'timeout');
  });

  test('policy options are checked', () => {
    assert.throws(() => resolvePolicy({ commandTimeoutMs: 0 }), TypeError);
    assert.throws(() => resolvePolicy({ maxKeys: 1.5 }), TypeError);
  });
});

const server = await startRedis();
const admin = server.admin;

for (const backend of backends()) {
  describe(`policy through the component (${backend})`, () => {
    const locks = [];
    const make = (options = {}, redis = server.client()) => {
      const l = new DistributedLock(redis, { backend, ...options });
      locks.push(l);
      return l;
    };
    after(() => Promise.all(locks.map((l) => l.close())));
    let n = 0;
    const key = (what) => `p:${backend}:${what}:${n++}`;

    const denied = async (promise, pattern) => {
      const e = await rejection(promise);
      assert.ok(e instanceof LockRedisError, e);
      assert.equal(e.kind, 'denied', e.message);
      assert.equal(e.retryable, false);
      if (pattern) assert.match(e.message, pattern);
      return e;
    };

    test('a key outside the namespace is denied and never reaches Redis', async () => {
      const lock = make({ policy: { keyNamespace: 'app:' } });
      const k = key('ns');
      await denied(lock.acquire(k, 1000), /outside the namespace/);
      assert.equal(await admin.exists(k), 0);
      const inside = make({ keyPrefix: 'app:', fencing: true, policy: { keyNamespace: 'app:' } });
      const h = await inside.acquire(k, 1000);
      assert.equal(await admin.get(`app:${k}`), h.token);
      await h.release();
    });

    test('size caps: key bytes, request bytes', async () => {
      await denied(make({ policy: { maxKeyBytes: 16 } }).acquire(`${key('long')}-xxxxxxxxxxxxxxxx`, 1000), /bytes/);
      await denied(make({ policy: { maxRequestBytes: 40 } }).acquire(key('req'), 1000), /bytes of keys and arguments/);
    });

    test('the rate limit stops a runaway retry loop', async () => {
      const lock = make({ retryCount: 50, retryDelayMs: 1, maxRetryDelayMs: 1, policy: { maxEvalsPerSecond: 3 } });
      const k = key('rate');
      await admin.set(k, 'other', 'PX', 10000);
      const evals = async () => {
        const stats = await admin.info('commandstats');
        const calls = (cmd) => Number(stats.match(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`))?.[1] ?? 0);
        return calls('evalsha') + calls('eval');
      };
      const before = await evals();
      await denied(lock.acquire(k, 1000), /in one second/);
      const reached = (await evals()) - before;
      // three calls admitted (an EVALSHA each, plus one EVAL after a NOSCRIPT at most)
      assert.ok(reached >= 3 && reached <= 4, `${reached} script calls reached Redis`);
    });

    test('scripts outside the allowlist are denied', async () => {
      await denied(make({ policy: { denyBundledScripts: true } }).acquire(key('deny'), 1000), /allowlist/);
      const h = await make({ policy: { allowScripts: ['return 1'] } }).acquire(key('extra'), 1000);
      await h.release();
    });

    test('NOSCRIPT falls back to one EVAL of the allowed source', async () => {
      const lock = make();
      await admin.script('FLUSH');
      const h = await lock.acquire(key('noscript'), 1000);
      const acquireSha = bundledScripts().find((s) => s.name === 'acquire').sha1;
      assert.deepEqual(await admin.script('EXISTS', acquireSha), [1]);
      await admin.script('FLUSH');
      await h.release();
    });

    test('a Redis refusal is rejected, not retried', async () => {
      const k = key('wrongtype');
      await admin.hset(k, 'f', 'v');
      const lock = make({ retryCount: 5, retryDelayMs: 100 });
      await lock.isLocked(k); // the instance is started
      const { ms, value: e } = await timed(() => rejection(lock.acquire(k, 1000)));
      assert.ok(e instanceof LockRedisError, e);
      assert.equal(e.kind, 'rejected');
      assert.equal(e.retryable, false);
      assert.match(e.message, /WRONGTYPE/);
      assert.ok(ms < 90, `a rejected call was retried (${ms} ms)`);
    });

    test('no reply within the command timeout: timeout, retryable', async () => {
      const lock = make({ policy: { commandTimeoutMs: 100 } });
      const k = key('timeout');
      await lock.isLocked(k);
      await admin.client('PAUSE', 600, 'ALL');
      const { ms, value: e } = await timed(() => rejection(lock.tryAcquire(k, 1000)));
      assert.ok(e instanceof LockRedisError, e);
      assert.equal(e.kind, 'timeout');
      assert.equal(e.retryable, true);
      assert.ok(ms >= 95 && ms < 450, `timed out after ${ms} ms`);
      await admin.client('UNPAUSE');
    });

    test('Redis down: unavailable, retryable', async () => {
      const other = await startRedis();
      const redis = other.client({ maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 200 });
      if (redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
      const lock = make({}, redis);
      await lock.isLocked(key('warm'));
      await other.stop();
      const e = await rejection(lock.tryAcquire(key('down'), 1000));
      assert.ok(e instanceof LockRedisError, e);
      assert.equal(e.kind, 'unavailable');
      assert.equal(e.retryable, true);
    });

    test('the lock options the component refuses are InvalidArgumentError', () => {
      assert.throws(() => make({ safetyMarginMs: -1 }), InvalidArgumentError);
      assert.throws(() => make({ jitter: 'yes' }), InvalidArgumentError);
      assert.throws(() => make({ maxInstances: 0 }), InvalidArgumentError);
      assert.throws(() => make({ backend: 'threads' }), InvalidArgumentError);
    });
  });
}
