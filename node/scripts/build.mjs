// Builds the JavaScript bindings of the dlock component with jco, from the .wasm file itself.
//
// Inputs (each: environment variable, else default):
//   DLOCK_WASM     the component (default: ../host/bundle/dlock_guest.wasm, the component the Rust host bundles)
//   DLOCK_SCRIPTS  the directory of the component's Lua scripts (default: ../host/bundle/scripts);
//                  the build checks that each script's source is inside the component, and the
//                  default allowlist is exactly these scripts, by SHA1
// Output: gen/ (not in git)
//   gen/jspi/      jco --async-mode jspi --instantiation async   (Node with JSPI)
//   gen/sync/      jco --instantiation sync                       (worker-thread backend)
//   gen/core/      the core modules, the same in both builds (checked), shipped once
//   gen/component.json  {sha256, wasm path (relative to this package), scripts: [{name, sha1,
//                       source}], jco version}
//   LICENSE        the repository's LICENSE, which the package carries
//
// The list of async exports below is the only WIT knowledge here: every export that can reach
// `redis-eval` or `pollable.block` must be listed, or JSPI traps with "SuspendError".
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const wasm = resolve(pkg, process.env.DLOCK_WASM || process.argv[2] || '../host/bundle/dlock_guest.wasm');
const scriptsDir = resolve(pkg, process.env.DLOCK_SCRIPTS || '../host/bundle/scripts');
const gen = join(pkg, 'gen');

if (!existsSync(wasm)) {
  console.error(`dlock build: no component at ${wasm}; set DLOCK_WASM to the component's path`);
  process.exit(2);
}
const bytes = readFileSync(wasm);
const sha256 = createHash('sha256').update(bytes).digest('hex');

const scripts = [];
for (const file of readdirSync(scriptsDir).filter((f) => f.endsWith('.lua')).sort()) {
  const source = readFileSync(join(scriptsDir, file), 'utf8');
  if (bytes.indexOf(Buffer.from(source, 'utf8')) < 0) {
    console.error(`dlock build: ${file} is not the script inside ${wasm} (stale ${scriptsDir}?)`);
    process.exit(2);
  }
  scripts.push({ name: file.slice(0, -4), sha1: createHash('sha1').update(source).digest('hex'), source });
}
if (scripts.length === 0) {
  console.error(`dlock build: no .lua scripts in ${scriptsDir}`);
  process.exit(2);
}

const jcoManifest = join(pkg, 'node_modules/@bytecodealliance/jco/package.json');
if (!existsSync(jcoManifest)) {
  console.error(`dlock build: jco is not installed in ${join(pkg, 'node_modules')}; run \`npm ci\` in ${pkg} first`);
  process.exit(2);
}
const jcoPkg = JSON.parse(readFileSync(jcoManifest, 'utf8'));
const jco = join(pkg, 'node_modules/@bytecodealliance/jco', jcoPkg.bin.jco);

// Exports that may suspend (reach redis-eval or pollable.block). Methods named here that the
// component does not export are an error in jco: keep this list in step with the WIT.
const LOCK = 'dlock:lock/lock';
const ASYNC_EXPORTS = [
  `${LOCK}#[method]client.acquire`,
  `${LOCK}#[method]client.try-acquire`,
  `${LOCK}#[method]client.wait-for-lock`,
  `${LOCK}#[method]client.is-locked`,
  `${LOCK}#[method]client.key-state`,
  `${LOCK}#[method]client.acquire-permits`,
  `${LOCK}#[method]client.try-acquire-permits`,
  `${LOCK}#[method]client.wait-for-permits`,
  `${LOCK}#[method]client.semaphore-state`,
  `${LOCK}#[method]lock-handle.release`,
  `${LOCK}#[method]lock-handle.extend`,
];
const ASYNC_IMPORTS = ['dlock:lock/redis#redis-eval', 'dlock:lock/redis#redis-eval-all', 'dlock:lock/redis#wait-for-release',
  'wasi:io/poll#[method]pollable.block'];

function transpile(out, extra) {
  rmSync(out, { recursive: true, force: true });
  const args = [jco, 'transpile', wasm, '-o', out, '--name', 'component', '-q',
    '--no-wasi-shim', '--no-namespaced-exports', '--no-typescript', '--base64-cutoff', '0', ...extra];
  const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`dlock build: jco transpile failed (${r.status ?? r.signal})`);
    process.exit(1);
  }
}

