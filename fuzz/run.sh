#!/usr/bin/env bash
# Builds the GGUF parser fuzz target with clang's libFuzzer (ASan + UBSan) in its own build
# directory and runs it for a bounded time from seeds derived from the shared models; then the
# same for the safetensors header parser (seeds: valid and hostile files from
# tests/helpers/hf_model.py).
#   fuzz/run.sh [SECONDS=60]
# Exits non-zero on a crash, leak, sanitizer report, timeout or an allocation over 256 MiB (the
# inputs are at most 128 KiB, so any such allocation means a count was not bounded by the file
# size); the reproducer is written to build-fuzz/crash-* for `build-fuzz/fuzz/fuzz_gguf FILE`.
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${EDGELLM_SHARED:-$root/../shared}
build=${EDGELLM_FUZZ_BUILD:-$root/build-fuzz}
command -v clang >/dev/null || { echo "fuzz: clang is needed (scripts/install-deps.sh --test)" >&2; exit 1; }
CC=clang cmake -S "$root" -B "$build" -DEDGELLM_FUZZ=ON -DEDGELLM_BUILD_TOOLS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELLM_SHARED_DIR="$shared" >/dev/null
cmake --build "$build" --target fuzz_gguf fuzz_safetensors -j2 >/dev/null
# Seeds live under the build tree only; the shared files are never copied into the project.
corpus="$build/corpus"
rm -rf "$corpus"
python3 "$root/fuzz/make_seeds.py" "$corpus" "$shared"/models/*.gguf
log="$build/fuzz.log"
status=0
"$build/fuzz/fuzz_gguf" "$corpus" -dict="$root/fuzz/gguf.dict" -max_total_time="$seconds" \
  -max_len=131072 -timeout=10 -malloc_limit_mb=256 -rss_limit_mb=1024 \
  -print_final_stats=1 -artifact_prefix="$build/" >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  # The sanitizer or libFuzzer report, without the recommended-dictionary noise.
  grep -v '# Uses:' "$log" | tail -n 60
  echo "fuzz: FAILED (exit $status); full log in $log" >&2
  exit "$status"
fi
# Coverage reached and throughput.
grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
grep '^stat::' "$log"
echo "fuzz: no crash in ${seconds}s; full log in $log"

st_corpus="$build/st-corpus"
rm -rf "$st_corpus"
python3 "$root/tests/helpers/hf_model.py" seeds "$st_corpus"
st_log="$build/fuzz-safetensors.log"
"$build/fuzz/fuzz_safetensors" "$st_corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -malloc_limit_mb=256 -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$build/st-" \
  >"$st_log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  tail -n 60 "$st_log"
  echo "fuzz: safetensors FAILED (exit $status); full log in $st_log" >&2
  exit "$status"
fi
grep -E '^#[0-9]+[[:space:]]+DONE' "$st_log" | tail -n 1 || true
echo "fuzz: safetensors: no crash in ${seconds}s; full log in $st_log"

# The grammar compiler/matcher and the JSON Schema converter, from the project's own grammars
# and schemas (docs examples and test schemas).
cmake --build "$build" --target fuzz_grammar fuzz_schema -j2 >/dev/null
g_corpus="$build/grammar-corpus"
s_corpus="$build/schema-corpus"
rm -rf "$g_corpus" "$s_corpus" && mkdir -p "$g_corpus" "$s_corpus"
cp "$root"/tests/structured/*.json "$s_corpus/"
printf 'root ::= "a" | [b-d]+ (x | "") # c\nx ::= .{2,3} "\\u00e9"\n' >"$g_corpus/1"
printf 'root ::= "{" ws ( s ":" ws s )* "}"\ns ::= "\\"" [^"\\\\]* "\\""\nws ::= [ \\n]?\n' >"$g_corpus/2"
for target in grammar schema; do
  corpus_dir=$g_corpus
  [ "$target" = schema ] && corpus_dir=$s_corpus
  t_log="$build/fuzz-$target.log"
  "$build/fuzz/fuzz_$target" "$corpus_dir" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -malloc_limit_mb=512 -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$build/$target-" \
    >"$t_log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$t_log"
    echo "fuzz: $target FAILED (exit $status); full log in $t_log" >&2
    exit "$status"
  fi
  echo "fuzz: $target no crash in ${seconds}s; full log in $t_log"
done
