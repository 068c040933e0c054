// What the host lets the component run on Redis: the same rules as the Rust host's `Policy`
// (host/src/redis/policy.rs, limits.rs, reply.rs; sandbox.rs's token buckets), in JavaScript.
//
// Pure functions and plain data: no Redis client here, so tests can check the rules alone.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { companionKey, companionOf, isUuidV4, MAX_DURATION_MS, TOKEN_BYTES, wrappedLockKey } from './contract.js';
import { MAX_FOREIGN_TOKEN_BYTES, MAX_PERMITS, POLICY_DEFAULTS, SCRIPTS } from './generated/contract.js';

/** SHA1 of a script's source in lowercase hex, as Redis names scripts. */
export function sha1Hex(source) {
  return createHash('sha1').update(source, 'utf8').digest('hex');
}

let component;
/** What the build recorded about the component: `{sha256, bytes, jco, scripts: [{name, sha1,
 * source}]}`. */
export function componentInfo() {
  component ??= JSON.parse(readFileSync(new URL('../gen/component.json', import.meta.url), 'utf8'));
  return component;
}

/** The component's own Lua scripts ({name, sha1, source}), as the build recorded them. */
export function bundledScripts() {
  return componentInfo().scripts;
}

/** The defaults of the Rust host's `Policy::default()` (generated from the dlock-contract
 * crate: `commandTimeoutMs`, `maxKeys`, `maxKeyBytes`, `keyNamespace`, `maxRequestBytes`,
 * `maxReplyBytes`, `maxEvalsPerSecond`, `maxBytesPerSecond`, `allowForeignTokens`,
 * `maxComputeMs`, `maxMemoryBytes`: see index.d.ts), plus what only this host has. */
export const DEFAULT_POLICY = Object.freeze({
  ...POLICY_DEFAULTS,
  /** Lua sources allowed besides the bundled scripts. */
  allowScripts: [],
  /** When true, not even the bundled scripts may run (only `allowScripts`). */
  denyBundledScripts: false,
  /** After this many command timeouts in a row on one ioredis client, the connection is taken
   * for dead and the client is made to reconnect (`disconnect(true)`). 0: never. */
  reconnectAfterTimeouts: 3,
});

const POSITIVE = ['commandTimeoutMs', 'maxKeys', 'maxKeyBytes', 'maxRequestBytes', 'maxReplyBytes', 'maxEvalsPerSecond', 'maxBytesPerSecond', 'maxComputeMs', 'maxMemoryBytes'];

function positiveInt(name, v) {
  if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`policy.${name} must be a positive integer, got ${v}`);
  return v;
}

/** An allowlist entry: the script's SHA1, source, and which bundled script it is (its `role`,
 * whose argument shapes are checked), if any. */
function entry(source, sha1 = sha1Hex(source)) {
  const bundled = bundledScripts().find((s) => s.sha1 === sha1);
  const role = bundled && Object.hasOwn(SCRIPTS, bundled.name) ? bundled.name : null;
  return { sha1, source, role };
}

/**
 * Resolves a user's policy options (camelCase, every field optional) into the form the host
 * checks against: the limits, and `allowed` (sha1 -> entry), `bySource` (source -> entry),
 * `longestSource`. Plain data, so it can be sent to a worker.
 */
export function resolvePolicy(options = {}) {
  if (options === null || typeof options !== 'object') throw new TypeError('policy must be an object');
  for (const name of Object.keys(options)) {
    if (!(name in DEFAULT_POLICY)) throw new TypeError(`unknown policy option ${JSON.stringify(name)}`);
  }
  const p = { ...DEFAULT_POLICY, ...options };
  for (const k of POSITIVE) positiveInt(k, p[k]);
  if (!Number.isSafeInteger(p.reconnectAfterTimeouts) || p.reconnectAfterTimeouts < 0) {
    throw new TypeError(`policy.reconnectAfterTimeouts must be a non-negative integer, got ${p.reconnectAfterTimeouts}`);
  }
  if (typeof p.keyNamespace !== 'string') throw new TypeError('policy.keyNamespace must be a string');
  for (const k of ['allowForeignTokens', 'denyBundledScripts']) {
    if (typeof p[k] !== 'boolean') throw new TypeError(`policy.${k} must be a boolean`);
  }
  if (!Array.isArray(p.allowScripts)) throw new TypeError('policy.allowScripts must be an array of Lua sources');
  const allowed = new Map();
  if (!p.denyBundledScripts) {
    for (const s of bundledScripts()) allowed.set(s.sha1, entry(s.source, s.sha1));
  }
  for (const source of p.allowScripts) {
    if (typeof source !== 'string') throw new TypeError('policy.allowScripts must hold Lua sources (strings)');
    const e = entry(source);
    allowed.set(e.sha1, e);
  }
  const bySource = new Map([...allowed.values()].map((e) => [e.source, e]));
  let longestSource = 0;
  for (const s of bySource.keys()) longestSource = Math.max(longestSource, s.length);
  const resolved = { allowed, bySource, longestSource };
  for (const k of Object.keys(DEFAULT_POLICY)) {
    if (k !== 'allowScripts' && k !== 'denyBundledScripts') resolved[k] = p[k];
  }
  return resolved;
}

