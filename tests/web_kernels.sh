#!/usr/bin/env bash
# The kernel tests (tests/test_quant*.c, test_attention.c) and the thread pool's
# (test_threadpool.c) built with Emscripten (the threaded web build, so the thread-pool checks run
# too) and run in Node: the wasm-simd set against the scalar kernels, bit for bit, in the same
# wasm the browser runs. Then the same tests patched as the relaxed build is
# (web/relaxed_patch.py) and run with relaxed SIMD: the wasm-relaxed set against the scalar one,
# and the unpatched modules must not have offered it.
set -uo pipefail
tmp="$TEST_TMP/web_kernels"
rm -rf "$tmp" && mkdir -p "$tmp"
web="$BUILD_DIR/web"
tests="test_quant test_quant_kquants test_quant_legacy test_quant_kquants_low test_attention"
# shellcheck disable=SC2086
if ! { make -C "$SOURCE_DIR" web WEB_BUILD_DIR="$web" &&
       NODE_PATH=/usr/share/nodejs cmake --build "$web/mt" -j 2 --target $tests test_threadpool; } \
     >"$tmp/make.log" 2>&1; then
  tail -30 "$tmp/make.log"
  echo "FAIL: building the kernel tests with Emscripten" >&2
  exit 1
fi
fail=0
# run_test JS LOG LABEL [NODE_OPTION...]: one test program under Node.
run_test() {
  local js=$1 log=$2 label=$3
  shift 3
  # Node's fetch cannot read the .wasm from a path; without it Emscripten reads the file.
  if node "$@" --no-experimental-fetch "$js" >"$log" 2>&1 && ! grep -q "no SIMD kernel set" "$log"; then
    echo "ok: $label ($(tail -1 "$log"))"
  else
    tail -20 "$log"
    echo "FAIL: $label under Node" >&2
    fail=1
  fi
}
for t in $tests; do
  run_test "$web/mt/tests/$t.js" "$tmp/$t.log" "$t"
done
# The pool's wasm-only waits (the dispatcher's futex) and the shared jobs that decode runs.
run_test "$web/mt/tests/test_threadpool.js" "$tmp/test_threadpool.log" "test_threadpool"
grep -q "kernel sets on this CPU: wasm-simd scalar" "$tmp/test_quant.log" ||
  { echo "FAIL: the wasm-simd set was not compared with the scalar set" >&2; fail=1; }
grep -q "SiLU kernels compared with the scalar one: wasm-simd scalar" "$tmp/test_quant.log" ||
  { echo "FAIL: the wasm-simd SiLU kernel was not compared with the scalar one" >&2; fail=1; }
for ty in Q2_K Q3_K IQ4_XS; do
  grep -q "^$ty decode kernel: wasm-simd" "$tmp/test_quant_kquants_low.log" ||
    { echo "FAIL: $ty has no wasm-simd decode kernel (the browser runs it scalar)" >&2; fail=1; }
done
grep -q "attention copies on this CPU: portable, wasm-simd" "$tmp/test_attention.log" ||
  { echo "FAIL: the wasm-simd attention head was not compared with the portable one" >&2; fail=1; }
grep -q "grouped attention cases (wasm-simd)" "$tmp/test_attention.log" ||
  { echo "FAIL: the wasm-simd grouped attention heads were not compared with the portable one" >&2; fail=1; }
for t in $tests; do
  grep -q "wasm-relaxed" "$tmp/$t.log" &&
    { echo "FAIL: $t offered the wasm-relaxed set in a module that was not patched" >&2; fail=1; }
done
# The patched tests next to copies of their JavaScript (which loads <name>.wasm beside itself);
# test_attention has no quantized kernels to patch.
mkdir -p "$tmp/relaxed"
for t in test_quant test_quant_kquants test_quant_legacy test_quant_kquants_low; do
  cp "$web/mt/tests/$t.js" "$web/mt/tests/$t.worker.js" "$tmp/relaxed/" 2>/dev/null
  if ! python3 "$SOURCE_DIR/web/relaxed_patch.py" wasm-dis "$web/mt/tests/$t.wasm" \
       "$tmp/relaxed/$t.wasm" >>"$tmp/patch.log" 2>&1; then
    cat "$tmp/patch.log"
    echo "FAIL: patching $t.wasm" >&2
    fail=1
    continue
  fi
  run_test "$tmp/relaxed/$t.js" "$tmp/relaxed-$t.log" "$t patched for relaxed SIMD" \
    --experimental-wasm-relaxed-simd
done
grep -q "kernel sets on this CPU: wasm-relaxed wasm-simd scalar" "$tmp/relaxed-test_quant.log" ||
  { echo "FAIL: the wasm-relaxed set was not compared with the scalar set" >&2; fail=1; }
grep -q "SiLU kernels compared with the scalar one: wasm-relaxed wasm-simd scalar" \
  "$tmp/relaxed-test_quant.log" ||
  { echo "FAIL: the wasm-relaxed SiLU kernel was not compared with the scalar one" >&2; fail=1; }
for ty in Q4_0 Q5_0 Q8_0 Q4_K Q5_K Q6_K; do
  grep -q "^relaxed $ty decode kernel: wasm-relaxed" "$tmp/relaxed-test_quant.log" ||
    { echo "FAIL: $ty has no wasm-relaxed decode kernel" >&2; fail=1; }
  tile=wasm-relaxed
  case $ty in Q5_0 | Q8_0) tile=wasm-simd ;; esac # no relaxed Q5_0 or Q8_0 tile yet
  grep -q "^relaxed $ty tile: $tile" "$tmp/relaxed-test_quant.log" ||
    { echo "FAIL: $ty's tile is not the $tile one" >&2; fail=1; }
done
# The relaxed tiles were compared with the scalar kernels: in both sets.
grep -q "^gemm tiles checked in 2 kernel sets" "$tmp/relaxed-test_quant.log" ||
  { echo "FAIL: the Q4_0 tiles were not checked in both wasm sets" >&2; fail=1; }
grep -q "^K-quant tiles checked for 12 (set, type) pairs" "$tmp/relaxed-test_quant_kquants.log" ||
  { echo "FAIL: the K-quant tiles were not checked in both wasm sets" >&2; fail=1; }
exit $fail
