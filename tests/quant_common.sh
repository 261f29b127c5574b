# Sourced by the quantization-quality tests (quantize_imatrix.sh, quantize_gptq.sh,
# quantize_imatrix_ggml.sh): the helpers of lib.sh, kl, and calibration and held-out text generated
# by the F32 aidreams model itself with different seeds (the model was trained on one narrow kind
# of text, so this is its own distribution; KL is measured on the held-out text only).
#   quant_setup NAME: $tmp (emptied), $src, $tmp/calib.txt (12 texts), $tmp/held.txt (6 texts),
#   $tmp/base.bin (the F32 model's held-out logits), $tmp/outliers.gguf (see plant_outliers.c:
#   channels 5, 23 and 40 of the norms times 16, the same input columns divided by 16; powers of
#   two, so its F32 logits are exactly the original's).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # check, kl_of, below, sample_text, ggml_base_library
# kl MODEL [BASE_LOGITS] -> KL mean on the held-out text against the F32 logits
kl() { kl_of "$("$EDGELLM" eval -m "$1" -f "$tmp/held.txt" --ctx 128 --kl-base "${2:-$tmp/base.bin}")"; }
quant_setup() {
  tmp="$TEST_TMP/$1"
  rm -rf "$tmp" && mkdir -p "$tmp"
  src="$SHARED/models/aidreams260K-f32.gguf"
  sample_text "$src" 1 12 >"$tmp/calib.txt"
  sample_text "$src" 101 106 >"$tmp/held.txt"
  "$EDGELLM" eval -m "$src" -f "$tmp/held.txt" --ctx 128 --save-logits "$tmp/base.bin" >/dev/null
  "$BUILD_DIR/tests/plant_outliers" "$src" "$tmp/outliers.gguf" 16 5 23 40
}
