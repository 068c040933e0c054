// The `dlock:lock/redis` import over the caller's ioredis client: EVALSHA, and on NOSCRIPT one
// EVAL of the allowed source (which runs the script and caches it in one step), bounded by the
// policy's command timeout, the reply flattened within the policy's byte budget, failures
// classified as the Rust host does (host/src/redis_eval.rs).
import { admitScript, checkRequest, classify, flatten } from './policy.js';

const TIMEOUT = { tag: 'err', val: { tag: 'timeout' } };
const swallow = () => {};

/**
 * Runs an allowed script (`entry` from the policy's allowlist) on `redis`. Never throws:
 * resolves to `{tag:'ok', val: value}` or `{tag:'err', val: error}` (the WIT result).
 */
export function evalScript(redis, policy, entry, keys, args) {
  const call = evalOnce(redis, entry, keys, args);
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, policy.commandTimeoutMs, TIMEOUT);
  });
  return Promise.race([
    call.then(
      (reply) => flatten(reply, policy.maxReplyBytes),
      (err) => ({ tag: 'err', val: classify(err) }),
    ),
    timeout,
  ]).finally(() => clearTimeout(timer));
}

async function evalOnce(redis, entry, keys, args) {
  const n = keys.length;
  try {
    return await redis.evalshaBuffer(entry.sha1, n, ...keys, ...args);
  } catch (err) {
    if (err?.name === 'ReplyError' && err.message.startsWith('NOSCRIPT')) {
      return await redis.evalBuffer(entry.source, n, ...keys, ...args);
    }
    throw err;
  }
}

/** The `script` resource the component holds: an allowlist entry. */
export class Script {
  constructor(entry) {
    this.entry = entry;
  }
}

/**
 * The `dlock:lock/redis` import for one component instance running in this thread (JSPI:
 * `redisEval` returns a promise the component's stack waits on).
 * @param {() => {redis, policy, window}} ctx the instance's host state
 */
export function redisImportsAsync(ctx) {
  class HostScript extends Script {
    static load(source) {
      const entry = admitScript(ctx.policy, source);
      if (typeof entry === 'string') return { tag: 'err', val: { tag: 'denied', val: entry } };
      return new HostScript(entry);
    }
  }
  return {
    Script: HostScript,
    redisEval(script, keys, args) {
      const { redis, policy, window } = ctx;
      if (!window.admit(policy.maxEvalsPerSecond)) {
        return { tag: 'err', val: { tag: 'denied', val: `more than ${policy.maxEvalsPerSecond} Redis calls in one second` } };
      }
      const reason = checkRequest(policy, keys, args);
      if (reason !== null) return { tag: 'err', val: { tag: 'denied', val: reason } };
      return evalScript(redis, policy, script.entry, keys, args);
    },
  };
}

export { swallow };
