#!/usr/bin/env bash
# Builds the GGUF parser fuzz target with clang's libFuzzer (ASan + UBSan) in its own build
# directory and runs it for a bounded time from seeds derived from the shared models; then the
# same for the safetensors header parser (seeds: valid and hostile files from
# tests/helpers/hf_model.py); then the sampler (random logits with NaN/inf and random parameters,
# a quarter of the time), the server's request-to-sampling path (JSON bodies against a model
# with partly non-finite random weights, half of the time), the grammar compiler and the JSON
# Schema converter (three eighths of the time each), PII redaction/restoration (a quarter) and
# the gateway's streamed restoration (a quarter: built streams checked against the whole-answer
# restoration, and hostile JSON events), and the public API driven as a careless application
# drives it (half of the time: fuzz/fuzz_api.c says how the input becomes calls).
#   fuzz/run.sh [SECONDS=60]
# Exits non-zero on a crash, leak, sanitizer report (UBSan's too: the targets abort on it),
# timeout or an allocation over 256 MiB (the inputs are at most 128 KiB, so any such allocation
# means a count was not bounded by the file size); the reproducer is written to build-fuzz/crash-*
# for `build-fuzz/fuzz/fuzz_gguf FILE`.
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${EDGELLM_SHARED:-$root/../shared}
build=${EDGELLM_FUZZ_BUILD:-$root/build-fuzz}
command -v clang >/dev/null || { echo "fuzz: clang is needed (scripts/install-deps.sh --test)" >&2; exit 1; }
CC=clang cmake -S "$root" -B "$build" -DEDGELLM_FUZZ=ON -DEDGELLM_BUILD_TOOLS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELLM_SHARED_DIR="$shared" >/dev/null
cmake --build "$build" --target fuzz_gguf fuzz_safetensors fuzz_sampler fuzz_request fuzz_api \
  -j2 >/dev/null
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

# run_target NAME SECONDS CORPUS [libFuzzer options]: a bounded run; exits on any failure.
run_target() {
  local name=$1 secs=$2 dir=$3
  shift 3
  local tlog="$build/fuzz-$name.log"
  "$build/fuzz/fuzz_$name" "$dir" -max_total_time="$secs" -timeout=10 -malloc_limit_mb=256 \
    -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$build/$name-" "$@" >"$tlog" 2>&1 ||
    status=$?
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$tlog"
    echo "fuzz: $name FAILED (exit $status); full log in $tlog" >&2
    exit "$status"
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE' "$tlog" | tail -n 1 || true
  echo "fuzz: $name: no crash in ${secs}s; full log in $tlog"
}

# The grammar compiler/matcher and the JSON Schema converter, from the project's own grammars
# and schemas (docs examples and test schemas).
cmake --build "$build" --target fuzz_grammar fuzz_schema fuzz_pii fuzz_stream_restore -j2 \
  >/dev/null
