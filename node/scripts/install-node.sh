#!/usr/bin/env bash
# Installs the Node.js versions this package supports from the npm registry (the `node` package
# carries the official binaries), each into its own prefix, without touching the system's node.
#
#   scripts/install-node.sh [DIR]        (default: $DLOCK_NODE_DIR or /opt/dlock-node)
#
# Afterwards: DIR/22/node_modules/node/bin/node, DIR/24/..., DIR/26/... ; prints the paths.
# Versions are pinned here; change them in one place.
set -euo pipefail
DIR="${1:-${DLOCK_NODE_DIR:-/opt/dlock-node}}"
declare -A VERSIONS=([22]=22.23.3 [24]=24.21.0 [26]=26.10.0)
for major in 22 24 26; do
  v="${VERSIONS[$major]}"
  bin="$DIR/$major/node_modules/node/bin/node"
  if [ -x "$bin" ] && [ "$("$bin" --version)" = "v$v" ]; then
    echo "$bin (v$v, already there)"
    continue
  fi
  mkdir -p "$DIR/$major"
  npm install --prefix "$DIR/$major" --no-audit --no-fund --no-save --loglevel=error "node@$v" >/dev/null
  echo "$bin ($("$bin" --version))"
done
