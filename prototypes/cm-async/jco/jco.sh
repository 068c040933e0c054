#!/usr/bin/env bash
# Transpile worlds a and b with jco 1.13.0 and call `acquire` from Node. Output in /tmp/jco-*.
set -uo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
NODE=${NODE:-${DLOCK_NODE:-node}}
JCO=${JCO:-$root/node/node_modules/@bytecodealliance/jco/src/jco.js}
W=${CM_WASM_DIR:-/work/cm-async-target/wasm32-wasip2/release}
HERE=$(cd "$(dirname "$0")" && pwd)
# jco 1.13.0 names a root-level import `eval` as `import eval from '...'`, which is a
# SyntaxError in an ES module ("Unexpected eval or arguments in strict mode"); rename it.
fix_eval() { sed -i -e 's/^import eval from/import eval_ from/' -e 's/ eval(result1/ eval_(result1/' "$1"; }
transpile() { # wasm outdir [jco options...]
  local wasm=$1 out=$2; shift 2
  rm -rf "$out"
  "$NODE" "$JCO" transpile "$wasm" -o "$out" -q "$@"
}
echo "== A, sync mode, sync JS eval returning 1n"
transpile "$W/cm_guest_a.wasm" /tmp/jco-a -M eval="$HERE/eval-sync.mjs" && fix_eval /tmp/jco-a/cm_guest_a.js &&
  "$NODE" "$HERE/run.mjs" /tmp/jco-a/cm_guest_a.js 200000 2>&1 | tail -4
echo "== A, sync mode, async JS eval (expected to fail: a Promise is not an s64)"
transpile "$W/cm_guest_a.wasm" /tmp/jco-a-ae -M eval="$HERE/eval-async.mjs" && fix_eval /tmp/jco-a-ae/cm_guest_a.js &&
  "$NODE" "$HERE/run.mjs" /tmp/jco-a-ae/cm_guest_a.js 2>&1 | grep -v "^    at " | tail -4
# jco keys a root-level import as "<import name>#<function>", so `eval#eval` (plain `eval` is
# silently ignored: the import stays sync).
echo "== A, --async-mode jspi (eval and acquire async), async JS eval"
transpile "$W/cm_guest_a.wasm" /tmp/jco-a-jspi --async-mode jspi --async-imports "eval#eval" --async-exports acquire \
    -M eval="$HERE/eval-async.mjs" && fix_eval /tmp/jco-a-jspi/cm_guest_a.js &&
  "$NODE" "$HERE/run.mjs" /tmp/jco-a-jspi/cm_guest_a.js 200000 2>&1 | grep -v "^    at " | tail -4
echo "== B (async func), sync mode"
transpile "$W/cm_guest_b.wasm" /tmp/jco-b -M eval="$HERE/eval-async.mjs" 2>&1 | grep -v "^    at "
echo "== B (async func), --async-mode jspi"
transpile "$W/cm_guest_b.wasm" /tmp/jco-b-jspi --async-mode jspi --async-imports "eval#eval" --async-exports acquire \
    -M eval="$HERE/eval-async.mjs" 2>&1 | grep -v "^    at "
echo "== b-abi (plain func types, async canonical ABI), sync mode"
transpile "$W/cm_guest_b_abi.wasm" /tmp/jco-babi -M eval="$HERE/eval-async.mjs" 2>&1 | grep -v "^    at "
exit 0
