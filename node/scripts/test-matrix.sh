#!/usr/bin/env bash
# Runs the tests under each Node of the matrix (registry.sh's NODE_MATRIX: 22 runs the worker
# backend, 24 and 26 JSPI and worker), installed by scripts/install-node.sh into
# target/node/matrix. Needs `npm ci` and `npm run build` done first, and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${DLOCK_NODE_DIR:-$(cd .. && pwd)/target/node/matrix}"
mapfile -t bins < <(scripts/install-node.sh "$DIR" | cut -d' ' -f1)
status=0
for bin in "${bins[@]}"; do
  echo "== $("$bin" --version)"
  "$bin" --test --test-concurrency=1 --test-reporter=dot "test/*.test.mjs" || status=1
done
exit $status
