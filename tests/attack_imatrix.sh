#!/bin/bash
# quantize --imatrix against hostile importance files: other runtimes' older .dat format, files
# without the W.in_sum statistics or the model keys, NaN, infinite, negative and huge sums, wrong
# counts, a missing count. Every file either quantizes to a model that computes (KL on held-out
# text within 2x of the good file's) or is refused with exit 1, one line naming the file, the
# tensor where there is one and what to do, and no output file.
set -u
source "$(dirname "$0")/lib.sh"
aidreams_setup attack_imatrix 4 3 64
"$EDGELLM" imatrix -m "$src" -f "$tmp/calib.txt" -o "$tmp/im.gguf" --ctx 64 2>/dev/null
check "imatrix of the aidreams model" $?
"$EDGELLM" quantize "$src" "$tmp/good.gguf" q4_0 --imatrix "$tmp/im.gguf" 2>/dev/null
good=$(kl "$tmp/good.gguf")
echo "     Q4_0 with the good file: KL $good"

# accepted NAME IMATRIX: quantizes (Q4_0, IQ4_NL, Q4_K_M) to models whose KL stays below 2x the
# good file's Q4_0 KL.
accepted() {
  local q k
  for q in q4_0 iq4_nl q4_k_m; do
    rm -f "$tmp/out.gguf"
    "$EDGELLM" quantize "$src" "$tmp/out.gguf" "$q" --imatrix "$2" 2>"$tmp/err"
    check "$1 ($q): quantized" $?
    k=$(kl "$tmp/out.gguf")
    [[ -n "$k" ]] && below "$k" "$good" 2
    local st=$? # before the message's command substitution resets $?
    check "$1 ($q): KL ${k:-(none: $("$EDGELLM" eval -m "$tmp/out.gguf" -f "$tmp/held.txt" --ctx 64 2>&1 | tail -1))} below 2x $good" $st
  done
}
# refused NAME IMATRIX PATTERN: exit 1, one line matching PATTERN, no output file.
refused() {
  rm -f "$tmp/out.gguf"
  "$EDGELLM" quantize "$src" "$tmp/out.gguf" q4_0 --imatrix "$2" 2>"$tmp/err"
  local rc=$?
  [[ $rc -eq 1 ]] && grep -Eq "$3" "$tmp/err" && [[ $(wc -l <"$tmp/err") -eq 1 ]] && [[ ! -e "$tmp/out.gguf" ]]
  local st=$?
  check "$1: exit $rc, '$(head -c 300 "$tmp/err")'" $st
}
poke() { # poke OUT TENSOR INDEX VALUE...: the good file with values changed
  local out=$1
  shift
  local args=()
  while (($# >= 3)); do args+=(--poke-f32 "$1" "$2" "$3"); shift 3; done
  "$edit" "$tmp/im.gguf" "$tmp/$out" "${args[@]}"
}
q=blk.0.attn_q.weight

# --- what holds ---
drops=()
for name in $(for l in 0 1 2 3; do for m in attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down; do
  echo "blk.$l.$m.weight"; done; done) output.weight; do drops+=(--drop "$name.in_sum"); done
"$edit" "$tmp/im.gguf" "$tmp/nosums.gguf" "${drops[@]}" --del imatrix.model.architecture \
  --del imatrix.model.n_layer --del imatrix.model.n_embd --del imatrix.model.n_vocab
accepted "no W.in_sum tensors and no model keys (an older file)" "$tmp/nosums.gguf"
poke huge.gguf "$q.in_sum2" 0 3e38 "$q.in_sum" 0 1.5e19
accepted "a huge but consistent column" "$tmp/huge.gguf"
poke bigcount.gguf "$q.counts" 0 3e38
accepted "a count of 3e38 (mean squares near zero)" "$tmp/bigcount.gguf"
poke nan2.gguf "$q.in_sum2" 3 nan
refused "a NaN sum of squares" "$tmp/nan2.gguf" "'$q' column 3 is nan; sums of squares must be finite and non-negative"
poke neg2.gguf "$q.in_sum2" 3 -1
refused "a negative sum of squares" "$tmp/neg2.gguf" "'$q' column 3 is -1"
poke nan1.gguf "$q.in_sum" 3 nan
refused "a NaN activation sum" "$tmp/nan1.gguf" "'$q.in_sum' column 3 is nan; it must be finite"
for c in 0 -1 nan inf; do
  poke "count$c.gguf" "$q.counts" 0 "$c"
  refused "count $c" "$tmp/count$c.gguf" "entry '$q' has count $c; it must be positive"
done
"$edit" "$tmp/im.gguf" "$tmp/nocount.gguf" --drop "$q.counts"
refused "no count" "$tmp/nocount.gguf" "entry '$q' needs F32 tensors '$q.in_sum2' and '$q.counts'"

# --- what broke ---
# An activation sum whose square exceeds count x the sum of squares (impossible for real
# activations: Cauchy-Schwarz) made the mean feedback write NaN block scales: the model computed
# NaN logits.
poke badsum.gguf "$q.in_sum" 0 3e38
refused "an activation sum larger than the squares allow" "$tmp/badsum.gguf" \
  "'$q.in_sum' column 0 .*recompute the file with 'edgellm imatrix'"
# A tiny positive count made the mean squares infinite: the file was taken and the quantized
# model's KL rose 15-fold (Q4_0 0.015 -> 0.23). (With W.in_sum the check above catches it.)
"$edit" "$tmp/nosums.gguf" "$tmp/tinycount.gguf" --poke-f32 "$q.counts" 0 1e-38
refused "a count that makes the mean squares overflow" "$tmp/tinycount.gguf" \
  "entry '$q' column [0-9]+: .*recompute the file with 'edgellm imatrix'"
# Other runtimes' older imatrix files (.dat: entry count, then per entry a name, calls, values)
# were refused with the advice for a model: "convert the model with 'edgellm convert' first",
# which has no imatrix import.
python3 -c "
import struct, sys
name = b'blk.0.attn_q.weight'
b = struct.pack('<i', 1) + struct.pack('<i', len(name)) + name + struct.pack('<ii', 10, 64)
b += struct.pack('<64f', *([1.0] * 64)) + struct.pack('<i', 10) + struct.pack('<i', 5) + b'c.txt'
open(sys.argv[1], 'wb').write(b)" "$tmp/legacy.dat"
refused "an older .dat imatrix" "$tmp/legacy.dat" \
  "legacy.dat' is not a GGUF importance matrix.*make one .*with 'edgellm imatrix'"
# A file without the model keys (as other runtimes write them) from a model with fewer layers was
# taken silently: half the layers were rounded as without --imatrix.
"$EDGELLM" synth --dims 64,2,4,4,172 --vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" \
  -o "$tmp/two.gguf" --type f32 --ctx 128 2>/dev/null
"$EDGELLM" imatrix -m "$tmp/two.gguf" -f "$tmp/calib.txt" -o "$tmp/two-im.gguf" --ctx 64 2>/dev/null
"$edit" "$tmp/two-im.gguf" "$tmp/two-nokeys.gguf" --del imatrix.model.n_layer
"$EDGELLM" quantize "$src" "$tmp/out.gguf" q4_0 --imatrix "$tmp/two-nokeys.gguf" 2>"$tmp/err"
rc=$?
grep -q "warning: '.*two-nokeys.gguf' has no statistics for 14 of the 29 matrices (blk.2.attn_q.weight, ...); they are rounded as without --imatrix" "$tmp/err"
st=$?
check "an imatrix of a 2-layer model on a 4-layer one: exit $rc, $(grep warning "$tmp/err")" $st
"$EDGELLM" quantize "$src" "$tmp/out.gguf" q4_0 --imatrix "$tmp/im.gguf" 2>"$tmp/err"
! grep -q "has no statistics" "$tmp/err"
check "the model's own imatrix: no warning" $?
# A file of a model of other widths named the tensor but not the way out.
"$EDGELLM" synth --dims 64,4,4,4,128 --vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" \
  -o "$tmp/narrow.gguf" --type f32 --ctx 128 2>/dev/null
"$EDGELLM" imatrix -m "$tmp/narrow.gguf" -f "$tmp/calib.txt" -o "$tmp/narrow-im.gguf" --ctx 64 2>/dev/null
refused "an imatrix of a model with narrower FFN matrices" "$tmp/narrow-im.gguf" \
  "'blk.0.ffn_down.weight' has 172 input columns in the model but 128 .* compute one for this model with 'edgellm imatrix'"
"$edit" "$tmp/im.gguf" "$tmp/extra.gguf" --add-f32 blk.9.ffn_up.weight.in_sum2 64 \
  --add-f32 blk.9.ffn_up.weight.counts 1
refused "statistics for a matrix the model lacks" "$tmp/extra.gguf" \
  "'blk.9.ffn_up.weight', which this model does not have.* compute one for this model with 'edgellm imatrix'"
# A model with a NaN weight: imatrix wrote a file of NaN statistics, which quantize then refused
# as a broken imatrix.
"$edit" "$src" "$tmp/nanw.gguf" --poke-f32 blk.1.attn_k.weight 5 nan
"$EDGELLM" imatrix -m "$tmp/nanw.gguf" -f "$tmp/calib.txt" -o "$tmp/nan-im.gguf" --ctx 64 2>"$tmp/err"
rc=$?
[[ $rc -eq 1 ]] && grep -q "the activations at the input of 'blk.1.attn_output.weight' hold NaN or infinite values" "$tmp/err" &&
  [[ ! -e "$tmp/nan-im.gguf" ]]
st=$?
check "imatrix of a model with a NaN weight: exit $rc, $(tail -1 "$tmp/err")" $st

exit $fail
