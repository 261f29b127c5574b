#!/bin/bash
# Session 9's imatrix changes under hostile use: --rank at and past its bounds, rank-64 files read
# back, files of the session-8 binary (at most 32 directions) read by this one, inputs of 256
# (whole covariance) and 257 columns (sketched), and damaged covariance tensors (one of the pair
# missing, a short eigenvalue list, NaN, negative, non-unit directions, eigenvalues beyond the
# column sums of squares). Each either quantizes to a model within 2x the good file's KL or is
# refused with exit 1 and one line naming the file and tensor.
set -u
source "$(dirname "$0")/lib.sh"
aidreams_setup attack_s9_imatrix 4 3 64

for r in -1 65 x 1e1; do
  "$EDGELLM" imatrix -m "$src" -f "$tmp/calib.txt" -o "$tmp/bad.gguf" --ctx 64 --rank "$r" 2>"$tmp/err"
  rc=$?
  [[ $rc -eq 2 ]] && grep -q -- "--rank expects an integer from 0 to 64, got '$r'" "$tmp/err" && [[ ! -e "$tmp/bad.gguf" ]]
  st=$?
  check "--rank $r: exit $rc, $(head -1 "$tmp/err")" $st
done
for r in 0 1 64; do
  "$EDGELLM" imatrix -m "$src" -f "$tmp/calib.txt" -o "$tmp/r$r.gguf" --ctx 64 --rank "$r" 2>/dev/null
  check "--rank $r: written" $?
done
"$EDGELLM" imatrix -m "$src" -f "$tmp/calib.txt" -o "$tmp/im.gguf" --ctx 64 2>/dev/null
check "default rank: written" $?
cmp -s "$tmp/im.gguf" "$tmp/r64.gguf"
check "the default on 64- and 172-column inputs is --rank 64" $?

"$EDGELLM" quantize "$src" "$tmp/good.gguf" iq4_nl --imatrix "$tmp/im.gguf" 2>/dev/null
good=$(kl "$tmp/good.gguf")
echo "     IQ4_NL with the rank-64 file: KL $good"
accepted() {
  rm -f "$tmp/out.gguf"
  "$EDGELLM" quantize "$src" "$tmp/out.gguf" iq4_nl --imatrix "$2" 2>"$tmp/err"
  check "$1: quantized" $?
  local k
  k=$(kl "$tmp/out.gguf")
  [[ -n "$k" ]] && below "$k" "$good" 2
  check "$1: KL ${k:-none} below 2x $good" $?
}
refused() {
  rm -f "$tmp/out.gguf"
  "$EDGELLM" quantize "$src" "$tmp/out.gguf" iq4_nl --imatrix "$2" 2>"$tmp/err"
  local rc=$?
  [[ $rc -eq 1 ]] && grep -Eq "$3" "$tmp/err" && [[ $(wc -l <"$tmp/err") -eq 1 ]] && [[ ! -e "$tmp/out.gguf" ]]
  st=$?
  check "$1: exit $rc, '$(head -c 300 "$tmp/err")'" $st
}
for r in 0 1; do accepted "--rank $r file" "$tmp/r$r.gguf"; done
q=blk.0.attn_q.weight
"$edit" "$tmp/im.gguf" "$tmp/novals.gguf" --drop "$q.in_cov_vals"
refused "directions without eigenvalues" "$tmp/novals.gguf" "'$q.in_cov_vecs' and '$q.in_cov_vals' must both be F32"
"$edit" "$tmp/im.gguf" "$tmp/novecs.gguf" --drop "$q.in_cov_vecs"
refused "eigenvalues without directions" "$tmp/novecs.gguf" "'$q.in_cov_vecs' and '$q.in_cov_vals' must both be F32"
"$edit" "$tmp/im.gguf" "$tmp/short.gguf" --drop "$q.in_cov_vals" --add-f32 "$q.in_cov_vals" 63
refused "63 eigenvalues for 64 directions" "$tmp/short.gguf" "must both be F32, \[64, k\] and \[k, 1\]"
"$edit" "$tmp/im.gguf" "$tmp/nanvec.gguf" --poke-f32 "$q.in_cov_vecs" 4095 nan
refused "a NaN in the last direction" "$tmp/nanvec.gguf" "'$q.in_cov_vecs' holds a value that is not finite"
"$edit" "$tmp/im.gguf" "$tmp/negval.gguf" --poke-f32 "$q.in_cov_vals" 63 -1e-30
refused "a negative eigenvalue" "$tmp/negval.gguf" "'$q.in_cov_vals' holds .*negative eigenvalue"
zeros=()
for i in $(seq 0 63); do zeros+=(--poke-f32 "$q.in_cov_vals" "$i" 0); done
"$edit" "$tmp/im.gguf" "$tmp/zerovals.gguf" "${zeros[@]}"
accepted "all eigenvalues zero" "$tmp/zerovals.gguf"
# What broke: a direction of length 3e38 (the file says unit vectors) and eigenvalues of 3e38
# (beyond the trace the column sums of squares allow) were taken: IQ4_NL's KL rose 16-fold and
# 4-fold.
"$edit" "$tmp/im.gguf" "$tmp/longvec.gguf" --poke-f32 "$q.in_cov_vecs" 0 3e38
refused "a direction that is not a unit vector" "$tmp/longvec.gguf" \
  "'$q.in_cov_vecs' direction 0 has length .*recompute the file with 'edgellm imatrix'"
