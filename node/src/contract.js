// What the component and its hosts agree on, as far as this host applies it: the JavaScript
// form of the component's `contract.rs` (guest/src/contract.rs, bundled as
// host/bundle/contract.rs), limited to what the host's policy checks. test/component.test.mjs
// checks these values against that file.

/** Longest token `attach` accepts, and the longest foreign token the policy lets through. */
export const MAX_TOKEN_BYTES = 256;
/** Length of the component's own tokens: a UUID v4 in hyphenated lowercase form. */
export const TOKEN_BYTES = 36;
/** Longest TTL or wait, in milliseconds (about 31.7 years). */
export const MAX_DURATION_MS = 1_000_000_000_000;

/** The component's check of a duration (contract.rs `check_duration_ms`): null, or why `ms`
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

/** Whether `key` is some lock key's fence counter: ends in `:fence`, and the part before it
 * has a hash tag (`{job}:fence`, `app:{job}:fence`). */
export function isFenceCounter(key) {
  return key.endsWith(':fence') && hasHashTag(key.slice(0, -':fence'.length));
}

/** The fence counter of a lock key (same cluster slot), or null when it has none (a `}`
 * without a hash tag). */
export function fenceKey(redisKey) {
  if (hasHashTag(redisKey)) return `${redisKey}:fence`;
  if (!redisKey.includes('}')) return `{${redisKey}}:fence`;
  return null;
}

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Whether `token` has the form of the component's own tokens. */
export function isUuidV4(token) {
  return token.length === TOKEN_BYTES && UUID_V4.test(token);
}
