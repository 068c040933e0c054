// The package runs the unmodified component the Rust host bundles (host/bundle/dlock_guest.wasm,
// byte for byte what guest/ builds), and applies the same contract (the dlock-contract crate,
// generated into src/generated/contract.js).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { COMPONENT } from '../src/index.js';
import {
  checkLockKey,
  companionKey,
  companionOf,
  fenceKey,
  hasHashTag,
  isFenceCounter,
  isUuidV4,
  wrappedLockKey,
} from '../src/contract.js';
import { SCRIPTS, WIT_VERSION } from '../src/generated/contract.js';
import { bundledScripts } from '../src/policy.js';

const bundle = new URL('../../host/bundle/', import.meta.url);
const wasm = readFileSync(new URL('dlock_guest.wasm', bundle));

test('the package was built from the bundled component: same SHA-256', () => {
  const sha256 = createHash('sha256').update(wasm).digest('hex');
  assert.equal(COMPONENT.sha256, sha256, 'gen/ is stale: run npm run build');
  assert.equal(COMPONENT.bytes, wasm.length);
});

test('every core module the package instantiates is a verbatim slice of that file, shipped once', () => {
  const dir = new URL('../gen/core/', import.meta.url);
  const cores = readdirSync(dir).filter((f) => f.endsWith('.wasm'));
  assert.ok(cores.length >= 1);
  for (const f of cores) {
    const core = readFileSync(new URL(f, dir));
    assert.ok(wasm.indexOf(core) >= 0, `core/${f} is not inside dlock_guest.wasm`);
  }
  for (const build of ['jspi', 'sync']) {
    const copies = readdirSync(new URL(`../gen/${build}/`, import.meta.url)).filter((f) => f.endsWith('.wasm'));
    assert.deepEqual(copies, [], `gen/${build}/ has its own copies of core modules`);
  }
});

test('the allowlist is the bundled scripts, byte for byte', () => {
  for (const s of bundledScripts()) {
    assert.equal(readFileSync(new URL(`scripts/${s.name}.lua`, bundle), 'utf8'), s.source, s.name);
  }
  assert.deepEqual(bundledScripts().map((s) => s.name).sort(), readdirSync(new URL('scripts/', bundle)).map((f) => f.replace(/\.lua$/, '')).sort());
});

test('the component is the generated contract\'s: its WIT version and its scripts', () => {
  assert.ok(wasm.includes(Buffer.from(`dlock:lock/redis@${WIT_VERSION}`)), `the component imports dlock:lock/redis@${WIT_VERSION}`);
  assert.deepEqual(bundledScripts().map((s) => s.name).sort(), Object.keys(SCRIPTS).sort());
});

test('the key rules are the contract\'s', () => {
  // the examples of the contract's documentation and the host's tests
  assert.equal(fenceKey('job'), '{job}:fence');
  assert.equal(fenceKey('app:{job}'), 'app:{job}::fence');
  assert.equal(fenceKey('{job}'), '{job}::fence');
  assert.equal(fenceKey('a}b'), null);
  assert.equal(fenceKey('{}x'), null); // a '}' but no hash tag
  for (const k of ['{job}:fence', 'app:{job}::fence', '{job}::fence']) assert.ok(isFenceCounter(k), k);
  for (const k of ['job:fence', '{}:fence', 'job', '{job}:fences', 'app:{job}:fence', '{a}b}:fence']) {
    assert.ok(!isFenceCounter(k), k);
  }
  assert.ok(isUuidV4('0f8fad5b-d9cb-469f-a165-70867728950e'));
  for (const t of ['0F8FAD5B-D9CB-469F-A165-70867728950E', '0f8fad5b-d9cb-369f-a165-70867728950e', '0f8fad5b-d9cb-469f-c165-70867728950e', 'token']) {
    assert.ok(!isUuidV4(t), t);
  }
});

test('every runtime export is declared in index.d.ts, and nothing else', async () => {
  const runtime = Object.keys(await import('../src/index.js')).sort();
  const dts = readFileSync(new URL('../src/index.d.ts', import.meta.url), 'utf8');
  const declared = [...dts.matchAll(/^export declare (?:class|function|const) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, runtime);
});

test('distinct lock keys never share a companion key, and companions stay in the slot (the contract)', () => {
  // Every string of up to 5 characters of 'x{}:' and each with a companion suffix appended.
  const alphabet = ['x', '{', '}', ':'];
  let layer = [''];
  const keys = new Set();
  for (let n = 0; n < 5; n++) {
    layer = layer.flatMap((k) => alphabet.map((c) => k + c));
    for (const k of layer) keys.add(k);
  }
  for (const stem of [...keys]) {
    for (const suffix of [':fence', ':signal', ':waiters']) {
      for (const sep of ['', ':', '}']) keys.add(stem + sep + suffix);
    }
  }
  const slot = (key) => {
    const open = key.indexOf('{');
    const close = open < 0 ? -1 : key.indexOf('}', open + 1);
    const tagged = close > open + 1 ? key.slice(open + 1, close) : key;
    let crc = 0;
    for (const byte of Buffer.from(tagged)) {
      crc ^= byte << 8;
      for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc % 16384;
  };
  const named = new Map();
  for (const key of keys) {
    if (checkLockKey(key) !== null) {
      assert.notEqual(companionOf(key), null, key);
      continue;
    }
    for (const companion of ['fence', 'signal', 'waiters']) {
      const name = companionKey(key, companion);
      if (name === null) continue;
      assert.equal(slot(name), slot(key), `${key} -> ${name}`);
      assert.equal(companionOf(name), companion, name);
      assert.equal(wrappedLockKey(name), hasHashTag(key) ? null : key, name);
      assert.ok(!named.has(name), `${key} and ${named.get(name)} share ${name}`);
      named.set(name, key);
    }
  }
  assert.ok(named.size > 1000, `${named.size} companions checked`);
  assert.notEqual(companionKey('x', 'fence'), companionKey('{x}', 'fence'));
});
