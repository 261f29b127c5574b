#!/bin/bash
# quantize --gptq with too little calibration text: X^T X from fewer tokens than a matrix has
# columns has rank below its width, and GPTQ then pushes rounding errors into directions the
# calibration never saw. Measured on aidreams Q4_0 (held-out KL; plain rounding 0.020): 2 tokens
# 0.77, 64 tokens 0.029, 128 tokens 0.017, 448 tokens 0.015. Such a run must say so; a run with
# enough tokens must not.
set -u
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/attack_gptq"
rm -rf "$tmp" && mkdir -p "$tmp"
src="$SHARED/models/aidreams260K-f32.gguf"
sample_text "$src" 1 4 >"$tmp/calib.txt"
"$EDGELLM" quantize "$src" "$tmp/q.gguf" q4_0 --gptq --calib "$tmp/calib.txt" --ctx 2 --chunks 1 \
  2>"$tmp/err"
rc=$?
[[ $rc -eq 0 ]] && grep -q "warning: --gptq: 2 calibration tokens for matrices 172 columns wide" "$tmp/err"
st=$?
check "2 calibration tokens: exit $rc, a warning ($(grep warning "$tmp/err"))" $st
"$EDGELLM" quantize "$src" "$tmp/q.gguf" q4_0 --gptq --calib "$tmp/calib.txt" --ctx 64 2>"$tmp/err"
rc=$?
[[ $rc -eq 0 ]] && ! grep -q "warning: --gptq" "$tmp/err"
st=$?
check "the whole text (7 chunks of 64): exit $rc, no warning" $st
# A NaN weight in a layer matrix: plain rounding names the tensor and row; --gptq blamed the
# activations while building token_embd.weight's statistics from the layer matrices.
"$BUILD_DIR/tests/gguf_edit" "$src" "$tmp/nan.gguf" --poke-f32 blk.1.attn_k.weight 5 nan
for q in q4_0 q4_k_m; do
  rm -f "$tmp/q.gguf"
  "$EDGELLM" quantize "$tmp/nan.gguf" "$tmp/q.gguf" $q --gptq --calib "$tmp/calib.txt" --ctx 64 \
    2>"$tmp/err"
  rc=$?
  [[ $rc -eq 1 ]] && grep -q "tensor 'blk.1.attn_k.weight' row 0 holds NaN or an infinite value" "$tmp/err" &&
    [[ ! -e "$tmp/q.gguf" ]]
  st=$?
  check "a NaN weight, --gptq $q: exit $rc, $(tail -1 "$tmp/err")" $st
done
exit $fail
