#!/usr/bin/env bash
# Node for the dlock Node package, on a fresh machine: picks a Node >= 22 or installs one from
# the npm registry, installs the package's dependencies (`npm ci`, with npm from the registry
# too) and builds its bindings (`npm run build`: jco over host/bundle/).
#
#   node/scripts/setup-node.sh         prints the node binary to use on stdout (and nothing else)
#
#   export DLOCK_NODE="$(node/scripts/setup-node.sh)"      # what scripts/setup.sh does with it
#
# Which Node: $DLOCK_NODE if it is Node >= 22, else `node` on PATH if it is >= 22, else
# registry.sh's NODE_VERSION installed into
# ${DLOCK_NODE_HOME:-<repo>/target/node}/node-<version>-<arch>. Versions and their SHA-512s are
# pinned in registry.sh. The machine's own node and npm (Debian's 18 or 20, or none) are never
# used or changed. Needs curl (or wget), tar and sha512sum; about 55 MB downloaded once.
set -euo pipefail

pkg="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$pkg/.." && pwd)"
home="${DLOCK_NODE_HOME:-$repo/target/node}"
say() { echo "setup-node: $*" >&2; }
# shellcheck source=registry.sh
source "$pkg/scripts/registry.sh"

major_of() { "$1" --version 2>/dev/null | sed -n 's/^v\([0-9][0-9]*\)\..*/\1/p'; }
usable() { [ -n "$1" ] && [ -x "$1" ] && [ "$(major_of "$1")" -ge 22 ] 2>/dev/null; }

node=""
if usable "${DLOCK_NODE:-}"; then
  node="$DLOCK_NODE"
elif usable "$(command -v node || true)"; then
  node="$(command -v node)"
else
  arch="$(node_arch)"
  dir="$home/node-$NODE_VERSION-$arch"
  node="$dir/bin/node"
  install_node "$NODE_VERSION" "$dir"
fi

npm_dir="$home/npm-$NPM_VERSION"
if ! [ -f "$npm_dir/bin/npm-cli.js" ]; then
  say "installing npm $NPM_VERSION from the npm registry into $npm_dir"
  mkdir -p "$home"
  registry_unpack npm "$NPM_VERSION" "$NPM_SHA512" "$npm_dir"
fi

# npm's lifecycle scripts run `node` from PATH: this one.
export PATH="$(dirname "$node"):$PATH"
say "Node $("$node" --version) at $node; npm ci and build in $pkg"
(cd "$pkg" && "$node" "$npm_dir/bin/npm-cli.js" ci --no-audit --no-fund --loglevel=error >&2)
(cd "$pkg" && "$node" scripts/build.mjs >&2)
echo "$node"
