#!/usr/bin/env bash
# Files written by `edgellm convert --from hf` read by another implementation of GGUF: the
# Hugging Face gguf parser (npm @huggingface/gguf, installed here from the npm registry; if that
# fails, the test fails). Keys, value types, tensor names, shapes and data layout are checked
# against each checkpoint's config.json (tests/hf_gguf_js/check.mjs).
set -uo pipefail
dir="$TEST_TMP/hf_import_gguf_js"
mkdir -p "$dir"
cp "$SOURCE_DIR/tests/hf_gguf_js/package.json" "$SOURCE_DIR/tests/hf_gguf_js/package-lock.json" \
   "$SOURCE_DIR/tests/hf_gguf_js/check.mjs" "$dir/"
if [[ ! -d "$dir/node_modules/@huggingface/gguf" ]]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
    { echo "hf_import_gguf_js: cannot install @huggingface/gguf (is the npm registry reachable?)" >&2; exit 1; }
fi
args=()
for spec in llama:bf16:f32 mistral:f16:f16 qwen2:bf16:q8_0 qwen3:f32:bf16 gemma:bf16:f32 \
            gemma2:f16:f32 gemma3:bf16:bf16 phi3:f32:f16; do
  IFS=: read -r arch dtype outtype <<<"$spec"
  rm -rf "$dir/$arch"
  python3 "$SOURCE_DIR/tests/helpers/hf_model.py" model "$arch" "$dir/$arch" --dtype "$dtype" \
    --no-reference || exit 1
  "$EDGELLM" convert --from hf "$dir/$arch" -o "$dir/$arch.gguf" --outtype "$outtype" 2>/dev/null ||
    { echo "FAIL: convert $arch" >&2; exit 1; }
  args+=("$dir/$arch.gguf" "$dir/$arch")
done
node "$dir/check.mjs" "${args[@]}"
