#!/usr/bin/env bash
# Builds the GGUF parser fuzz target with clang's libFuzzer and runs it for a bounded time
# (default 60 s) from a seed corpus made of the shared models. Exits non-zero on a crash.
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${EDGELLM_SHARED:-$root/../shared}
build="$root/build-fuzz"
command -v clang >/dev/null || { echo "fuzz: clang is needed (scripts/install-deps.sh --test)" >&2; exit 1; }
CC=clang cmake -S "$root" -B "$build" -DEDGELLM_FUZZ=ON -DEDGELLM_BUILD_TOOLS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELLM_SHARED_DIR="$shared" >/dev/null
cmake --build "$build" --target fuzz_gguf -j "$(nproc)" >/dev/null
corpus="$build/corpus"
mkdir -p "$corpus"
# Seeds: the shared GGUF files cut to their first 64 KiB (header, metadata, tensor infos), so
# the fuzzer spends its time on the parser rather than on megabytes of weights.
for f in "$shared"/models/*.gguf; do
  head -c 65536 "$f" > "$corpus/$(basename "$f").seed"
done
"$build/fuzz/fuzz_gguf" "$corpus" -max_total_time="$seconds" -max_len=131072 \
  -print_final_stats=1 -artifact_prefix="$build/" 2>&1 | tail -n 25
