// Builds the JavaScript bindings of the dlock component with jco, from the .wasm file itself.
//
// Inputs (each: environment variable, else default):
//   DLOCK_WASM     the component (default: ../host/dlock_guest.wasm, relative to this package)
//   DLOCK_SCRIPTS  the directory of the component's Lua scripts (default: ../guest/scripts);
//                  the build checks that each script's source is inside the component, and the
//                  default allowlist is exactly these scripts, by SHA1
// Output: gen/ (not in git)
//   gen/jspi/      jco --async-mode jspi --instantiation async   (Node with JSPI)
//   gen/sync/      jco --instantiation sync                       (worker-thread backend)
//   gen/component.json  {sha256, wasm path, scripts: [{name, sha1, source}], jco version}
//
// The list of async exports below is the only WIT knowledge here: every export that can reach
// `redis-eval` or `pollable.block` must be listed, or JSPI traps with "SuspendError".
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const wasm = resolve(pkg, process.env.DLOCK_WASM || process.argv[2] || '../host/dlock_guest.wasm');
const scriptsDir = resolve(pkg, process.env.DLOCK_SCRIPTS || '../guest/scripts');
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

const jcoPkg = JSON.parse(readFileSync(join(pkg, 'node_modules/@bytecodealliance/jco/package.json'), 'utf8'));
const jco = join(pkg, 'node_modules/@bytecodealliance/jco', jcoPkg.bin.jco);

// Exports that may suspend (reach redis-eval or pollable.block). Methods named here that the
// component does not export are an error in jco: keep this list in step with the WIT.
const LOCK = 'dlock:lock/lock';
const ASYNC_EXPORTS = [
  `${LOCK}#[method]client.acquire`,
  `${LOCK}#[method]client.try-acquire`,
  `${LOCK}#[method]client.wait-for-lock`,
  `${LOCK}#[method]client.is-locked`,
  `${LOCK}#[method]client.lock-state`,
  `${LOCK}#[method]lock-handle.release`,
  `${LOCK}#[method]lock-handle.extend`,
];
const ASYNC_IMPORTS = ['dlock:lock/redis#redis-eval', 'wasi:io/poll#[method]pollable.block'];

function transpile(out, extra) {
  rmSync(out, { recursive: true, force: true });
  const args = [jco, 'transpile', wasm, '-o', out, '--name', 'component', '-q',
    '--no-wasi-shim', '--no-namespaced-exports', '--base64-cutoff', '0', ...extra];
  const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`dlock build: jco transpile failed (${r.status ?? r.signal})`);
    process.exit(1);
  }
}

mkdirSync(gen, { recursive: true });
transpile(join(gen, 'jspi'), ['--instantiation', 'async', '--async-mode', 'jspi',
  '--async-imports', ...ASYNC_IMPORTS, '--async-exports', ...ASYNC_EXPORTS]);
transpile(join(gen, 'sync'), ['--instantiation', 'sync']);
writeFileSync(join(gen, 'component.json'), JSON.stringify({
  wasm, sha256, bytes: bytes.length, jco: jcoPkg.version, scripts,
}, null, 2) + '\n');
console.log(`dlock build: ${wasm} (sha256 ${sha256.slice(0, 16)}..., ${bytes.length} bytes), `
  + `${scripts.length} scripts, jco ${jcoPkg.version} -> ${gen}`);
