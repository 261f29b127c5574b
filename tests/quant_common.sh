# Sourced by the quantization-quality tests (quantize_imatrix.sh, quantize_gptq.sh,
# quantize_imatrix_ggml.sh): check/kl/below helpers, and calibration and held-out text generated
# by the F32 aidreams model itself with different seeds (the model was trained on one narrow kind
# of text, so this is its own distribution; KL is measured on the held-out text only).
#   quant_setup NAME: $tmp (emptied), $src, $tmp/calib.txt (12 texts), $tmp/held.txt (6 texts),
#   $tmp/base.bin (the F32 model's held-out logits), $tmp/outliers.gguf (see plant_outliers.c:
#   channels 5, 23 and 40 of the norms times 16, the same input columns divided by 16; powers of
#   two, so its F32 logits are exactly the original's).
fail=0
check() { # check NAME STATUS
  if [[ $2 -eq 0 ]]; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
kl_of() { sed -n 's/^KL divergence: *mean \([^,]*\),.*/\1/p' <<<"$1"; }
# kl MODEL [BASE_LOGITS] -> KL mean on the held-out text against the F32 logits
kl() { kl_of "$("$EDGELLM" eval -m "$1" -f "$tmp/held.txt" --ctx 128 --kl-base "${2:-$tmp/base.bin}")"; }
# below A B FACTOR: 0 <= A < B * FACTOR
below() { python3 -c "import sys; sys.exit(0 if 0 <= float('$1') < float('$2') * float('$3') else 1)"; }
quant_setup() {
  tmp="$TEST_TMP/$1"
  rm -rf "$tmp" && mkdir -p "$tmp"
  src="$SHARED/models/aidreams260K-f32.gguf"
  local s
  for s in $(seq 1 12); do "$EDGELLM" run -m "$src" -p "" -n 120 --temp 1 --seed "$s" 2>/dev/null; echo; done >"$tmp/calib.txt"
  for s in $(seq 101 106); do "$EDGELLM" run -m "$src" -p "" -n 120 --temp 1 --seed "$s" 2>/dev/null; echo; done >"$tmp/held.txt"
  "$EDGELLM" eval -m "$src" -f "$tmp/held.txt" --ctx 128 --save-logits "$tmp/base.bin" >/dev/null
  "$BUILD_DIR/tests/plant_outliers" "$src" "$tmp/outliers.gguf" 16 5 23 40
}
