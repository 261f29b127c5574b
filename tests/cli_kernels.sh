#!/usr/bin/env bash
# --kernels and EDGELLM_KERNELS on run, bench and serve: a forced set is used (bench names it),
# unknown sets are usage errors naming the sets this CPU runs, and --kv-type q8_0 runs.
set -uo pipefail
model="$SHARED/models/aidreams260K-f32.gguf"
tmp="$TEST_TMP/cli_kernels"
rm -rf "$tmp" && mkdir -p "$tmp"
fail=0
expect() { # expect EXIT_CODE PATTERN_IN_STDERR CMD...
  local want=$1 pattern=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" != "$want" ] || ! grep -q -- "$pattern" "$tmp/err"; then
    echo "FAIL: '$*' exited $rc (want $want), stderr:" >&2
    cat "$tmp/err" >&2
    fail=1
  fi
}
expect 2 "--kernels: unknown kernel set 'bogus'.*scalar" "$EDGELLM" run -m "$model" -p hi -n 1 --kernels bogus
expect 2 "EDGELLM_KERNELS: unknown kernel set 'bogus'" env EDGELLM_KERNELS=bogus "$EDGELLM" run -m "$model" -p hi -n 1
expect 2 "--kernels: unknown kernel set" "$EDGELLM" bench -m "$model" -p 8 -n 2 -r 1 --kernels nope
expect 2 "--kernels: unknown kernel set" "$EDGELLM" serve -m "$model" --port 0 --kernels nope
expect 2 "--kv-type must be f16, f32 or q8_0" "$EDGELLM" run -m "$model" -p hi -n 1 --kv-type q4
# A forced set is the one bench reports; the option wins over the environment.
EDGELLM_KERNELS=bogus "$EDGELLM" bench -m "$model" -p 8 -n 4 -r 1 -t 1 --kernels scalar --json \
  >"$tmp/bench.json" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail=1; }
grep -q '"kernels": "scalar"' "$tmp/bench.json" || { echo "FAIL: bench did not use the scalar set" >&2; fail=1; }
grep -q '"arithmetic": {"scalar"' "$tmp/bench.json" || { echo "FAIL: scalar arithmetic not reported" >&2; cat "$tmp/bench.json" >&2; fail=1; }
# Same greedy text with the Q8_0 cache as with F16 on this short prompt, on the scalar set too.
"$EDGELLM" run -m "$model" -p "I dreamed" -n 16 --temp 0 --kv-type f16 >"$tmp/f16.txt" 2>/dev/null
EDGELLM_KERNELS=scalar "$EDGELLM" run -m "$model" -p "I dreamed" -n 16 --temp 0 --kv-type q8_0 \
  >"$tmp/q8.txt" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail=1; }
cmp -s "$tmp/f16.txt" "$tmp/q8.txt" || { echo "FAIL: q8_0 cache text differs: $(cat "$tmp/q8.txt")" >&2; fail=1; }
[ "$fail" = 0 ] && echo "cli_kernels: ok"
exit "$fail"
