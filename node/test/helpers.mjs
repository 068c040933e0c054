// Real redis-server processes for the tests: loopback, a free port, no persistence, killed at
// the end. No mocks of Redis anywhere.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { after } from 'node:test';
import { Redis } from 'ioredis';
import { jspiAvailable } from '../src/backend-jspi.js';

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

/**
 * Starts a redis-server for the calling test file; it is killed when the file's tests end.
 * Call it at the top level of the test file (an `after` registered inside a hook runs at the
 * end of that hook).
 * Returns `{ port, client(opts), admin, stop(), restart() }`; clients made with `client()` are
 * disconnected at the end.
 */
export async function startRedis() {
  const port = await freePort();
  let child;
  const clients = [];
  const launch = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
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
      const c = new Redis({ port, host: '127.0.0.1', ...opts });
      c.on('error', () => {});
      clients.push(c);
      return c;
    },
    /** Kills the server (SIGKILL) and waits for it to be gone. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
    async restart() {
      await server.stop();
      await launch();
    },
  };
  server.admin = server.client();
  after(async () => {
    for (const c of clients) c.disconnect();
    await server.stop();
  });
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
