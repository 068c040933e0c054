// What the host lets the component run on Redis: the same rules as the Rust host's `Policy`
// (host/src/policy.rs, limits.rs, reply.rs, state.rs), in JavaScript.
//
// Pure functions and plain data: no Redis client here, so the worker backend can check a call
// before it leaves the worker, and tests can check the rules alone.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** SHA1 of a script's source in lowercase hex, as Redis names scripts. */
export function sha1Hex(source) {
  return createHash('sha1').update(source, 'utf8').digest('hex');
}

let bundled;
/** The component's own Lua scripts ({name, sha1, source}), as the build recorded them. */
export function bundledScripts() {
  bundled ??= JSON.parse(readFileSync(new URL('../gen/component.json', import.meta.url), 'utf8')).scripts;
  return bundled;
}

/** The defaults of the Rust host's `Policy::default()`. */
export const DEFAULT_POLICY = Object.freeze({
  commandTimeoutMs: 2000,
  maxKeys: 8,
  maxKeyBytes: 1024,
  keyNamespace: '',
  maxRequestBytes: 64 * 1024,
  maxReplyBytes: 64 * 1024,
  maxEvalsPerSecond: 4096,
  /** Lua sources allowed besides the bundled scripts. */
  allowScripts: [],
  /** When true, not even the bundled scripts may run (only `allowScripts`). */
  denyBundledScripts: false,
});

function positiveInt(name, v) {
  if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`policy.${name} must be a positive integer, got ${v}`);
  return v;
}

/**
 * Resolves a user's policy options (camelCase, every field optional) into the form the host
 * checks against: `{ ...limits, allowed: Map<sha1, {sha1, source, name}> }`. Plain data, so it can
 * be sent to a worker.
 */
export function resolvePolicy(options = {}) {
  const p = { ...DEFAULT_POLICY, ...options };
  for (const k of ['commandTimeoutMs', 'maxKeys', 'maxKeyBytes', 'maxRequestBytes', 'maxReplyBytes', 'maxEvalsPerSecond']) {
    positiveInt(k, p[k]);
  }
  if (typeof p.keyNamespace !== 'string') throw new TypeError('policy.keyNamespace must be a string');
  const allowed = new Map();
  if (!p.denyBundledScripts) {
    for (const s of bundledScripts()) allowed.set(s.sha1, { sha1: s.sha1, source: s.source, name: s.name });
  }
  for (const source of p.allowScripts) {
    if (typeof source !== 'string') throw new TypeError('policy.allowScripts must hold Lua sources (strings)');
    const sha1 = sha1Hex(source);
    allowed.set(sha1, { sha1, source, name: null });
  }
  return {
    commandTimeoutMs: p.commandTimeoutMs,
    maxKeys: p.maxKeys,
    maxKeyBytes: p.maxKeyBytes,
    keyNamespace: p.keyNamespace,
    maxRequestBytes: p.maxRequestBytes,
    maxReplyBytes: p.maxReplyBytes,
    maxEvalsPerSecond: p.maxEvalsPerSecond,
    allowed,
  };
}

/** The allowlist entry for this source, or a `denied` reason. Known sources cost a map lookup
 * by source (cached per policy); others are hashed. */
export function admitScript(policy, source) {
  policy.bySource ??= new Map([...policy.allowed.values()].map((s) => [s.source, s]));
  const known = policy.bySource.get(source);
  if (known) return known;
  const sha1 = sha1Hex(source);
  const entry = policy.allowed.get(sha1);
  if (entry) return entry;
  return `script ${sha1} is not in the host's allowlist`;
}

// Unicode general category Cc, as Rust's `char::is_control`.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function utf8Length(s) {
  // ASCII fast path: most keys and tokens.
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(s) ? s.length : Buffer.byteLength(s, 'utf8');
}

function checkKey(policy, key) {
  if (key.length === 0) return 'an empty key';
  const bytes = utf8Length(key);
  if (bytes > policy.maxKeyBytes) return `a key of ${bytes} bytes; the limit is ${policy.maxKeyBytes}`;
  if (CONTROL.test(key)) return `a key with control characters: ${JSON.stringify(key)}`;
  const ns = policy.keyNamespace;
  if (ns === '' || key.startsWith(ns)) return null;
  if (key.startsWith('{') && key.endsWith('}:fence') && key.length >= 8 && key.slice(1, -7).startsWith(ns)) return null;
  return `the key ${JSON.stringify(key)} is outside the namespace ${JSON.stringify(ns)}`;
}

