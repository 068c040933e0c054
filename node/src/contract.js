// What the component and its hosts agree on, as far as this host applies it: the key rules of
// the dlock-contract crate (contract/ in the repository) in JavaScript. Its constants are in
// ./generated/contract.js, generated from that crate; test/component.test.mjs checks these
// rules on the crate's documented examples.
import { COMPANION_DESCRIPTIONS, COMPANION_SUFFIXES, MAX_DURATION_MS, TOKEN_BYTES } from './generated/contract.js';

export { MAX_DURATION_MS, MAX_QUORUM_NODES, MAX_RANDOM_BYTES, MAX_TOKEN_BYTES, TOKEN_BYTES } from './generated/contract.js';

/** The component's check of a duration (`check_duration_ms`): null, or why `ms`
 * (a bigint) is refused. */
export function checkDurationMs(what, ms, allowZero) {
  if (ms === 0n && !allowZero) return `${what} must be positive, got 0 ms`;
  if (ms > BigInt(MAX_DURATION_MS)) return `${what} of ${ms} ms is over the limit of ${MAX_DURATION_MS} ms`;
  return null;
}

/** Whether Redis Cluster hashes only part of `key`: a `{` followed later by a `}` with at least
 * one character between them. */
export function hasHashTag(key) {
  const open = key.indexOf('{');
  if (open < 0) return false;
  const close = key.indexOf('}', open + 1);
  return close > open + 1;
}

/** The suffixes of a lock key's companion keys (`Companion`): its fence counter, its signal list
 * (release signals to waiters) and its waiters' mark. */
export const COMPANIONS = COMPANION_SUFFIXES;

/** The lock key whose `companion` key `key` is (`companion_stem`), or null. */
function companionStem(key, companion) {
  const suffix = COMPANIONS[companion];
  if (!key.endsWith(suffix)) return null;
  const stem = key.slice(0, -suffix.length);
  if (stem.endsWith(':')) {
    const tagged = stem.slice(0, -1);
    return hasHashTag(tagged) ? tagged : null;
  }
  if (!stem.startsWith('{') || !stem.endsWith('}')) return null;
  const inner = stem.slice(1, -1);
  return inner.length > 0 && !inner.includes('}') ? inner : null;
}

/** Which companion key `key` is (`'fence'`, `'signal'`, `'waiters'`), or null: what
 * `companionKey` makes of some lock key (`{job}:fence`, `app:{job}::signal`). */
export function companionOf(key) {
  for (const name of Object.keys(COMPANIONS)) {
    if (companionStem(key, name) !== null) return name;
  }
  return null;
}

/** The component's check of a lock key (`check_lock_key`): null, or why `key` (a
 * companion key of some lock) is no lock key. */
export function checkLockKey(key) {
  const companion = companionOf(key);
  if (companion === null) return null;
  return `the key ${JSON.stringify(key)} is a lock's ${COMPANION_DESCRIPTIONS[companion]}, not a lock: use another key`;
}

/** Whether `key` is some lock key's fence counter. */
export function isFenceCounter(key) {
  return companionOf(key) === 'fence';
}

/** The companion key (`'fence'`, `'signal'`, `'waiters'`) of a lock key, in its cluster slot, or
 * null when it has none (a `}` without a hash tag): `{KEY}:fence` for a key without a hash tag,
 * `KEY::fence` for one with (`companion_key`: distinct keys never share one). */
export function companionKey(redisKey, companion) {
  const suffix = COMPANIONS[companion];
  if (hasHashTag(redisKey)) return `${redisKey}:${suffix}`;
  if (!redisKey.includes('}')) return `{${redisKey}}${suffix}`;
  return null;
}

/** The fence counter of a lock key, or null when it has none. */
export function fenceKey(redisKey) {
  return companionKey(redisKey, 'fence');
}

/** The lock key whose companion `key` is, for companions of keys without a hash tag
 * (`{job}:signal` -> `job`); null otherwise. */
export function wrappedLockKey(key) {
  for (const name of Object.keys(COMPANIONS)) {
    const stem = companionStem(key, name);
    if (stem !== null && !hasHashTag(stem)) return stem;
  }
  return null;
}

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Whether `token` has the form of the component's own tokens. */
export function isUuidV4(token) {
  return token.length === TOKEN_BYTES && UUID_V4.test(token);
}
