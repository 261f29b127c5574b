#!/usr/bin/env bash
# The standard benchmark record for every `edgellm quantize` recipe of one float model, as a
# Markdown table: size, peak memory, prefill and decode speed, and the efficiencies against the
# bandwidth and FMA peak measured in the same run.
#   bench/formats.sh EDGELLM MODEL-F16.gguf [RECIPES] [PROMPT] [GEN] [THREADS]
# e.g. bench/formats.sh build/edgellm /tmp/tl-f16.gguf, with the F16 model from
#   edgellm synth --preset tinyllama-1.1b --vocab ../shared/models/llama2-vocab-tiny-f16.gguf \
#     -o /tmp/tl-f16.gguf --type f16
set -euo pipefail
edgellm=$1 model=$2
recipes=${3:-q4_0,q4_k_m,q8_0,q6_k,q5_k_m,q5_k_s,q5_1,q5_0,q4_k_s,q4_1,iq4_nl,iq4_xs,q3_k_l,q3_k_m,q3_k_s,q2_k,f16}
prompt=${4:-512} gen=${5:-64} threads=${6:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| recipe | kernels | file GB | peak RSS GB | prefill tok/s | decode tok/s | TTFT ms |" \
     "BW GB/s | FMA GFLOP/s | decode eff. | prefill eff. |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
IFS=, read -ra list <<<"$recipes"
for r in "${list[@]}"; do
  if ! "$edgellm" quantize "$model" "$work/$r.gguf" "$r" >/dev/null 2>"$work/err"; then
    echo "| $r | not available: $(tail -1 "$work/err") |"
    continue
  fi
  "$edgellm" bench -m "$work/$r.gguf" -p "$prompt" -n "$gen" -t "$threads" -r 1 --json \
    >"$work/r.json" 2>/dev/null
  python3 - "$r" "$work/r.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"| {sys.argv[1]} | {r['device']['kernels']} "
      f"| {r['model_size_gb']:.3f} | {r['memory_usage_gb']:.3f} | {r['prefill_tok_per_s']:.1f} "
      f"| {r['decode_tok_per_s']:.2f} | {r['ttft_ms']:.0f} | {r['memory_bandwidth_gbs']:.1f} "
      f"| {r['fma_peak_gflops']:.0f} | {100 * r['decode_efficiency']:.1f} % "
      f"| {100 * r['prefill_efficiency']:.1f} % |")
EOF
  rm -f "$work/$r.gguf"
done