/** Whether a call with these keys and arguments is within the limits: null, or the reason. */
export function checkRequest(policy, keys, args) {
  if (keys.length > policy.maxKeys) return `${keys.length} keys in one call; the limit is ${policy.maxKeys}`;
  let bytes = 0;
  for (const key of keys) {
    const reason = checkKey(policy, key);
    if (reason) return reason;
    bytes += utf8Length(key);
  }
  for (const arg of args) bytes += utf8Length(arg);
  if (bytes > policy.maxRequestBytes) return `${bytes} bytes of keys and arguments; the limit is ${policy.maxRequestBytes}`;
  return null;
}

/** `redis-eval` calls per one-second window of one call into the component (reset by `begin`). */
export class EvalWindow {
  constructor() {
    this.started = -Infinity;
    this.count = 0;
  }
  begin() {
    this.started = -Infinity;
    this.count = 0;
  }
  /** Records a call now; false when it is over `max` in its window. */
  admit(max) {
    const now = performance.now();
    if (now - this.started < 1000) {
      this.count += 1;
    } else {
      this.started = now;
      this.count = 1;
    }
    return this.count <= max;
  }
}

// Server error codes after which a retry can help (as reply.rs: BusyLoading, TryAgain,
// ClusterDown, MasterDown, ReadOnly, and BUSY).
const TRANSIENT_CODES = new Set(['LOADING', 'TRYAGAIN', 'CLUSTERDOWN', 'MASTERDOWN', 'READONLY', 'BUSY']);

/**
 * Sorts a failure of an ioredis call into the WIT `redis.error` cases, by what the caller
 * should do next: `unavailable` (connection or a transient server state), `rejected` (the server
 * refused: script error, wrong type, ACL, OOM...). Timeouts are ours (see redis-host.js) or
 * ioredis' `commandTimeout`.
 */
export function classify(err) {
  const text = err?.message ?? String(err);
  if (err?.name === 'ReplyError') {
    const code = text.split(' ', 1)[0];
    return TRANSIENT_CODES.has(code) ? { tag: 'unavailable', val: text } : { tag: 'rejected', val: text };
  }
  if (text === 'Command timed out') return { tag: 'timeout' };
  // Everything else ioredis raises is about the connection: refused, reset, closed, the offline
  // queue disabled, retries per request exhausted.
  return { tag: 'unavailable', val: text };
}

/**
 * Converts an ioredis reply (evalshaBuffer: Buffers, numbers, null, arrays) into the WIT
 * `redis.value`, within `maxBytes` (bulk bytes, plus 8 per array element). Returns `{tag:'ok',
 * val}` or `{tag:'err', val: error}`. ioredis does not tell status replies from bulk strings:
 * both arrive as bulk.
 */
export function flatten(reply, maxBytes) {
  let budget = maxBytes;
  const over = () => ({ tag: 'err', val: { tag: 'denied', val: `reply larger than the ${maxBytes}-byte limit` } });
  if (Array.isArray(reply)) {
    const out = new Array(reply.length);
    for (let i = 0; i < reply.length; i++) {
      budget -= 8;
      if (budget < 0) return over();
      const item = reply[i];
      if (Array.isArray(item)) return rejected('nested array');
      if (item instanceof Error) {
        return { tag: 'err', val: { tag: 'rejected', val: `error inside a reply: ${item.message}` } };
      }
      const s = scalar(item);
      if (s === null) return rejected(typeof item);
      if (s.tag === 'bulk') {
        budget -= s.val.length;
        if (budget < 0) return over();
      }
      out[i] = s;
    }
    return { tag: 'ok', val: { tag: 'array', val: out } };
  }
  const s = scalar(reply);
  if (s === null) return rejected(typeof reply);
  if (s.tag === 'bulk' && s.val.length > budget) return over();
  return { tag: 'ok', val: s };
}

function rejected(shape) {
  return { tag: 'err', val: { tag: 'rejected', val: `a reply of this shape cannot cross into the component: ${shape}` } };
}

function scalar(v) {
  if (v === null || v === undefined) return { tag: 'nil' };
  if (typeof v === 'number') return Number.isSafeInteger(v) ? { tag: 'int', val: BigInt(v) } : null;
  if (typeof v === 'bigint') return { tag: 'int', val: v };
  if (v instanceof Uint8Array) return { tag: 'bulk', val: v };
  if (typeof v === 'string') return { tag: 'bulk', val: Buffer.from(v, 'utf8') };
  return null;
}
