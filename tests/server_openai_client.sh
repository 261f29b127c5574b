#!/usr/bin/env bash
# The official openai npm client drives the server (chat, completions, streaming, embeddings,
# errors, tool calls). The client is installed from the npm registry here; if that fails, the test fails.
set -euo pipefail
dir="$TEST_TMP/openai_client"
mkdir -p "$dir"
cp "$SOURCE_DIR/tests/server/openai_client/package.json" \
   "$SOURCE_DIR/tests/server/openai_client/package-lock.json" \
   "$SOURCE_DIR/tests/server/openai_client/client_test.mjs" "$dir/"
if [[ ! -d "$dir/node_modules/openai" ]]; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
    { echo "server_openai_client: cannot install the openai npm package (is the npm registry reachable?)" >&2; exit 1; }
fi
# Tool calls need a context that holds the tool block: a one-layer model with a real vocabulary.
"$EDGELLM" synth --dims 64,1,2,2,128 --vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" \
  -o "$dir/tools-model.gguf" >/dev/null
node "$dir/client_test.mjs" "$EDGELLM" "$SHARED/models/aidreams260K-f32.gguf" "$TEST_TMP" \
  "$dir/tools-model.gguf"
