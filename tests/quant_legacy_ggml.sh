#!/usr/bin/env bash
# Q4_1, Q5_0, Q5_1, IQ4_NL and the Q8_1 activations against another runtime's own
# (de)quantizers: the ggml base library shipped in the npm package @node-llama-cpp/linux-x64
# (installed here once per build tree, pinned; the K-quant cross-checks use the same install).
# ggml_legacy_crosscheck decodes its blocks with our dequantizer and ours with its dequantizer,
# and compares the quantizers' errors.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
lib=$(ggml_base_library) || exit 1
"$BUILD_DIR/tests/ggml_legacy_crosscheck" "$lib"