// Two rewrites of jco's helpers, measured to save 1-1.5 us of CPU per acquire+release (see
// docs/history/NODE.md). Each must match exactly once; if a jco upgrade changes the helper,
// the build says so and leaves that helper as jco wrote it (the bindings stay correct, only
// slower).
const PATCHES = [
  {
    name: 'dataView without memory.buffer',
    from: `  let dv = new DataView(new ArrayBuffer());
  const dataView = mem => dv.buffer === mem.buffer ? dv : dv = new DataView(mem.buffer);`,
    // A memory's buffer changes only when it grows, and the old one is then detached
    // (byteLength 0): checking that avoids two calls of the costly memory.buffer getter.
    to: `  let dv = new DataView(new ArrayBuffer());
  let dvMem = null;
  const dataView = mem => dvMem === mem && dv.buffer.byteLength !== 0 ? dv : (dvMem = mem, dv = new DataView(mem.buffer));`,
  },
  {
    name: 'utf8Encode of ASCII into linear memory',
    from: `    let buf = utf8Encoder.encode(s);
    let ptr = realloc(0, 0, 1, buf.length);`,
    // ASCII strings (keys, tokens, numbers) are encoded straight into linear memory, without
    // an intermediate Uint8Array and copy.
    to: `    if (/^[\\x00-\\x7f]*$/.test(s)) {
      const ptr = realloc(0, 0, 1, s.length);
      utf8Encoder.encodeInto(s, new Uint8Array(memory.buffer, ptr, s.length));
      utf8EncodedLen = s.length;
      return ptr;
    }
    let buf = utf8Encoder.encode(s);
    let ptr = realloc(0, 0, 1, buf.length);`,
  },
];

function patchGlue(file) {
  let js = readFileSync(file, 'utf8');
  const applied = [];
  for (const p of PATCHES) {
    const count = js.split(p.from).length - 1;
    if (count === 1) {
      js = js.replace(p.from, () => p.to);
      applied.push(p.name);
    } else {
      console.warn(`dlock build: jco's output has ${count} copies of the helper for "${p.name}"; left unpatched`);
    }
  }
  writeFileSync(file, js);
  return applied;
}

mkdirSync(gen, { recursive: true });
transpile(join(gen, 'jspi'), ['--instantiation', 'async', '--async-mode', 'jspi',
  '--async-imports', ...ASYNC_IMPORTS, '--async-exports', ...ASYNC_EXPORTS]);
transpile(join(gen, 'sync'), ['--instantiation', 'sync']);
const patches = {
  jspi: patchGlue(join(gen, 'jspi', 'component.js')),
  sync: patchGlue(join(gen, 'sync', 'component.js')),
};
// Both builds carry the same core modules (only the JavaScript glue differs): the package
// ships one copy, in gen/core/, which both load (src/memory.js).
const core = join(gen, 'core');
rmSync(core, { recursive: true, force: true });
mkdirSync(core);
for (const file of readdirSync(join(gen, 'jspi')).filter((f) => f.endsWith('.wasm')).sort()) {
  const jspiBytes = readFileSync(join(gen, 'jspi', file));
  if (!existsSync(join(gen, 'sync', file)) || !jspiBytes.equals(readFileSync(join(gen, 'sync', file)))) {
    console.error(`dlock build: jco's two builds differ in ${file}; the package cannot share it`);
    process.exit(1);
  }
  writeFileSync(join(core, file), jspiBytes);
  rmSync(join(gen, 'jspi', file));
  rmSync(join(gen, 'sync', file));
}
const leftover = readdirSync(join(gen, 'sync')).filter((f) => f.endsWith('.wasm'));
if (leftover.length > 0) {
  console.error(`dlock build: only the sync build has ${leftover.join(', ')}`);
  process.exit(1);
}
writeFileSync(join(gen, 'component.json'), JSON.stringify({
  wasm: relative(pkg, wasm), sha256, bytes: bytes.length, jco: jcoPkg.version, patches, scripts,
}, null, 2) + '\n');
console.log(`dlock build: ${wasm} (sha256 ${sha256.slice(0, 16)}..., ${bytes.length} bytes), `
  + `${scripts.length} scripts, jco ${jcoPkg.version} -> ${gen}`);
copyFileSync(join(pkg, '..', 'LICENSE'), join(pkg, 'LICENSE'));
