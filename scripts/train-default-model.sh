#!/usr/bin/env bash
# Trains edgellm's default model end to end from Debian packages: the King James Bible
# (bible-kjv-text, public domain) as the corpus, a 4096-piece SentencePiece BPE vocabulary
# (spm_train from sentencepiece), `edgellm train`, `edgellm quantize` to Q8_0 and the loss curve
# (gnuplot). Same seed and thread count give the same file.
# Usage: scripts/train-default-model.sh [BUILD_DIR] [WORK_DIR]   (output: models/edgellm-default.gguf)
# Environment: STEPS (default 500) and STOP_AT (stop early at that step, keeping its checkpoint
# as the model: the schedule is still that of STEPS) to fit a time budget; THREADS (2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
work=${2:-$root/build/default-model}
bin="$build/edgellm"
steps=${STEPS:-500}
stop_at=${STOP_AT:-}
threads=${THREADS:-2}
dims=256,2,4,4,768 # n_embd, layers, heads, KV heads, feed-forward: K-quant friendly (x256)
for tool in bible spm_train gnuplot; do
  command -v "$tool" >/dev/null || {
    echo "train-default-model: $tool is missing: apt-get install bible-kjv sentencepiece gnuplot-nox" >&2
    exit 1
  }
done
[[ -x "$bin" ]] || { echo "train-default-model: no $bin: build edgellm first" >&2; exit 1; }
mkdir -p "$work"
cd "$work"

echo "== corpus: the King James Bible, one verse per line (verse numbers and headings dropped)" >&2
bible -l 100000 'gen1:1-rev22:21' | awk '/^ +[0-9]+ /{ sub(/^ +[0-9]+ /, ""); print }' > kjv.txt
[[ $(wc -l < kjv.txt) -eq 31102 ]] || { echo "train-default-model: expected 31102 verses in kjv.txt" >&2; exit 1; }

echo "== vocabulary: SentencePiece BPE, 4096 pieces, byte fallback, no normalization" >&2
spm_train --input=kjv.txt --model_prefix=kjv4096 --model_type=bpe --vocab_size=4096 \
  --normalization_rule_name=identity --remove_extra_whitespaces=false --byte_fallback=true \
  --character_coverage=1.0 --num_threads=1 --max_sentence_length=8192 > spm_train.log 2>&1
"$bin" convert --from sentencepiece kjv4096.model -o kjv4096.gguf --name edgellm-default

echo "== training $dims for $steps steps on $threads threads" >&2
rm -f model-f32.gguf model-f32.gguf.csv model-f32.gguf.ckpt
"$bin" train -o model-f32.gguf --dims "$dims" --vocab kjv4096.gguf -f kjv.txt --ctx 128 --batch 8 \
  --steps "$steps" --lr 2e-3 --seed 1 --eval-split 0.02 --checkpoint-every 25 -t "$threads" \
  ${stop_at:+--stop-at "$stop_at"}
trained=model-f32.gguf
[[ -n "$stop_at" ]] && trained=model-f32.gguf.ckpt

mkdir -p "$root/models"
"$bin" quantize "$trained" "$root/models/edgellm-default.gguf" q8_0
cp model-f32.gguf.csv "$root/models/edgellm-default-train.csv"
gnuplot <<PLOT
set terminal pngcairo size 800,480
set output '$root/models/edgellm-default-loss.png'
set datafile separator ','
set key autotitle columnhead
set xlabel 'step'
set ylabel 'cross-entropy (nats/token)'
set title 'edgellm-default: training on the King James Bible'
set grid
plot 'model-f32.gguf.csv' using 1:2 with lines title 'train loss', \
     '' using 1:(\$3 == \$3 ? \$3 : 1/0) with linespoints title 'eval loss'
PLOT
echo "== wrote $root/models/edgellm-default.gguf" >&2
