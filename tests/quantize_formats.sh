#!/bin/bash
# edgellm quantize to the 32-value formats Q4_1, Q5_0, Q5_1 and IQ4_NL: per-tensor types (the
# output head at Q8_0, the token embedding at the target type, the 172-value ffn_down rows at F16,
# each fallback named on stderr), general.file_type, the model loads and generates, and its
# logits stay close to the reference runtime's F32 logits (KL divergence).
#
# Bounds are about three times the KL measured when the test was written (Q4_1 0.011, Q5_0 0.0038,
# Q5_1 0.0029, IQ4_NL 0.014; Q4_0 0.023 for comparison). The ordering follows from the formats:
# five bits beat four, and a minimum (Q4_1) or non-linear levels (IQ4_NL) beat plain Q4_0.
set -u
tmp="$TEST_TMP/quantize_formats"
rm -rf "$tmp" && mkdir -p "$tmp"
fail=0
source "$(dirname "$0")/lib.sh"

src="$SHARED/models/aidreams260K-f32.gguf"
ids="$SHARED/testdata/aidreams/logits-ids.txt"
declare -A ftype=([q4_0]=2 [q4_1]=3 [q5_0]=8 [q5_1]=9 [iq4_nl]=25)
declare -A bound=([q4_0]=0.05 [q4_1]=0.035 [q5_0]=0.012 [q5_1]=0.01 [iq4_nl]=0.04)
declare -A kl
for q in q4_1 q5_0 q5_1 iq4_nl q4_0; do
  Q=${q^^}
  out="$tmp/aid-$q.gguf"
  "$EDGELLM" quantize "$src" "$out" $q 2>"$tmp/err"
  check "quantize to $q" $?
  [[ $(grep -c "ffn_down.weight: rows do not split into $Q blocks; stored as F16" "$tmp/err") -eq 4 &&
     $(grep -c "rows do not split" "$tmp/err") -eq 4 ]]
  check "$q names the four ffn_down fallbacks on stderr" $?
  info=$("$EDGELLM" info "$out")
  grep -qE "blk.0.attn_q.weight +$Q " <<<"$info" && grep -qE "blk.3.ffn_up.weight +$Q " <<<"$info" &&
    grep -qE "token_embd.weight +$Q " <<<"$info" && grep -qE "blk.0.ffn_down.weight +F16 " <<<"$info" &&
    grep -qE "blk.0.attn_norm.weight +F32 " <<<"$info" && grep -qE "output.weight +Q8_0 " <<<"$info" &&
    grep -qE "general.file_type +${ftype[$q]}\$" <<<"$info"
  check "$q per-tensor types and general.file_type ${ftype[$q]}" $?
  text=$("$EDGELLM" run -m "$out" -p "I dreamed" -n 16 --temp 0 -t 2 2>/dev/null)
  [[ $? -eq 0 && -n "$text" ]]
  check "$q model loads and generates" $?
  ev=$("$EDGELLM" eval -m "$out" --ids "$ids" --kl-base "$SHARED/testdata/aidreams/logits-f32.bin")
  check "$q eval runs" $?
  kl[$q]=$(kl_of "$ev")
  echo "     $q: $(grep -E 'KL|top-1' <<<"$ev" | tr '\n' ' ')"
  lt "${kl[$q]}" "${bound[$q]}"
  check "$q KL ${kl[$q]} < ${bound[$q]}" $?
done
lt "${kl[q5_0]}" "${kl[q4_1]}" && lt "${kl[q5_1]}" "${kl[q4_1]}" && lt "${kl[q5_0]}" "${kl[iq4_nl]}" &&
  lt "${kl[q4_1]}" "${kl[q4_0]}" && lt "${kl[iq4_nl]}" "${kl[q4_0]}"
check "KL ordering: Q5_0 ${kl[q5_0]}, Q5_1 ${kl[q5_1]} < Q4_1 ${kl[q4_1]}, IQ4_NL ${kl[iq4_nl]} < Q4_0 ${kl[q4_0]}" $?

# A tied head (no output.weight): the token embedding is the head and stays at Q8_0.
"$EDGELLM" synth --dims 64,1,4,2,64 --vocab "$src" --type f32 --tied -o "$tmp/tied.gguf" 2>/dev/null
check "synthesize a tied-head model" $?
for q in q4_1 q5_0 q5_1 iq4_nl; do
  "$EDGELLM" quantize "$tmp/tied.gguf" "$tmp/tied-$q.gguf" $q 2>/dev/null
  info=$("$EDGELLM" info "$tmp/tied-$q.gguf")
  grep -qE "token_embd.weight +Q8_0 " <<<"$info" && grep -qE "blk.0.attn_q.weight +${q^^} " <<<"$info" &&
    ! grep -qE "^ *output\.weight " <<<"$info" &&
    "$EDGELLM" run -m "$tmp/tied-$q.gguf" -p "I dreamed" -n 4 --temp 0 >/dev/null 2>&1
  check "tied head under $q stays Q8_0 and the model runs" $?
done

rm -rf "$tmp"
exit $fail
