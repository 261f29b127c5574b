#!/usr/bin/env bash
# make demo: convert the shared aidreams llama2.c checkpoint with edgellm's own converter and
# generate from it.
set -euo pipefail
build=${1:-build}
shared=${EDGELLM_SHARED:-$(cd "$(dirname "$0")/.." && pwd)/../shared}
bin="$build/edgellm"
model="$build/demo/aidreams260K.gguf"
ckpt="$shared/models/aidreams260K.bin"
tok="$shared/models/aidreams-tok512.bin"
for f in "$ckpt" "$tok"; do
  [[ -f "$f" ]] || { echo "demo: missing $f (set EDGELLM_SHARED to the shared data folder)" >&2; exit 1; }
done
mkdir -p "$build/demo"
echo "== converting $ckpt -> $model" >&2
"$bin" convert --from llama2c "$ckpt" --tokenizer "$tok" -o "$model"
echo "== edgellm run -m $model -p 'I dreamed of' -n 64 --temp 0" >&2
"$bin" run -m "$model" -p "I dreamed of" -n 64 --temp 0
