#!/usr/bin/env bash
# Q4_K, Q5_K, Q6_K against another runtime's own (de)quantizers: the ggml base library shipped in
# the npm package @node-llama-cpp/linux-x64 (installed here, once per build tree, pinned).
# ggml_kquant_crosscheck decodes its blocks with our dequantizer and ours with its dequantizer.
set -uo pipefail
ref="$BUILD_DIR/npm-ref/node-llama-cpp"
lib="$ref/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"
if [[ ! -f "$lib" ]]; then
  mkdir -p "$ref"
  if ! npm install --prefix "$ref" --no-audit --no-fund --ignore-scripts \
      @node-llama-cpp/linux-x64@3.21.1 >"$ref/install.log" 2>&1; then
    echo "FAIL: could not install @node-llama-cpp/linux-x64 from npm (see $ref/install.log)" >&2
    exit 1
  fi
fi
"$BUILD_DIR/tests/ggml_kquant_crosscheck" "$lib"
