#!/usr/bin/env bash
# Structured pruning: file size, prefill/decode speed (edgellm bench, same run, ratios to the
# unpruned model), the bytes a decoded token reads and the FLOPs a prefilled token costs (from the
# model's shapes: what speed follows on a quiet machine), and held-out KL against the unpruned
# model's logits, for FFN and head fractions and dropped layers.
#   bench/prune_quality.sh EDGELLM MODEL.gguf CALIB.txt HELD.txt [CTX] [THREADS] [CHUNKS]
# CHUNKS caps the calibration chunks of CTX tokens prune reads (default: the whole text); for a
# 1B model keep CALIB.txt and HELD.txt to a few thousand tokens (eval runs the whole HELD.txt).
set -euo pipefail
edgellm=$1 model=$2 calib=$3 held=$4
ctx=${5:-128} threads=${6:-1} chunks=${7:-}
chunk_opt=()
[[ -n $chunks ]] && chunk_opt=(--chunks "$chunks")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$edgellm" eval -m "$model" -f "$held" --ctx "$ctx" -t "$threads" --save-logits "$work/base.bin" >/dev/null
speed() { # speed MODEL -> "prefill decode" tokens/s, decode bytes and prefill FLOPs per token
  "$edgellm" bench -m "$1" -p $((ctx / 2)) -n $((ctx / 4)) -t "$threads" -r 3 --json 2>/dev/null |
    python3 -c "import json,sys; r=json.load(sys.stdin); print(r['prefill_tok_per_s'], r['decode_tok_per_s'], r['decode_bytes_per_token'], r['prefill_flops_per_token'])"
}
read -r base_pp base_tg base_bytes base_flops <<<"$(speed "$model")"
base_size=$(stat -c %s "$model")
echo "| pruning | file MiB (ratio) | prefill tok/s (ratio) | decode tok/s (ratio) | decode bytes/token ratio | prefill FLOPs/token ratio | KL mean | KL p99 | top-1 |"
echo "|---|---|---|---|---|---|---|---|---|"
python3 -c "print('| none | %.2f | %.0f | %.0f | 1 | 1 | 0 | 0 | 100 %% |' % ($base_size / 1048576, $base_pp, $base_tg))"
for opt in "--ffn 0.1" "--ffn 0.25" "--ffn 0.5" "--heads 0.1" "--heads 0.25" "--heads 0.5" "--layers 1" "--layers 2"; do
  if ! "$edgellm" prune -m "$model" -o "$work/p.gguf" $opt -f "$calib" --ctx "$ctx" "${chunk_opt[@]}" \
    -t "$threads" 2>"$work/err"; then
    echo "| $opt | not available: $(tail -1 "$work/err") | | | | | |"
    continue
  fi
  read -r pp tg bytes flops <<<"$(speed "$work/p.gguf")"
  out=$("$edgellm" eval -m "$work/p.gguf" -f "$held" --ctx "$ctx" -t "$threads" --kl-base "$work/base.bin" 2>&1)
  kl=$(awk '/^KL divergence/ {gsub(",", ""); print $4, $6}' <<<"$out")
  top1=$(awk '/^top-1/ {print $3}' <<<"$out")
  size=$(stat -c %s "$work/p.gguf")
  python3 - "$opt" "$size" "$base_size" "$pp" "$base_pp" "$tg" "$base_tg" "$bytes" "$base_bytes" \
    "$flops" "$base_flops" "${kl% *}" "${kl#* }" "$top1" <<'PY'
import sys
opt, kl, p99, top1 = sys.argv[1], sys.argv[12], sys.argv[13], sys.argv[14]
s, b, pp, bpp, tg, btg, by, bby, fl, bfl = map(float, sys.argv[2:12])
print("| %s | %.2f (%.2f) | %.0f (%.2f) | %.0f (%.2f) | %.2f | %.2f | %s | %s | %s |"
      % (opt, s / 1048576, s / b, pp, pp / bpp, tg, tg / btg, by / bby, fl / bfl, kl, p99, top1))
PY
done
