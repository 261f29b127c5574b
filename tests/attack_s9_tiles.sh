#!/bin/bash
# A whole IQ4_XS model with blocks at the ends of the format's scale range (one weight of 1000 in
# a gate super-block, -3e4 in attn_q, 1e-30 in ffn_down) through every kernel set this CPU runs, at
# prompt windows of 2, 3, 5, 17 and 129 tokens (the sub-4-token tiles, an odd tail, the 128-token step
# and one past it), against --kernels scalar: IQ4_XS tiles and rows are documented bit-identical to
# scalar, the float parts differ by the exp polynomial and reassociation (KL bounds below). eval used to
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

sets=$(kernel_sets "$tmp/m.gguf")
[[ -n "$sets" ]]
check "kernel sets of this CPU: $sets" $?
"$EDGELLM" quantize "$tmp/x.gguf" "$tmp/plain.gguf" iq4_xs >/dev/null 2>&1
for m in plain m; do
  # Measured (idle CPU, AVX-512 machine): plain 5e-6..2.4e-5, extreme blocks up to 1.3e-3 (the
  # -3e4 attn_q weight makes the attention scores large, so the exp polynomial's ulp shows).
  bound=$([[ $m == plain ]] && echo 1e-4 || echo 5e-3)
  for ctx in 2 3 5 17 129; do
    "$EDGELLM" eval -m "$tmp/$m.gguf" -f "$tmp/held.txt" --ctx $ctx --kernels scalar -t 1 \
      --save-logits "$tmp/s.bin" >/dev/null 2>&1
    first=
    for set in $sets; do
      [[ $set == scalar ]] && continue
      out=$("$EDGELLM" eval -m "$tmp/$m.gguf" -f "$tmp/held.txt" --ctx $ctx --kernels "$set" -t 2 \
        --kl-base "$tmp/s.bin" --save-logits "$tmp/$set.bin" 2>&1)
      k=$(kl_of "$out")
      [[ -n "$k" ]] && lt "$k" $bound
      st=$?
      check "IQ4_XS $m, windows of $ctx, $set against scalar: KL ${k:-none: $(tail -1 <<<"$out")} < $bound" $st
      # The x86 sets share the float parts (attention, norms) and their IQ4_XS rows and tiles are
      # each bit-identical to scalar: their logits must be the same bytes, which catches a tile
      # that drifts by an ulp where the KL against scalar cannot.
      if [[ $set == avx* ]]; then
        if [[ -z "$first" ]]; then
          first=$set
        else
          cmp -s "$tmp/$first.bin" "$tmp/$set.bin"
          check "IQ4_XS $m, windows of $ctx: $set logits identical to $first's" $?
        fi
      fi
    done
  done
done
exit $fail
