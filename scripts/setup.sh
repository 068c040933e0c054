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
if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server" >&2
  $sudo apt-get install -y redis-server >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y redis-server >/dev/null; }
  command -v redis-server >/dev/null 2>&1 || { echo "setup: redis-server is still missing" >&2; exit 1; }
fi
if ! command -v redis-cli >/dev/null 2>&1; then
  echo "setup: installing redis-tools (redis-cli)" >&2
  $sudo apt-get install -y redis-tools >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y redis-tools >/dev/null; }
  command -v redis-cli >/dev/null 2>&1 || { echo "setup: redis-cli is still missing" >&2; exit 1; }
fi
