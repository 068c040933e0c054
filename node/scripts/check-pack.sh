#!/usr/bin/env bash
# The package as a user gets it: `npm pack` (no test or build files, the LICENSE, no file twice)
# and `npm publish --dry-run` of the tarball; the tarball installed into an empty ES module app
# with only registry dependencies (ioredis; TypeScript and @types/node to check the examples),
# the TypeScript examples (examples/quickstart.ts, an ES module, and examples/commonjs.cts,
# CommonJS) type-checked there with tsc under `strict` and run against a redis-server started
# here (loopback, free port, killed at the end); and installed into an empty CommonJS app whose
# plain `require` runs; each program under every supported Node (installed by
# install-node.sh). Also checks that the installed package carries the bundled component's
# SHA-256.
#
#   node/scripts/check-pack.sh        (after node/scripts/setup-node.sh; Node from $DLOCK_NODE)
set -euo pipefail
pkg="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$pkg/.." && pwd)"
node="${DLOCK_NODE:-node}"
# The newest npm setup-node.sh installed, by version (sort -V: npm-9 before npm-11).
npm_cli="$(ls -d "${DLOCK_NODE_HOME:-$repo/target/node}"/npm-*/bin/npm-cli.js 2>/dev/null | sort -V | tail -n 1 || true)"
npm() { if [ -n "$npm_cli" ]; then "$node" "$npm_cli" "$@"; else command npm "$@"; fi; }
export PATH="$(dirname "$(command -v "$node")"):$PATH"

tmp="$(mktemp -d)"
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then kill -9 "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

tarball="$(cd "$pkg" && npm pack --silent --pack-destination "$tmp" | tail -n 1)"
echo "check-pack: $tarball ($(du -k "$tmp/$tarball" | cut -f1) KiB, $(tar -tzf "$tmp/$tarball" | wc -l) files)"
if tar -tzf "$tmp/$tarball" | grep -Eq '^package/(test|tools|tmp|bench|scripts)/'; then
  echo "check-pack: the tarball carries test or build files" >&2
  exit 1
fi
if ! tar -xzOf "$tmp/$tarball" package/LICENSE | cmp -s - "$repo/LICENSE"; then
  echo "check-pack: the tarball does not carry the repository's LICENSE" >&2
  exit 1
fi

duplicates="$(mkdir "$tmp/unpacked" && tar -xzf "$tmp/$tarball" -C "$tmp/unpacked" \
  && cd "$tmp/unpacked" && find . -type f -exec sha256sum {} + | sort | uniq -w64 -D)"
if [ -n "$duplicates" ]; then
  echo "check-pack: the tarball carries files twice:" >&2
  echo "$duplicates" >&2
  exit 1
fi
npm publish --dry-run --loglevel=error "$tmp/$tarball" >/dev/null

app="$tmp/app"
mkdir "$app"
cat > "$app/package.json" <<'JSON'
{ "name": "dlock-example", "private": true, "type": "module" }
JSON
(cd "$app" && npm install --no-audit --no-fund --loglevel=error \
  "$tmp/$tarball" ioredis@6.0.0 typescript@5.9.3 @types/node@22.19.1 >/dev/null)
cp "$pkg/examples/quickstart.ts" "$pkg/examples/commonjs.cts" "$pkg/examples/tsconfig.json" "$app/"
(cd "$app" && "$node" node_modules/typescript/bin/tsc -p .)

want="$(sha256sum "$repo/host/bundle/dlock_guest.wasm" | cut -d' ' -f1)"
got="$("$node" -e "console.log(JSON.parse(require('fs').readFileSync('$app/node_modules/@dlock/node/gen/component.json','utf8')).sha256)")"
[ "$want" = "$got" ] || { echo "check-pack: the package carries component $got, not the bundled $want" >&2; exit 1; }

port="$("$node" -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis_pid=$!
for _ in $(seq 200); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
cjs="$tmp/cjs-app"
mkdir "$cjs"
cat > "$cjs/package.json" <<'JSON'
{ "name": "dlock-commonjs", "private": true, "type": "commonjs" }
JSON
(cd "$cjs" && npm install --no-audit --no-fund --loglevel=error "$tmp/$tarball" ioredis@6.0.0 >/dev/null)
cat > "$cjs/index.js" <<'JS'
const { Redis } = require('ioredis');
const { DistributedLock } = require('@dlock/node');
const redis = new Redis(process.env.REDIS_URL);
const lock = new DistributedLock(redis);
lock.acquire('commonjs', 5000)
  .then((handle) => handle.release().then(() => console.log(`status=${handle.info.status}`)))
  .finally(() => lock.close().then(() => redis.disconnect()));
JS

# Each program under every supported Node (registry.sh's NODE_MATRIX; 22 runs the worker
# backend, 24 and 26 JSPI).
mapfile -t nodes < <("$pkg/scripts/install-node.sh" | cut -d' ' -f1)
export REDIS_URL="redis://127.0.0.1:$port"
for each in "${nodes[@]}"; do
  version="$("$each" --version)"
  out="$(cd "$app" && "$each" dist/quickstart.js)"
  echo "$out" | sed "s/^/check-pack:   $version /"
  echo "$out" | grep -q '^released: isHeld=false status=released$' || { echo "check-pack: the example did not finish on Node $version" >&2; exit 1; }
  out="$(cd "$app" && "$each" dist/commonjs.cjs)"
  echo "$out" | sed "s/^/check-pack:   $version /"
  echo "$out" | grep -q '^required: backend=.* busy=true status=released$' || { echo "check-pack: the CommonJS example did not finish on Node $version" >&2; exit 1; }
  out="$(cd "$cjs" && "$each" index.js)"
  [ "$out" = "status=released" ] || { echo "check-pack: require() in a CommonJS app printed on Node $version: $out" >&2; exit 1; }
done
echo "check-pack: the packed package publishes (dry run), installs, type-checks and runs as an ES module and from CommonJS on Node ${#nodes[@]} versions (component ${want:0:16}...)"
