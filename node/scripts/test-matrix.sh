#!/usr/bin/env bash
# Runs the tests under Node 22 (worker backend), 24 and 26 (JSPI and worker), as installed by
# scripts/install-node.sh (into target/node/matrix). Needs `npm ci` and `npm run build` done first, and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${DLOCK_NODE_DIR:-$(cd .. && pwd)/target/node/matrix}"
scripts/install-node.sh "$DIR" >/dev/null
status=0
for major in 22 24 26; do
  bin="$DIR/$major/bin/node"
  echo "== $("$bin" --version)"
  "$bin" --test --test-concurrency=1 --test-reporter=dot "test/*.test.mjs" || status=1
done
exit $status
