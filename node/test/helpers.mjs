// Real redis-server processes for the tests: loopback, a free port, no persistence, killed at
// the end. No mocks of Redis anywhere.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { jspiAvailable } from '../src/backend-jspi.js';
import { LockHandle } from '../src/index.js';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Kills `child` (SIGKILL) and waits for it to be gone. */
async function kill(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

/**
 * What one fixture starts, undone when the calling test file's tests end: its redis-server
 * processes killed, its ioredis clients disconnected, its working directory `dir` removed.
 * `spawn(args)` starts a redis-server, `track(client)` takes a client in (its errors reach the
 * commands, not the process).
 */
function fixture(dir) {
  const children = [];
  const clients = [];
  after(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(children.map(kill));
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    spawn(args) {
      const child = spawn('redis-server', args, { stdio: 'ignore' });
      children.push(child);
      return child;
    },
    track(client) {
      client.on('error', () => {});
      clients.push(client);
      return client;
    },
  };
}

/**
 * Starts a redis-server for the calling test file; it is killed when the file's tests end.
 * Call it at the top level of the test file (an `after` registered inside a hook runs at the
 * end of that hook).
 * Returns `{ port, client(opts), admin, stop(), restart() }`; clients made with `client()` are
 * disconnected at the end.
 */
export async function startRedis() {
  const port = await freePort();
  // Its working directory: a replica's full sync writes an RDB file there, whatever --save.
  const dir = mkdtempSync(join(tmpdir(), 'dlock-redis-'));
  const { spawn: start, track } = fixture(dir);
  let child;
  const launch = async () => {
    child = start(['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
    for (let i = 0; i < 200; i++) {
      const probe = new Redis({ port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      try {
        await probe.connect();
        await probe.ping();
        probe.disconnect();
        return;
      } catch {
        probe.disconnect();
        await sleep(25);
      }
    }
    throw new Error(`redis-server did not start on port ${port}`);
  };
  await launch();
  const server = {
    port,
    client(opts = {}) {
      return track(new Redis({ port, host: '127.0.0.1', ...opts }));
    },
    /** Kills the server (SIGKILL) and waits for it to be gone. */
    stop: () => kill(child),
    /** Stops (SIGSTOP) or resumes (SIGCONT) the server: it hears nothing meanwhile. */
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    async restart() {
      await server.stop();
      await launch();
    },
  };
  server.admin = server.client();
  return server;
}

/** The backends this Node can run: `worker` always, `jspi` where JSPI is there. */
export function backends() {
  return jspiAvailable() ? ['jspi', 'worker'] : ['worker'];
}

/** Settles with the error `promise` rejects with (fails if it resolves). */
export async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

/**
 * Polls `check` every 5 ms until it resolves to true; fails naming `what` after `limitMs` (a
 * hang guard for events that have no notification, such as a key expiring: not a timing
 * assertion).
 */
export async function until(what, check, limitMs = 10_000) {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > limitMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** EVALSHA and EVAL calls the server behind `redis` has served so far. */
export async function scriptCalls(redis) {
  const stats = await redis.info('commandstats');
  const calls = (cmd) => Number(stats.match(new RegExp(`cmdstat_${cmd}:calls=(\\d+),`))?.[1] ?? 0);
  return calls('evalsha') + calls('eval');
}

/**
 * Starts a Redis Cluster of `primaries` redis-servers (no replicas) on loopback for the calling
 * test file, joined by `redis-cli --cluster create`; killed when the file's tests end. Call it
 * at the top level of the test file. Returns `{ ports, cluster(opts), node(port), primaryOf(key)
 * }`: `cluster()` an ioredis Cluster client on it, `node(port)` an ioredis client of one node,
 * `primaryOf(key)` the port of the primary serving `key`'s slot. Clients are disconnected at
 * the end.
 */
export async function startCluster(primaries = 3) {
  const dir = mkdtempSync(join(tmpdir(), 'dlock-cluster-'));
  const { spawn: start, track } = fixture(dir);
  const ports = [];
  for (let i = 0; i < primaries; i++) {
    const port = await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--dir', dir);
    start(args);
    ports.push(port);
  }
  const node = (port) => track(new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 }));
  const admins = ports.map(node);
  await until('the nodes to answer PING', async () => (await Promise.all(admins.map((a) => a.ping().catch(() => null)))).every((r) => r === 'PONG'));
  const redisCli = process.env.DLOCK_REDIS_CLI ?? 'redis-cli';
  await new Promise((resolve, reject) => {
    const addresses = ports.map((p) => `127.0.0.1:${p}`);
    execFile(redisCli, ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], (e, stdout) =>
      e ? reject(new Error(`redis-cli --cluster create failed: ${stdout}`)) : resolve(),
    );
  });
  const settled = async () => {
    for (const a of admins) {
      const info = await a.cluster('INFO');
      if (!info.includes('cluster_state:ok') || !info.includes(`cluster_known_nodes:${primaries}`)) return false;
    }
    return true;
  };
  await until('the cluster settling', settled, 30_000);
  return {
    ports,
    cluster(opts = {}) {
      return track(new Cluster([{ host: '127.0.0.1', port: ports[0] }], opts));
    },
    node,
    async primaryOf(key) {
      const slot = await admins[0].cluster('KEYSLOT', key);
      for (const [first, last, [, port]] of await admins[0].cluster('SLOTS')) {
        if (slot >= first && slot <= last) return port;
      }
      throw new Error(`no primary serves slot ${slot}`);
    },
  };
}

/**
 * Starts a primary, its replica and one Sentinel (quorum 1) watching them as `mymaster`, for
 * the calling test file; killed when the file's tests end. Call it at the top level of the test
 * file. Returns `{ primary, replica, client(opts), failover() }`: `primary` and `replica` as
 * `startRedis` returns them (their roles swap with a failover), `client()` an ioredis client
 * that finds the primary through the Sentinel, `failover()` a `SENTINEL FAILOVER` that resolves
 * once the replica is the primary the Sentinel names, the old one its replica.
 */
export async function startSentinel() {
  const primary = await startRedis();
  const replica = await startRedis();
  await replica.admin.replicaof('127.0.0.1', primary.port);
  await until('the replica syncing', async () => (await replica.admin.info('replication')).includes('master_link_status:up'), 30_000);
  const dir = mkdtempSync(join(tmpdir(), 'dlock-sentinel-'));
  const port = await freePort();
  const config = join(dir, 'sentinel.conf');
  writeFileSync(
    config,
    `port ${port}\nbind 127.0.0.1\ndir ${dir}\n` +
      `sentinel monitor mymaster 127.0.0.1 ${primary.port} 1\n` +
      'sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n',
  );
  const { spawn: start, track } = fixture(dir);
  start([config, '--sentinel']);
  const sentinel = track(new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 }));
  const named = async () => (await sentinel.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster').catch(() => null))?.[1];
  await until(
    'the Sentinel seeing the replica',
    async () => (await sentinel.call('SENTINEL', 'REPLICAS', 'mymaster').catch(() => [])).length === 1,
    30_000,
  );
  const role = async (server) => (await server.admin.info('replication')).match(/role:(\w+)/)[1];
  return {
    primary,
    replica,
    client(opts = {}) {
      return track(new Redis({ sentinels: [{ host: '127.0.0.1', port }], name: 'mymaster', ...opts }));
    },
    async failover() {
      await sentinel.call('SENTINEL', 'FAILOVER', 'mymaster');
      await until(
        'the failover',
        async () =>
          (await named()) === String(replica.port) && (await role(replica)) === 'master' && (await role(primary)) === 'slave',
        30_000,
      );
    },
  };
}

/**
 * The push wake-up, end to end (the Rust tests' `release_wakes_the_waiter`): `holder` takes
 * `key`, whose Redis key (on `admin`'s server) loses its expiry, so that only a release frees
 * it in time; `waiter` (whose only retry is far off) marks the key and blocks on its signal
 * list; the release wakes it, and it holds the lock, with the signal consumed. `guardMs` is the
 * hang guard. The waiter's lock is released at the end.
 */
export async function releaseWakesTheWaiter(admin, holder, waiter, key, guardMs) {
  const blocked = async () => Number((await admin.info('clients')).match(/blocked_clients:(\d+)/)[1]);
  const ttl = 60_000;
  const lock = await holder.acquire(key, ttl);
  await admin.persist(key);
  const waiting = waiter.acquire(key, ttl);
  await until('the waiter to block on the signal list', async () => (await blocked()) === 1, guardMs);
  assert.equal(await admin.exists(`{${key}}:waiters`), 1, 'the waiter marked the key');
  await lock.release();
  const got = await waiting;
  assert.ok(got instanceof LockHandle && got.isHeld);
  assert.equal(await admin.get(key), got.token);
  assert.equal(await admin.exists(`{${key}}:signal`), 0, 'the waiter took the signal');
  await got.release();
}
