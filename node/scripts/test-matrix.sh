#!/usr/bin/env bash
# Runs the tests under Node 22 (worker backend), 24 and 26 (JSPI and worker), as installed by
# scripts/install-node.sh. Needs `npm ci` and `npm run build` done first, and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${DLOCK_NODE_DIR:-/opt/dlock-node}"
scripts/install-node.sh "$DIR" >/dev/null
status=0
for major in 22 24 26; do
  bin="$DIR/$major/node_modules/node/bin/node"
  echo "== $("$bin" --version)"
  "$bin" --test --test-concurrency=1 --test-reporter=dot "test/*.test.mjs" || status=1
done
exit $status
