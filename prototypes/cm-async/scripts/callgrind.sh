#!/usr/bin/env bash
# Instructions per call: (Ir(HI) - Ir(LO)) / (HI - LO) under callgrind, per mode.
# Usage: scripts/callgrind.sh [MODE...]   (default: all modes)
set -euo pipefail
H=${CM_HOST:-/work/cm-async-target/release/cm-host}
OUT=${CG_DIR:-/tmp/cm-async-cg}
mkdir -p "$OUT"
ir() { # mode n [k]
  local f="$OUT/$1-$2-${3:-0}.out"
  valgrind --tool=callgrind --callgrind-out-file="$f" "$H" "$1" "$2" 1 ${3:-} >/dev/null 2>&1
  grep -E '^(summary|totals):' "$f" | head -1 | awk '{print $2}'
}
measure() { # mode lo hi [k]
  local lo hi
  lo=$(ir "$1" "$2" "${4:-}"); hi=$(ir "$1" "$3" "${4:-}")
  printf '%-14s %-4s Ir(%s)=%s Ir(%s)=%s  instructions/call=%s\n' "$1" "${4:-}" "$2" "$lo" "$3" "$hi" \
    "$(( (hi - lo) / ($3 - $2) ))"
}
modes=("$@"); [ ${#modes[@]} -eq 0 ] && modes=(a a-cs b b-loop b-call-async a-conc b-conc1 b-conc8 b-conc32)
for m in "${modes[@]}"; do
  case $m in
    b-conc1) measure b-conc 2000 12000 1 ;;
    b-conc8) measure b-conc 2000 12000 8 ;;
    b-conc32) measure b-conc 2048 12288 32 ;;
    *) measure "$m" 2000 12000 ;;
  esac
done
