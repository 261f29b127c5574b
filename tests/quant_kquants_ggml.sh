#!/usr/bin/env bash
# Q4_K, Q5_K, Q6_K against another runtime's own (de)quantizers: the ggml base library shipped in
# the npm package @node-llama-cpp/linux-x64 (installed here, once per build tree, pinned).
# ggml_kquant_crosscheck decodes its blocks with our dequantizer and ours with its dequantizer.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
lib=$(ggml_base_library) || exit 1
"$BUILD_DIR/tests/ggml_kquant_crosscheck" "$lib"