g_corpus="$build/grammar-corpus"
s_corpus="$build/schema-corpus"
rm -rf "$g_corpus" "$s_corpus" && mkdir -p "$g_corpus" "$s_corpus"
cp "$root"/tests/structured/*.json "$s_corpus/"
printf 'root ::= "a" | [b-d]+ (x | "") # c\nx ::= .{2,3} "\\u00e9"\n' >"$g_corpus/1"
printf 'root ::= "{" ws ( s ":" ws s )* "}"\ns ::= "\\"" [^"\\\\]* "\\""\nws ::= [ \\n]?\n' >"$g_corpus/2"
# An eighth each went to the streamed restoration (below), keeping the total.
run_target grammar $((seconds * 3 / 8 > 10 ? seconds * 3 / 8 : 10)) "$g_corpus" -max_len=4096 \
  -malloc_limit_mb=512
run_target schema $((seconds * 3 / 8 > 10 ? seconds * 3 / 8 : 10)) "$s_corpus" -max_len=4096 \
  -malloc_limit_mb=512

sampler_corpus="$build/sampler-corpus"
rm -rf "$sampler_corpus" && mkdir -p "$sampler_corpus"
# Seeds: default-like parameters over ordinary logits, and the same with NaN and inf among them.
python3 - "$sampler_corpus" <<'PY'
import os, struct, sys
params = struct.pack("<HBfifffiffQ", 40, 8, 0.8, 40, 0.95, 0.05, 1.1, 64, 0.0, 0.0, 7)
plain = struct.pack("<64f", *[(i * 37 % 64) / 8 for i in range(64)])
odd = struct.pack("<64f", *[float("nan") if i % 9 == 0 else float("inf") if i == 5 else -i
                            for i in range(64)])
for name, body in (("plain", plain), ("nonfinite", odd)):
    open(os.path.join(sys.argv[1], name), "wb").write(params + body)
PY
run_target sampler $((seconds / 4 > 10 ? seconds / 4 : 10)) "$sampler_corpus" -max_len=4096

request_corpus="$build/request-corpus"
rm -rf "$request_corpus" && mkdir -p "$request_corpus"
# Seeds: the first byte picks chat (odd) or completions (even), the rest is the JSON body.
printf '%s' '1{"messages":[{"role":"user","content":"The machine dreams"}],"max_tokens":4,"logprobs":true,"top_logprobs":2}' >"$request_corpus/chat"
printf '%s' '0{"prompt":"Once upon a time","max_tokens":4,"temperature":0.7,"top_p":0.9,"logprobs":2,"seed":3}' >"$request_corpus/completion"
printf '%s' '0{"prompt":[1,300,200,5],"max_tokens":3,"frequency_penalty":2,"presence_penalty":-2}' >"$request_corpus/ids"
run_target request $((seconds / 2 > 20 ? seconds / 2 : 20)) "$request_corpus" -max_len=2048

# PII redaction and restoration: any bytes must come back unchanged through redact -> restore.
pii_corpus="$build/pii-corpus"
rm -rf "$pii_corpus" && mkdir -p "$pii_corpus"
printf '%s' 'Mail jane.doe@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111.' >"$pii_corpus/1"
printf '%s' 'IBAN GB82 WEST 1234 5698 7654 32, SSN 123-45-6789, key sk-abc123def456ghi789jkl012' >"$pii_corpus/2"
run_target pii $((seconds / 4 > 10 ? seconds / 4 : 10)) "$pii_corpus" -max_len=8192

# The gateway's streamed restoration (fuzz/fuzz_stream_restore.c says how the input is read).
# Seeds: a built chat stream, a built completions stream, and hostile-mode events with a
# placeholder split across chunks and tool calls.
sr_corpus="$build/stream-restore-corpus"
rm -rf "$sr_corpus" && mkdir -p "$sr_corpus"
printf '\000\005\000\003\020\000\010\062\013\007\003\004\005\006\001\042\006\004\020\011\000\001\002\003' \
  >"$sr_corpus/built-chat"
printf '\004\003\001\012\000\010\002\007\005\003\001\004\011' >"$sr_corpus/built-completions"
{
  printf '\003{"choices":[{"index":0,"delta":{"content":"mail [EMA"}}]}\n'
  printf '{"choices":[{"index":0,"delta":{"content":"IL_1] now","tool_calls":[{"index":0,'
  printf '"function":{"name":"f","arguments":"{\\"to\\":\\"[PH"}}]}}]}\n'
  printf '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
  printf '"ONE_1]\\"}"}}]},"finish_reason":"stop"}]}\n{"choices":[],"usage":{"total_tokens":3}}\n'
} >"$sr_corpus/raw-chat"
run_target stream_restore $((seconds / 4 > 10 ? seconds / 4 : 10)) "$sr_corpus" -max_len=4096

# The public API as call sequences on two contexts of the shared aidreams model. Seeds: a greedy
# generation begun from 5 ids, pulled 3 tokens at a time and finished; the same with a cancel
# between its slices and an eval refused as BUSY. The inputs are structured from their first
# byte, so libFuzzer's slow growth of the input length is switched off.
api_corpus="$build/api-corpus"
rm -rf "$api_corpus" && mkdir -p "$api_corpus"
printf '\001\000\040\001\000\036\000\035\000\001\000\000\050\000\000\051\000\000\052\000\000\053\000\004\033\004\033\006\001' \
  >"$api_corpus/begin-next-finish"
printf '\001\000\040\001\000\036\000\035\000\001\000\000\050\000\000\051\000\000\052\000\000\053\000\004\033\007\031\000\001\000\000\014\004\033\006\001' \
  >"$api_corpus/cancel-between"
# Slot 0 drafting with slot 1's context: its on_token frees the draft at token 6; slot 1's
# context freed between two slices; the model's handle freed between two slices.
printf '\001\020\040\001\000\033\003\036\006\035\000\001\000\000\050\000\000\051\000\000\052\000\000\053\000\004\033\004\033\004\033\006\001' \
  >"$api_corpus/draft-freed-by-callback"
printf '\001\020\040\001\000\033\003\000\000\035\000\001\000\000\050\000\000\051\000\000\052\000\000\053\000\004\033\316\004\033\006\001' \
  >"$api_corpus/draft-freed-between"
printf '\001\000\040\001\000\036\000\035\000\001\000\000\050\000\000\051\000\000\052\000\000\053\000\004\033\156\004\033\006\001' \
  >"$api_corpus/model-freed"
run_target api $((seconds / 2 > 20 ? seconds / 2 : 20)) "$api_corpus" -max_len=1024 -len_control=0
