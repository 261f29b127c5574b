#!/usr/bin/env bash
# Constrained-decoding cost: the grammar's masking time per token against the whole time per
# generated token, measured in the same run by `edgellm run` (its "grammar:" line), on a
# qwen2.5-0.5b-shaped model with the Qwen 3 vocabulary (151k tokens), under a JSON schema and
# under --json. Usage: bench/grammar_overhead.sh [BUILD_DIR] [THREADS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
threads=${2:-2}
edgellm=$build/edgellm
shared=${SHARED:-$here/../../shared}
work=${TMPDIR:-/tmp}/edgellm-grammar-bench
mkdir -p "$work"
[ -f "$work/qwen3-vocab.gguf" ] ||
    "$edgellm" convert --from hf "$shared/tokenizers/qwen3" -o "$work/qwen3-vocab.gguf" --vocab-only
[ -f "$work/qwen05-q4_0.gguf" ] ||
    "$edgellm" synth --preset qwen2.5-0.5b --vocab "$work/qwen3-vocab.gguf" -o "$work/qwen05-q4_0.gguf" --type q4_0
cat > "$work/schema.json" <<'JSON'
{"type": "object", "properties": {
  "title": {"type": "string", "minLength": 40, "maxLength": 80},
  "year": {"type": "integer"},
  "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 3, "maxItems": 5},
  "rating": {"type": "number"}, "published": {"type": "boolean"}},
 "required": ["title", "year", "tags", "rating", "published"]}
JSON
for mode in "--json-schema $work/schema.json" "--json"; do
    for seed in 1 2 3; do
        printf '%-12s seed %s: ' "${mode%% *}" "$seed"
        # shellcheck disable=SC2086
        "$edgellm" run -m "$work/qwen05-q4_0.gguf" -p "Write JSON:" -n 120 -t "$threads" \
            --seed "$seed" $mode 2>&1 >/dev/null | grep -E '^(grammar|generated):' | tr '\n' ' '
        echo
    done
done