/** The allowlist entry for this source, or the reason it is refused. A known source costs a
 * map lookup; a refused one is hashed only to name it, and only when it is no longer than the
 * longest allowed one (as the Rust host). */
export function admitScript(policy, source) {
  const known = policy.bySource.get(source);
  if (known) return known;
  if (source.length > policy.longestSource) {
    return `a script of ${Buffer.byteLength(source, 'utf8')} bytes is not in the host's allowlist (it is longer than any allowed script)`;
  }
  return `script ${sha1Hex(source)} is not in the host's allowlist`;
}

// Unicode general category Cc, as Rust's `char::is_control`.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

/** Bytes of `s` in UTF-8 (Rust's `String::len`). */
export function utf8Length(s) {
  return ASCII.test(s) ? s.length : Buffer.byteLength(s, 'utf8');
}

function checkKey(policy, key) {
  if (key.length === 0) return 'an empty key';
  const bytes = utf8Length(key);
  if (bytes > policy.maxKeyBytes) return `a key of ${bytes} bytes; the limit is ${policy.maxKeyBytes}`;
  if (CONTROL.test(key)) return `a key with control characters: ${JSON.stringify(key)}`;
  const ns = policy.keyNamespace;
  if (key.startsWith(ns)) return null;
  const locked = wrappedLockKey(key);
  if (locked !== null && locked.startsWith(ns)) return null;
  return `the key ${JSON.stringify(key)} is outside the namespace ${JSON.stringify(ns)}`;
}

/** Whether a call with these keys and arguments is within the limits (script aside): null, or
 * the reason. Returns the byte count through `out.bytes` for the byte-rate bucket. */
export function checkRequest(policy, keys, args, out) {
  if (keys.length > policy.maxKeys) return `${keys.length} keys in one call; the limit is ${policy.maxKeys}`;
  let bytes = 0;
  for (const k of keys) bytes += utf8Length(k);
  for (const a of args) bytes += utf8Length(a);
  if (out) out.bytes = bytes;
  if (bytes > policy.maxRequestBytes) return `${bytes} bytes of keys and arguments; the limit is ${policy.maxRequestBytes}`;
  for (const key of keys) {
    const reason = checkKey(policy, key);
    if (reason) return reason;
  }
  return null;
}

// Each bundled script's shapes of call (the contract's `Script::shapes`), by `keys,arguments`.
const SHAPES = Object.fromEntries(Object.entries(SCRIPTS).map(([name, shapes]) => [
  name,
  new Map(shapes.map((shape) => [`${shape.keys.length},${shape.args.length}`, shape])),
]));

/**
 * Whether a call of a bundled script has one of the shapes that script is written for
 * (limits.rs `check_role`): so that an allowed script cannot become an oracle for guessed
 * values, a deleter of fence counters or a writer of arbitrary data. Null, or the reason.
 */
export function checkRole(policy, role, keys, args) {
  const shape = SHAPES[role].get(`${keys.length},${args.length}`);
  if (shape === undefined) {
    return `the ${role} script does not take ${keys.length} keys with ${args.length} arguments`;
  }
  const lock = keys[0];
  for (let i = 0; i < keys.length; i++) {
    const want = shape.keys[i];
    if (want === 'any') continue;
    if (want === 'lock') {
      const kind = companionOf(keys[i]);
      if (kind !== null) return `${JSON.stringify(keys[i])} is a ${kind} key, not a lock key`;
    } else if (companionKey(lock, want) !== keys[i]) {
      return `${JSON.stringify(keys[i])} is not the ${want} key of ${JSON.stringify(lock)}`;
    }
  }
  for (let i = 0; i < args.length; i++) {
    const want = shape.args[i];
    let reason;
    if (want === 'new-token' || want === 'held-token') {
      reason = checkToken(args[i], want === 'held-token' && policy.allowForeignTokens);
    } else if (want === 'quiet') {
      // The role's name is its only value (dlock_contract's `ArgRole::QUIET`).
      reason = args[i] === want ? null : `${JSON.stringify(args[i])} where only "quiet" may be`;
    } else if (want === 'ttl' || want === 'wait') {
      reason = checkDecimal('a duration', 'milliseconds', args[i], MAX_DURATION_MS);
    } else if (want === 'limit' || want === 'permits') {
      reason = checkDecimal('a permit count', 'permits', args[i], MAX_PERMITS);
    } else {
      reason = `an argument of the unknown role ${want}`;
    }
    if (reason) return reason;
  }
  return null;
}