"$edit" "$tmp/im.gguf" "$tmp/bigval.gguf" --poke-f32 "$q.in_cov_vals" 0 3e38
refused "eigenvalues beyond the sums of squares" "$tmp/bigval.gguf" \
  "'$q.in_cov_vals' sum to .*more than the sums of squares .*recompute the file with 'edgellm imatrix'"

# A rank-64 file cut short inside its last and an early covariance tensor.
size=$(stat -c %s "$tmp/im.gguf")
for cut in 4 300000; do
  head -c $((size - cut)) "$tmp/im.gguf" >"$tmp/cut.gguf"
  refused "the file cut $cut bytes short" "$tmp/cut.gguf" "in_cov_(vecs|vals)': data .* runs past the end of the file"
done

# Inputs of 256 columns keep the whole covariance (64 directions), 257 a sketch (8).
for f in 256 257; do
  "$EDGELLM" synth --dims 64,1,4,4,$f --vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" \
    -o "$tmp/m$f.gguf" --type f32 --ctx 128 2>/dev/null
  "$EDGELLM" imatrix -m "$tmp/m$f.gguf" -f "$tmp/calib.txt" -o "$tmp/im$f.gguf" --ctx 64 2>/dev/null
  check "imatrix of a model with $f FFN columns" $?
  for t in q4_0 q4_k_m iq4_xs; do
    "$EDGELLM" quantize "$tmp/m$f.gguf" "$tmp/o$f.gguf" $t --imatrix "$tmp/im$f.gguf" 2>/dev/null &&
      "$EDGELLM" eval -m "$tmp/o$f.gguf" -f "$tmp/held.txt" --ctx 64 >/dev/null 2>&1
    check "$f FFN columns, $t: quantized and evaluated" $?
  done
done
"$edit" "$tmp/im257.gguf" "$tmp/im257-64.gguf" --drop blk.0.ffn_down.weight.in_cov_vals \
  --add-f32 blk.0.ffn_down.weight.in_cov_vals 64
rm -f "$tmp/out.gguf"
"$EDGELLM" quantize "$tmp/m257.gguf" "$tmp/out.gguf" q4_0 --imatrix "$tmp/im257-64.gguf" 2>"$tmp/err"
[[ $? -eq 1 ]] && grep -q "must both be F32, \[257, k\]" "$tmp/err"
st=$?
check "a sketched input's 8 directions with 64 eigenvalues: $(head -1 "$tmp/err")" $st
exit $fail
