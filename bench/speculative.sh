#!/usr/bin/env bash
# Speculative decoding's cost model as a Markdown table: greedy decode speed with a draft model
# against plain decoding in the same run, for several forced acceptance rates (a benchmark-only
# setting: models with random weights agree on nothing) and draft lengths.
#   bench/speculative.sh EDGELLM TARGET.gguf DRAFT.gguf [RATES] [DRAFT_MAXES] [PROMPT] [GEN]
#     [THREADS] [REPS]
# e.g. with the two shapes the docs quote (the same vocabulary file for both):
#   edgellm synth --preset tinyllama-1.1b --vocab ../shared/models/llama2-vocab-tiny-f16.gguf \
#     -o /tmp/tl.gguf --type q4_0
#   edgellm synth --preset smollm2-360m --vocab ../shared/models/llama2-vocab-tiny-f16.gguf \
#     -o /tmp/sm.gguf --type q4_0
#   bench/speculative.sh build/edgellm /tmp/tl.gguf /tmp/sm.gguf
set -euo pipefail
edgellm=$1 target=$2 draft=$3
rates=${4:-0,0.5,0.8,1} maxes=${5:-2,4,8} prompt=${6:-32} gen=${7:-48} threads=${8:-2} reps=${9:-3}
echo "| draft max | forced acceptance | tokens/pass | plain tok/s | speculative tok/s | speed-up |"
echo "|---|---|---|---|---|---|"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
IFS=, read -ra rate_list <<<"$rates"
IFS=, read -ra max_list <<<"$maxes"
for k in "${max_list[@]}"; do
  for r in "${rate_list[@]}"; do
    "$edgellm" bench -m "$target" --draft "$draft" --draft-max "$k" --force-acceptance "$r" \
      -p "$prompt" -n "$gen" -t "$threads" -r "$reps" --json >"$work/r.json" 2>/dev/null
    python3 - "$work/r.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["speculative"]
print(f"| {s['draft_max']} | {s['forced_acceptance']:.2f} | {s['tokens_per_pass']:.2f} "
      f"| {s['plain_decode_tok_per_s']:.2f} | {s['decode_tok_per_s']:.2f} | {s['speedup']:.2f}x |")
EOF
  done
done