function checkToken(token, foreign) {
  if (foreign) {
    if (token.length === 0 || utf8Length(token) > MAX_FOREIGN_TOKEN_BYTES || CONTROL.test(token)) {
      return `a token must be 1 to ${MAX_FOREIGN_TOKEN_BYTES} bytes without control characters`;
    }
    return null;
  }
  if (isUuidV4(token)) return null;
  const shown = utf8Length(token) <= 64 ? JSON.stringify(token) : `${utf8Length(token)} bytes`;
  return `a token that is not dlock's (${TOKEN_BYTES}-byte lowercase UUID v4): ${shown}`;
}

const DIGITS = /^[0-9]{1,20}$/;

/** A number argument: 1 to `max` in decimal digits (host policy `check_decimal`). */
function checkDecimal(what, unit, arg, max) {
  if (DIGITS.test(arg)) {
    const n = Number(arg);
    if (n >= 1 && n <= max) return null;
  }
  return `${what} must be 1 to ${max} ${unit} in decimal digits, not ${JSON.stringify(arg.slice(0, 32))}`;
}

/**
 * A token bucket (sandbox.rs `TokenBucket`): up to `capacity` units at once, refilled at
 * `capacity` units per second. No more than `capacity` in a burst, no more than `capacity` per
 * second sustained.
 */
export class TokenBucket {
  constructor(capacity) {
    this.capacity = capacity;
    this.available = capacity;
    this.refilled = null;
  }

  /** Takes `units` at `now` (ms, performance.now()); false (and nothing taken) when the bucket
   * holds fewer. */
  take(units, now = performance.now()) {
    if (this.refilled !== null) {
      const earned = (Math.max(0, now - this.refilled) / 1000) * this.capacity;
      this.available = Math.min(this.capacity, this.available + earned);
    }
    this.refilled = now;
    if (units > this.available) return false;
    this.available -= units;
    return true;
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
 * val}` or `{tag:'err', val: error}`.
 *
 * ioredis does not tell status replies from bulk strings (both arrive as Buffers): both reach
 * the component as `bulk`. Integers arrive as numbers, exact only below 2^53 - 48 (ioredis 6
 * decodes `n * 10 + byte - 48`, whose sum rounds past 2^53, so a number in the last 48 below
 * 2^53 may be a neighbour misread): from there on one is `rejected`, never rounded, unless the
 * caller's client has `stringNumbers: true`, which makes ioredis deliver integers as decimal
 * strings (then every s64 crosses exactly).
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
      if (typeof s === 'string') return rejected(s);
      if (s.tag === 'bulk') {
        budget -= s.val.length;
        if (budget < 0) return over();
      }
      out[i] = s;
    }
    return { tag: 'ok', val: { tag: 'array', val: out } };
  }
  const s = scalar(reply);
  if (typeof s === 'string') return rejected(s);
  if (s.tag === 'bulk' && s.val.length > budget) return over();
  return { tag: 'ok', val: s };
}

function rejected(shape) {
  return { tag: 'err', val: { tag: 'rejected', val: `a reply of this shape cannot cross into the component: ${shape}` } };
}

const S64_MIN = -(2n ** 63n);
/** The largest magnitude ioredis 6's decoder reads exactly (see `flatten`). */
const IOREDIS_EXACT = 2 ** 53 - 49;
const S64_MAX = 2n ** 63n - 1n;
const INTEGER = /^-?[0-9]+$/;

/** One scalar as the WIT gives it, or a string naming why it cannot cross. */
function scalar(v) {
  if (v === null || v === undefined) return { tag: 'nil' };
  if (typeof v === 'number') {
    if (Number.isInteger(v) && Math.abs(v) <= IOREDIS_EXACT) return { tag: 'int', val: BigInt(v) };
    return Number.isInteger(v)
      ? 'an integer within 48 of 2^53 or beyond, which ioredis cannot read exactly (give the client stringNumbers: true)'
      : 'a number that is not an integer';
  }
  if (typeof v === 'bigint') return v >= S64_MIN && v <= S64_MAX ? { tag: 'int', val: v } : 'an integer outside s64';
  if (v instanceof Uint8Array) return { tag: 'bulk', val: v };
  if (typeof v === 'string') {
    // With `stringNumbers`, integer replies arrive as decimal strings (bulk replies stay Buffers).
    if (INTEGER.test(v)) {
      const n = BigInt(v);
      return n >= S64_MIN && n <= S64_MAX ? { tag: 'int', val: n } : 'an integer outside s64';
    }
    return 'a string reply ioredis did not return as a Buffer';
  }
  return typeof v;
}
