#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, the tarball installed into an empty directory with
# only registry dependencies (ioredis; TypeScript and @types/node to check the example), the
# TypeScript example (examples/quickstart.ts) type-checked there with tsc and run against a
# redis-server started here (loopback, free port, killed at the end). Also checks that the
# installed package carries the bundled component's SHA-256.
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

app="$tmp/app"
mkdir "$app"
cat > "$app/package.json" <<'JSON'
{ "name": "dlock-example", "private": true, "type": "module" }
JSON
(cd "$app" && npm install --no-audit --no-fund --loglevel=error \
  "$tmp/$tarball" ioredis@6.0.0 typescript@5.9.3 @types/node@22.19.1 >/dev/null)
cp "$pkg/examples/quickstart.ts" "$pkg/examples/tsconfig.json" "$app/"
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
out="$(cd "$app" && REDIS_URL="redis://127.0.0.1:$port" "$node" dist/quickstart.js)"
echo "$out" | sed 's/^/check-pack:   /'
echo "$out" | grep -q '^released: isHeld=false status=released$' || { echo "check-pack: the example did not finish" >&2; exit 1; }
echo "check-pack: the packed package installs, type-checks and runs (component ${want:0:16}...)"
