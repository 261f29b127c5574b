#!/usr/bin/env bash
# Quantization quality of every `edgellm quantize` recipe against a float reference model, the
# way practitioners measure it: reference logits saved once, then mean/p99 KL divergence, top-1
# agreement and perplexity ratio for each quantized copy (edgellm eval --kl-base).
#   bench/quant_quality.sh EDGELLM MODEL.gguf IDS_FILE [RECIPES] [CTX] [IMATRIX.gguf] [CALIB.txt]
# MODEL should be F32 (or F16); IDS_FILE is whitespace-separated token ids (a few hundred).
# With IMATRIX (from `edgellm imatrix` on other text than IDS_FILE), every recipe is also
# measured with --imatrix, and single block types with --imatrix --awq (rows "TYPE +imatrix",
# "TYPE +awq"); the bits-per-weight column is eval's. With CALIB.txt (the text IMATRIX was computed
# on, "" for no IMATRIX), every recipe is also measured with --gptq --calib CALIB.txt ("TYPE +gptq"),
# single block types also with --gptq --act-order ("TYPE +gptq act-order") and, with IMATRIX, with
# --imatrix --awq --gptq ("TYPE +awq+gptq"). --gptq is sequential: each layer's statistics come
# from the model with the earlier layers as quantized. With GGML_LIB (the ggml base library of the
# npm package @node-llama-cpp/linux-x64, see tests/lib.sh) and IMATRIX, every 32-value type and
# K-quant also gets the other runtime's own importance-weighted rounding of the same matrices with
# the same imatrix ("TYPE +imatrix llama.cpp", tests/helpers/ggml_imatrix_quantize, found beside
# EDGELLM in tests/).
#   bench/quant_quality.sh EDGELLM MODEL IDS [RECIPES] [CTX] [IMATRIX] [CALIB] [GGML_LIB]
set -euo pipefail
edgellm=$1 model=$2 ids=$3
recipes=${4:-q8_0,q6_k,q5_k_m,q5_k_s,q5_1,q5_0,q4_k_m,q4_k_s,q4_1,q4_0,iq4_nl,iq4_xs,q3_k_l,q3_k_m,q3_k_s,q2_k}
ctx=${5:-512}
imatrix=${6:-}
calib=${7:-}
ggml_lib=${8:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$edgellm" eval -m "$model" --ids "$ids" --ctx "$ctx" --save-logits "$work/base.bin" >/dev/null
echo "| recipe | file MiB | bits/weight | KL mean | KL p99 | top-1 | ppl ratio |"
echo "|---|---|---|---|---|---|---|"
report() { # report LABEL FILE: one row for a quantized file, which is then removed
  local label=$1 file=$2
  out=$("$edgellm" eval -m "$file" --ids "$ids" --ctx "$ctx" --kl-base "$work/base.bin" 2>&1)
  size=$(awk -v b="$(stat -c %s "$file")" 'BEGIN {printf "%.1f", b / 1048576}')
  bpw=$(sed -n 's/^size: .* MiB, \([0-9.]*\) bits per weight.*/\1/p' <<<"$out")
  kl=$(awk '/^KL divergence/ {gsub(",", ""); print $4, $6}' <<<"$out")
  top1=$(awk '/^top-1/ {print $3}' <<<"$out")
  ratio=$(awk '/^perplexity ratio/ {print $3}' <<<"$out")
  echo "| $label | $size | $bpw | ${kl% *} | ${kl#* } | $top1 | $ratio |"
  rm -f "$file"
}
measure() { # measure LABEL RECIPE [quantize options...]
  local label=$1 r=$2
  shift 2
  if ! "$edgellm" quantize "$model" "$work/$r.gguf" "$r" "$@" >/dev/null 2>"$work/err"; then
    echo "| $label | not available: $(tail -1 "$work/err") | | | | | |"
    return
  fi
  report "$label" "$work/$r.gguf"
}
measure_ggml() { # measure_ggml LABEL RECIPE: the other runtime's rounding of what --imatrix rounds
  local label=$1 r=$2
  if ! "$edgellm" quantize "$model" "$work/ours.gguf" "$r" --imatrix "$imatrix" >/dev/null 2>"$work/err" ||
    ! "$(dirname "$edgellm")/tests/ggml_imatrix_quantize" "$ggml_lib" "$model" "$work/ours.gguf" \
      "$imatrix" "$work/$r.gguf" >/dev/null 2>"$work/err"; then
    echo "| $label | not available: $(tail -1 "$work/err") | | | | | |"
    return
  fi
  rm -f "$work/ours.gguf"
  report "$label" "$work/$r.gguf"
}
IFS=, read -ra list <<<"$recipes"
for r in "${list[@]}"; do
  measure "$r" "$r"
  if [[ -n $imatrix ]]; then
    measure "$r +imatrix" "$r" --imatrix "$imatrix"
    [[ -n $ggml_lib ]] && measure_ggml "$r +imatrix llama.cpp" "$r"
    case $r in
      q4_0|q4_1|q5_0|q5_1|iq4_nl) measure "$r +awq" "$r" --imatrix "$imatrix" --awq ;;
    esac
  fi
  if [[ -n $calib ]]; then
    measure "$r +gptq" "$r" --gptq --calib "$calib" --ctx "$ctx"
    case $r in
      q4_0|q4_1|q5_0|q5_1|iq4_nl)
        measure "$r +gptq act-order" "$r" --gptq --act-order --calib "$calib" --ctx "$ctx" ;;
    esac
    if [[ -n $imatrix ]]; then
      case $r in
        q4_0|q4_1|q5_0|q5_1|iq4_nl)
          measure "$r +awq+gptq" "$r" --imatrix "$imatrix" --awq --gptq --calib "$calib" --ctx "$ctx" ;;
      esac
    fi
  fi
done
