# Sourced by scripts/test and scripts/demo: installs what a fresh machine lacks.
# - the wasm32-wasip2 Rust target (the lock logic is compiled to a WebAssembly component);
# - redis-server and redis-cli (tests and the demo start their own servers on loopback; the
#   Cluster tests join theirs with `redis-cli --cluster create`, and run Sentinels with
#   `redis-server --sentinel`). Debian's redis-server package brings redis-cli along.

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: installing the wasm32-wasip2 Rust target" >&2
  rustup target add wasm32-wasip2
fi

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
# need COMMAND PACKAGE: installs the Debian PACKAGE when COMMAND is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "setup: installing $2 ($1)" >&2
  $sudo apt-get install -y "$2" >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null; }
  command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is still missing" >&2; exit 1; }
}
need redis-server redis-server
need redis-cli redis-tools
