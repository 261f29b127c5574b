#!/usr/bin/env bash
# The kernel tests (tests/test_quant*.c, test_attention.c) built with Emscripten (the threaded web build, so the
# thread-pool checks run too) and run in Node: the wasm-simd set against the scalar kernels, bit
# for bit, in the same wasm the browser runs.
set -uo pipefail
tmp="$TEST_TMP/web_kernels"
rm -rf "$tmp" && mkdir -p "$tmp"
web="$BUILD_DIR/web"
tests="test_quant test_quant_kquants test_quant_legacy test_quant_kquants_low test_attention"
# shellcheck disable=SC2086
if ! { make -C "$SOURCE_DIR" web WEB_BUILD_DIR="$web" &&
       NODE_PATH=/usr/share/nodejs cmake --build "$web/mt" -j 2 --target $tests; } >"$tmp/make.log" 2>&1; then
  tail -30 "$tmp/make.log"
  echo "FAIL: building the kernel tests with Emscripten" >&2
  exit 1
fi
fail=0
for t in $tests; do
  # Node's fetch cannot read the .wasm from a path; without it Emscripten reads the file.
  if node --no-experimental-fetch "$web/mt/tests/$t.js" >"$tmp/$t.log" 2>&1 &&
     ! grep -q "no SIMD kernel set" "$tmp/$t.log"; then
    echo "ok: $t ($(tail -1 "$tmp/$t.log"))"
  else
    tail -20 "$tmp/$t.log"
    echo "FAIL: $t under Node" >&2
    fail=1
  fi
done
grep -q "kernel sets on this CPU: wasm-simd scalar" "$tmp/test_quant.log" ||
  { echo "FAIL: the wasm-simd set was not compared with the scalar set" >&2; fail=1; }
for ty in Q2_K Q3_K IQ4_XS; do
  grep -q "^$ty decode kernel: wasm-simd" "$tmp/test_quant_kquants_low.log" ||
    { echo "FAIL: $ty has no wasm-simd decode kernel (the browser runs it scalar)" >&2; fail=1; }
done
grep -q "attention copies on this CPU: portable, wasm-simd" "$tmp/test_attention.log" ||
  { echo "FAIL: the wasm-simd attention head was not compared with the portable one" >&2; fail=1; }
grep -q "grouped attention cases (wasm-simd)" "$tmp/test_attention.log" ||
  { echo "FAIL: the wasm-simd grouped attention heads were not compared with the portable one" >&2; fail=1; }
exit $fail
