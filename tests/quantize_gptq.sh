#!/bin/bash
# edgellm quantize --gptq on the shared aidreams model and on its copy with planted outlier
# channels (see quantize_imatrix.sh), KL on held-out text generated with other seeds than the
# calibration text. Thresholds from the figures measured when this was written (12 calibration
# and 6 held-out texts):
#   aidreams Q4_0 plain 0.0198 / --gptq 0.0144; outliers Q4_0 plain 0.139 / --gptq 0.074,
#   outliers IQ4_NL --imatrix --awq --gptq 0.012 (plain 0.109)
# required: --gptq below plain on aidreams, at least 30 % below on the outlier model, and AWQ
# scaling plus GPTQ rounding at least 60 % below. Also the option errors.
set -u
tmp="$TEST_TMP/quantize_gptq"
rm -rf "$tmp" && mkdir -p "$tmp"
fail=0
source "$(dirname "$0")/lib.sh"

src="$SHARED/models/aidreams260K-f32.gguf"
sample_text "$src" 1 12 >"$tmp/calib.txt"
sample_text "$src" 101 106 >"$tmp/held.txt"
"$EDGELLM" eval -m "$src" -f "$tmp/held.txt" --ctx 128 --save-logits "$tmp/base.bin" >/dev/null
"$BUILD_DIR/tests/plant_outliers" "$src" "$tmp/outliers.gguf" 16 5 23 40
measure() { # measure MODEL -> KL mean against the F32 logits (the planted copy computes the same)
  kl_of "$("$EDGELLM" eval -m "$1" -f "$tmp/held.txt" --ctx 128 --kl-base "$tmp/base.bin")"
}
compare() { # compare LABEL MODEL TYPE FACTOR [options]
  local label=$1 model=$2 q=$3 factor=$4
  shift 4
  "$EDGELLM" quantize "$model" "$tmp/plain.gguf" "$q" 2>/dev/null
  "$EDGELLM" quantize "$model" "$tmp/gptq.gguf" "$q" --gptq --calib "$tmp/calib.txt" "$@" 2>"$tmp/err"
  check "$label $q $*: --gptq runs, layer by layer" $?
  local p g
  p=$(measure "$tmp/plain.gguf")
  g=$(measure "$tmp/gptq.gguf")
  echo "     $label $q: KL plain $p, --gptq $* $g"
  below "$g" "$p" "$factor"
  check "$label $q: --gptq $* KL below $factor x plain" $?
}
compare aidreams "$src" q4_0 1.0
grep -q -- "--gptq: layer 4/4 statistics" "$tmp/err"
check "statistics are computed for each layer" $?
compare outliers "$tmp/outliers.gguf" q4_0 0.7
"$EDGELLM" imatrix -m "$tmp/outliers.gguf" -f "$tmp/calib.txt" -o "$tmp/im.gguf" --ctx 128 2>/dev/null
compare outliers "$tmp/outliers.gguf" iq4_nl 0.4 --imatrix "$tmp/im.gguf" --awq

usage_fails() { # usage_fails NAME STATUS PATTERN args...
  local name=$1 want=$2 pattern=$3
  shift 3
  "$EDGELLM" quantize "$src" "$tmp/x.gguf" "$@" 2>"$tmp/err"
  [[ $? -eq $want ]] && grep -q -- "$pattern" "$tmp/err" && [[ $(wc -l <"$tmp/err") -eq 1 ]] &&
    [[ ! -e "$tmp/x.gguf" ]]
  check "$name" $?
}
usage_fails "--gptq without --calib: usage error" 2 "give --calib" q4_0 --gptq
usage_fails "--calib without --gptq: usage error" 2 "add --gptq" q4_0 --calib "$tmp/calib.txt"
echo "a dream" >"$tmp/short.txt"
usage_fails "calibration text shorter than a chunk: one-line error" 1 "fewer than one chunk of 128" \
  q4_0 --gptq --calib "$tmp/short.txt"
usage_fails "missing calibration file: one-line error" 1 "nothing.txt" q4_0 --gptq --calib "$tmp/nothing.txt"
usage_fails "--ctx beyond the model's context: one-line error" 1 "longer than the model's context" \
  q4_0 --gptq --calib "$tmp/calib.txt" --ctx 4096
exit $fail
