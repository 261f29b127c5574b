#!/usr/bin/env bash
# Where two-thread decode loses against one core's kernel (docs/performance.md, "Session 8"), in
# one run for an idle machine: each decode kernel at one and two threads against the streaming
# read of the same threads, as one large matrix (what two independent readers get), as jobs with
# a barrier after each (the model's dispatches, without its serial steps) and on the k/v shape;
# then each model's decode at one and two threads. Figures from a loaded machine mean little
# (see the CPU share and "reps together" columns).
#   bench/decode_threads.sh BUILD_DIR [MODEL.gguf...]
# e.g. bench/decode_threads.sh build /tmp/s8/tl-q8_0.gguf /tmp/s8/tl-q4_k_m.gguf
set -euo pipefail
build=$1
shift
types=(q4_0 q8_0 q4_K q6_K iq4_xs)
set=${KERNELS:-avx512}
for shape in "" "--rows 2048" "--rows 256"; do
  for threads in 1 2; do
    echo "## gemv_micro --threads $threads $shape"
    # shellcheck disable=SC2086 # the shape is two words or none
    "$build/gemv_micro" --kernels "$set" --threads "$threads" $shape --mib 128 --reps 9 "${types[@]}"
  done
done
for model in "$@"; do
  for threads in 1 2; do
    echo "## $model, $threads thread(s)"
    "$build/edgellm" bench -m "$model" -p 16 -n 96 -r 1 -t "$threads" --kernels "$set" |
      grep -E 'decode_|machine|warning' || true
  done
done
