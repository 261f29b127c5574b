#!/usr/bin/env bash
# edgellm's GGUF files checked with an independent GGUF implementation (@huggingface/gguf from
# the npm registry, installed here; if that fails, the test fails) — see gguf_compat/check.mjs.
set -euo pipefail
dir="$TEST_TMP/gguf_compat"
mkdir -p "$dir"
cp "$SOURCE_DIR"/tests/gguf_compat/{package.json,package-lock.json,check.mjs} "$dir/"
if [[ ! -d "$dir/node_modules/@huggingface/gguf" ]]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
    { echo "gguf_compat: cannot install @huggingface/gguf (is the npm registry reachable?)" >&2; exit 1; }
fi
node "$dir/check.mjs" "$EDGELLM" "$SHARED" "$dir"
