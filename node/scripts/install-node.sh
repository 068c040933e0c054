#!/usr/bin/env bash
# Installs the Node.js versions this package supports, for the test matrix: the official
# binaries from nodejs.org, each checked against the release's SHASUMS256.txt before it is
# unpacked, into the repository's target/ (nothing outside it; the system's node and npm are
# neither used nor changed).
#
#   scripts/install-node.sh [DIR]        (default: $DLOCK_NODE_DIR or <repo>/target/node/matrix)
#
# Afterwards: DIR/22/bin/node, DIR/24/bin/node, DIR/26/bin/node; prints the paths.
# Versions are pinned here; change them in one place. Needs curl (or wget), tar (xz) and
# sha256sum.
set -euo pipefail
pkg="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$pkg/.." && pwd)"
DIR="${1:-${DLOCK_NODE_DIR:-$repo/target/node/matrix}}"
DIST="${DLOCK_NODE_DIST:-https://nodejs.org/dist}"
declare -A VERSIONS=([22]=22.23.3 [24]=24.21.0 [26]=26.10.0)
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "install-node: no Node binaries for $(uname -m)" >&2; exit 1 ;;
esac
fetch() { # URL FILE
  if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$2" "$1"; else wget -q -O "$2" "$1"; fi
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for major in 22 24 26; do
  v="${VERSIONS[$major]}"
  bin="$DIR/$major/bin/node"
  if [ -x "$bin" ] && [ "$("$bin" --version)" = "v$v" ]; then
    echo "$bin (v$v, already there)"
    continue
  fi
  name="node-v$v-linux-$arch.tar.xz"
  fetch "$DIST/v$v/SHASUMS256.txt" "$tmp/SHASUMS256.txt"
  fetch "$DIST/v$v/$name" "$tmp/$name"
  line="$(grep -E "^[0-9a-f]{64}  $name\$" "$tmp/SHASUMS256.txt" || true)"
  [ -n "$line" ] || { echo "install-node: $name is not in SHASUMS256.txt of v$v" >&2; exit 1; }
  (cd "$tmp" && echo "$line" | sha256sum -c --quiet -) || { echo "install-node: checksum mismatch for $name" >&2; exit 1; }
  rm -rf "$DIR/$major.partial" && mkdir -p "$DIR/$major.partial"
  tar -xJf "$tmp/$name" -C "$DIR/$major.partial" --strip-components=1
  rm -rf "$DIR/$major" && mv "$DIR/$major.partial" "$DIR/$major"
  rm -f "$tmp/$name"
  echo "$bin ($("$bin" --version))"
done
