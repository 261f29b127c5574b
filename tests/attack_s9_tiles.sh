#!/bin/bash
# A whole IQ4_XS model with blocks at the ends of the format's scale range (one weight of 1000 in
# a gate super-block, -3e4 in attn_q, 1e-30 in ffn_down) through every kernel set this CPU runs, at
# prompt windows of 2, 3, 5, 17 and 129 tokens (the sub-4-token tiles, an odd tail, the 128-token step
# and one past it), against --kernels scalar: IQ4_XS tiles and rows are documented bit-identical to
# scalar, the float parts of the model differ by reassociation only (KL below 1e-6). eval used to
# ignore EDGELLM_KERNELS (and had no --kernels), so such a comparison silently compared one set
# with itself.
set -u
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/attack_s9_tiles"
rm -rf "$tmp" && mkdir -p "$tmp"
src="$SHARED/models/aidreams260K-f32.gguf"
sample_text "$src" 101 102 >"$tmp/held.txt"
"$EDGELLM" synth --dims 256,2,4,2,768 --vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" \
  -o "$tmp/x.gguf" --type f32 --ctx 256 2>/dev/null
"$BUILD_DIR/tests/gguf_edit" "$tmp/x.gguf" "$tmp/xe.gguf" --poke-f32 blk.0.ffn_gate.weight 0 1000 \
  --poke-f32 blk.0.attn_q.weight 300 -3e4 --poke-f32 blk.1.ffn_down.weight 5 1e-30
"$EDGELLM" quantize "$tmp/xe.gguf" "$tmp/m.gguf" iq4_xs >/dev/null 2>&1
check "an IQ4_XS model with extreme blocks" $?

EDGELLM_KERNELS=bogus "$EDGELLM" eval -m "$tmp/m.gguf" -f "$tmp/held.txt" --ctx 7 >/dev/null 2>"$tmp/err"
rc=$?
[[ $rc -eq 2 ]] && grep -q "EDGELLM_KERNELS: unknown kernel set 'bogus'" "$tmp/err"
st=$?
check "eval with EDGELLM_KERNELS=bogus: exit $rc, $(head -1 "$tmp/err")" $st
"$EDGELLM" eval -m "$tmp/m.gguf" -f "$tmp/held.txt" --ctx 7 --kernels bogus >/dev/null 2>"$tmp/err"
rc=$?
[[ $rc -eq 2 ]] && grep -q -- "--kernels: unknown kernel set 'bogus'" "$tmp/err"
st=$?
check "eval --kernels bogus: exit $rc, $(head -1 "$tmp/err")" $st

sets=$(EDGELLM_KERNELS=bogus "$EDGELLM" run -m "$tmp/m.gguf" -p hi -n 1 2>&1 | sed -n 's/.*this CPU runs: //p' | tr -d ,)
[[ -n "$sets" ]]
check "kernel sets of this CPU: $sets" $?
for ctx in 2 3 5 17 129; do
  "$EDGELLM" eval -m "$tmp/m.gguf" -f "$tmp/held.txt" --ctx $ctx --kernels scalar -t 1 \
    --save-logits "$tmp/s.bin" >/dev/null 2>&1
  for set in $sets; do
    [[ $set == scalar ]] && continue
    out=$("$EDGELLM" eval -m "$tmp/m.gguf" -f "$tmp/held.txt" --ctx $ctx --kernels "$set" -t 2 \
      --kl-base "$tmp/s.bin" 2>&1)
    k=$(kl_of "$out")
    [[ -n "$k" ]] && lt "$k" 1e-6
    st=$?
    check "IQ4_XS, windows of $ctx, $set against scalar: KL ${k:-none: $(tail -1 <<<"$out")}" $st
  done
done
exit $fail
