# Sourced by the quantization-quality tests (quantize_imatrix.sh, quantize_gptq.sh,
# quantize_imatrix_ggml.sh): the helpers of lib.sh (aidreams_setup, kl) with their larger texts.
#   quant_setup NAME: $tmp (emptied), $src, $tmp/calib.txt (12 texts), $tmp/held.txt (6 texts),
#   $tmp/base.bin (the F32 model's held-out logits), $tmp/outliers.gguf (see plant_outliers.c:
#   channels 5, 23 and 40 of the norms times 16, the same input columns divided by 16; powers of
#   two, so its F32 logits are exactly the original's).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # check, aidreams_setup, kl, below, ggml_base_library
quant_setup() {
  aidreams_setup "$1" 12 6 128
  "$BUILD_DIR/tests/plant_outliers" "$src" "$tmp/outliers.gguf" 16 5 23 40
}
