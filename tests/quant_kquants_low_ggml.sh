#!/usr/bin/env bash
# Q2_K, Q3_K, IQ4_XS against another runtime's own (de)quantizers: the ggml base library shipped
# in the npm package @node-llama-cpp/linux-x64 (installed here once per build tree, pinned; the
# Q4_K/Q5_K/Q6_K cross-check uses the same install). ggml_kquant_low_crosscheck decodes its blocks
# with our dequantizer and ours with its dequantizer, and compares the quantizers' errors.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
lib=$(ggml_base_library) || exit 1
"$BUILD_DIR/tests/ggml_kquant_low_crosscheck" "$lib"
