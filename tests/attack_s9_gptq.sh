#!/bin/bash
# quantize --gptq at the per-row SwiGLU Hessians' bounds (session 9): aidreams' FFN inputs are 64
# wide, so 15 chunks of 64 tokens (15 a column) stay on the shared H and 16 (16 a column, the
# least) take the per-row Hessians (1.6 s of CPU against 0.75 s on the idle-ish machine); with
# --act-order they are skipped. Each run must succeed and beat plain rounding's held-out KL; a NaN
# in gate, up or down must be refused naming the tensor, with no output, on both sides of the bound.
set -u
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/attack_s9_gptq"
rm -rf "$tmp" && mkdir -p "$tmp"
src="$SHARED/models/aidreams260K-f32.gguf"
sample_text "$src" 1 14 >"$tmp/calib.txt"
sample_text "$src" 101 103 >"$tmp/held.txt"
"$EDGELLM" eval -m "$src" -f "$tmp/held.txt" --ctx 64 --save-logits "$tmp/base.bin" >/dev/null
kl() { kl_of "$("$EDGELLM" eval -m "$1" -f "$tmp/held.txt" --ctx 64 --kl-base "$tmp/base.bin" 2>&1)"; }
"$EDGELLM" quantize "$src" "$tmp/plain.gguf" iq4_nl >/dev/null 2>&1
plain=$(kl "$tmp/plain.gguf")
echo "     IQ4_NL plain rounding: KL $plain"
for c in 15 16; do
  for ao in "" --act-order; do
    rm -f "$tmp/g.gguf"
    "$EDGELLM" quantize "$src" "$tmp/g.gguf" iq4_nl --gptq --calib "$tmp/calib.txt" --ctx 64 \
      --chunks $c $ao >/dev/null 2>"$tmp/err"
    rc=$?
    k=$(kl "$tmp/g.gguf")
    [[ $rc -eq 0 && -n "$k" ]] && lt "$k" "$plain"
    st=$?
    check "--gptq, $c chunks of 64 $ao: exit $rc, KL ${k:-none} below plain $plain" $st
  done
done
for m in ffn_gate ffn_up ffn_down; do
  "$BUILD_DIR/tests/gguf_edit" "$src" "$tmp/nan.gguf" --poke-f32 "blk.1.$m.weight" 5 nan
  for c in 15 16; do
    rm -f "$tmp/g.gguf"
    "$EDGELLM" quantize "$tmp/nan.gguf" "$tmp/g.gguf" q4_0 --gptq --calib "$tmp/calib.txt" \
      --ctx 64 --chunks $c >/dev/null 2>"$tmp/err"
    rc=$?
    [[ $rc -eq 1 ]] && grep -q "tensor 'blk.1.$m.weight' row 0 holds NaN" "$tmp/err" && [[ ! -e "$tmp/g.gguf" ]]
    st=$?
    check "a NaN in $m, $c chunks: exit $rc, $(tail -1 "$tmp/err")" $st
  done
done
exit $fail
