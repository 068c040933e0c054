#!/usr/bin/env bash
# Installs the Node.js versions this package supports, for the test matrix: registry.sh's
# NODE_MATRIX, from the npm registry with their pinned SHA-512s, into the repository's target/
# (nothing outside it; the system's node and npm are neither used nor changed).
#
#   scripts/install-node.sh [DIR]        (default: $DLOCK_NODE_DIR or <repo>/target/node/matrix)
#
# Afterwards: DIR/<major>/bin/node for each; prints the paths. Needs curl (or wget), tar and
# sha512sum.
set -euo pipefail
pkg="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$pkg/.." && pwd)"
DIR="${1:-${DLOCK_NODE_DIR:-$repo/target/node/matrix}}"
# shellcheck source=registry.sh
source "$pkg/scripts/registry.sh"
for v in "${NODE_MATRIX[@]}"; do
  dest="$DIR/${v%%.*}"
  install_node "$v" "$dest"
  echo "$dest/bin/node ($("$dest/bin/node" --version))"
done
