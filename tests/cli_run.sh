#!/usr/bin/env bash
# The edgellm command as a user runs it: convert the llama2.c checkpoint, generate greedily from
# each reference prompt (from the converted file and from the file another runtime wrote), read
# `info`, and get one-line errors with a non-zero exit for every kind of wrong usage.
set -uo pipefail
fail=0
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/cli_run"
rm -rf "$tmp" && mkdir -p "$tmp"
export EDGELLM_HOME="$tmp/home" # model names resolve through a store of our own
converted="$tmp/aidreams.gguf"
"$EDGELLM" convert --from llama2c "$SHARED/models/aidreams260K.bin" \
  --tokenizer "$SHARED/models/aidreams-tok512.bin" -o "$converted" 2>"$tmp/convert.err"
check "convert llama2c checkpoint" $?

for model in "$converted" "$SHARED/models/aidreams260K-f32.gguf"; do
  n=0
  while IFS=$'\t' read -r prompt ids cont text; do
    [[ "$prompt" == \#* ]] && continue
    want=$(printf '%b' "${text//\\n/\\n}")
    got=$("$EDGELLM" run -m "$model" -p "$prompt" -n 48 --temp 0 -t 2 2>"$tmp/run.err")
    rc=$?
    [[ $rc -eq 0 && "$got" == "$want" ]]
    ok=$?
    check "greedy '$prompt' on ${model##*/}" $ok
    n=$((n + 1))
  done < "$SHARED/testdata/aidreams/greedy.tsv"
  [[ $n -eq 7 ]]; check "7 prompts on ${model##*/}" $?
done
grep -q "prefill" "$tmp/run.err" && grep -q "time to first token" "$tmp/run.err" &&
  grep -q "decode" "$tmp/run.err" && grep -q "peak memory" "$tmp/run.err" &&
  grep -q "load time" "$tmp/run.err"
check "timing summary on stderr" $?

# Same seed, same text; threads do not change greedy output.
a=$("$EDGELLM" run -m "$converted" -p "The machine" -n 30 --seed 5 -t 1 2>/dev/null)
b=$("$EDGELLM" run -m "$converted" -p "The machine" -n 30 --seed 5 -t 2 2>/dev/null)
[[ "$a" == "$b" && -n "$a" ]]; check "seeded sampling reproducible across thread counts" $?
out=$("$EDGELLM" run -m "$converted" -p "The machine" -n 48 --temp 0 --stop "probability" 2>/dev/null)
[[ "$out" != *probability* && -n "$out" ]]; check "stop string" $?

info=$("$EDGELLM" info "$converted" --ctx 64)
check "info runs" $?
for fact in "architecture:   llama" "embedding 64, layers 4, feed-forward 172" \
            "heads 4, KV heads 4, head size 16" "512 tokens, BOS 1, EOS 2" \
            "blk.0.ffn_down.weight" "memory at context 64" "tokenizer.ggml.model"; do
  grep -qF "$fact" <<<"$info"; check "info shows '$fact'" $?
done
# Each --kv-type is named as itself in the memory line (q8_0 was printed as F32).
for kv in f16:F16 f32:F32 q8_0:Q8_0; do
  kvinfo=$("$EDGELLM" info "$converted" --ctx 64 --kv-type "${kv%%:*}")
  grep -qF "(${kv##*:} KV cache)" <<<"$kvinfo"
  check "info names the ${kv%%:*} KV cache" $?
done

# synth: the requested shapes, the donor's vocabulary, loadable and runnable.
"$EDGELLM" synth --dims 64,2,4,2,128 --vocab "$SHARED/models/aidreams260K-f32.gguf" --type q4_0 \
  -o "$tmp/synth.gguf" 2>/dev/null
check "synth custom dims" $?
sinfo=$("$EDGELLM" info "$tmp/synth.gguf")
grep -qF "embedding 64, layers 2, feed-forward 128" <<<"$sinfo" && grep -qF "heads 4, KV heads 2" <<<"$sinfo" &&
  grep -qF "512 tokens" <<<"$sinfo" && grep -qE "blk.1.ffn_down.weight +Q4_0 +128 x 64" <<<"$sinfo"
check "synth model has the requested shapes" $?
out=$("$EDGELLM" run -m "$tmp/synth.gguf" -p "I dreamed" -n 8 --temp 0 2>/dev/null)
check "synth model runs" $?
a=$("$EDGELLM" synth --dims 64,1,4,2,64 --vocab "$SHARED/models/aidreams260K-f32.gguf" -o "$tmp/s1.gguf" --seed 7 2>/dev/null && md5sum <"$tmp/s1.gguf")
b=$("$EDGELLM" synth --dims 64,1,4,2,64 --vocab "$SHARED/models/aidreams260K-f32.gguf" -o "$tmp/s2.gguf" --seed 7 2>/dev/null && md5sum <"$tmp/s2.gguf")
[[ "$a" == "$b" ]]; check "synth is reproducible for a seed" $?

# Grouped-query attention with head size 64 (the grouped AVX-512 attention kernel where the CPU
# has it) and Q4_0 tiles: the logits of a 55-token evaluation do not depend on the thread count.
"$EDGELLM" synth --dims 512,2,8,2,256 --vocab "$SHARED/models/aidreams260K-f32.gguf" --type q4_0 \
  -o "$tmp/gqa.gguf" --seed 3 2>/dev/null
for t in 1 2 3; do
  "$EDGELLM" eval -m "$tmp/gqa.gguf" --ids "$SHARED/testdata/aidreams/logits-ids.txt" -t $t \
    --save-logits "$tmp/gqa-$t.bin" >/dev/null 2>&1
done
cmp -s "$tmp/gqa-1.bin" "$tmp/gqa-2.bin" && cmp -s "$tmp/gqa-1.bin" "$tmp/gqa-3.bin" &&
  [[ $(stat -c %s "$tmp/gqa-1.bin") -eq $((55 * 512 * 4)) ]]
check "GQA model: identical logits for 1, 2 and 3 threads" $?

# bench: the standard record as JSON with every field, and efficiencies in (0, 1].
"$EDGELLM" bench -m "$converted" -p 16 -n 8 -r 1 -t 1 --json >"$tmp/bench.json" 2>/dev/null
check "bench --json runs" $?
python3 - "$tmp/bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for k in ["runtime", "model", "quantization", "device", "model_load_time_s", "model_size_gb",
          "memory_usage_gb", "prefill_tok_per_s", "decode_tok_per_s", "ttft_ms", "power_draw_w",
          "battery_impact", "memory_bandwidth_gbs", "fma_peak_gflops", "decode_efficiency",
          "prefill_efficiency"]:
    assert k in r, k
assert r["device"]["kernels"] and r["device"]["cores_used"] == 1
assert r["prefill_tok_per_s"] > 0 and r["decode_tok_per_s"] > 0 and r["ttft_ms"] > 0
assert r["memory_bandwidth_gbs"] > 0 and r["fma_peak_gflops"] > 0
assert 0 < r["decode_efficiency"] and 0 < r["prefill_efficiency"]
assert r["power_draw_w"] is not None or r["power_unavailable_reason"]
PY
check "bench record has every field" $?

# bench -r 3: the bandwidth measured before and after each round, each round's decode judged
# against the mean of its two; the measuring process's buffer (512 MiB) is not the benchmark's
# memory. The prefill work counts the head once per prompt (its last token's logits), so on this
# model (4 layers of 64, feed-forward 172, 4 heads of 16, vocabulary 512, separate head) a 16-token
# prefill is 2 x the layers' weights + 2 x the head / 16 + the attention at the mean depth.
"$EDGELLM" bench -m "$converted" -p 16 -n 8 -r 3 -t 1 --json >"$tmp/rounds.json" 2>/dev/null
check "bench -r 3 --json runs" $?
python3 - "$tmp/rounds.json" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
assert r["memory_bandwidth_interleaved"] is True, r
rounds = r["rounds"]
assert len(rounds) == 3, rounds
for x in rounds:
    e = r["decode_bytes_per_token"] * x["decode_tok_per_s"] / (x["memory_bandwidth_gbs"] * 1e9)
    assert abs(e - x["decode_efficiency"]) <= 2e-3 * e, (e, x)
med = statistics.median(x["decode_efficiency"] for x in rounds)
assert abs(r["decode_efficiency"] - med) <= 2e-3 * med, (r["decode_efficiency"], med)
bw = statistics.median(x["memory_bandwidth_gbs"] for x in rounds)
assert abs(r["memory_bandwidth_gbs"] - bw) <= 0.006 + 1e-3 * bw, (r["memory_bandwidth_gbs"], bw)
assert r["memory_usage_gb"] < 0.25, r["memory_usage_gb"]
layers, embd, ff, heads, head_dim, vocab, prompt = 4, 64, 172, 4, 16, 512, 16
layer_weights = 4 * embd * embd + 3 * embd * ff
flops = 2 * layers * layer_weights + 2 * embd * vocab / prompt + 4 * layers * heads * head_dim * prompt / 2
assert abs(r["prefill_flops_per_token"] - flops) < 1, (r["prefill_flops_per_token"], flops)
PY
check "bench: bandwidth around every round, the head once per prompt" $?

# bench --profile: per-operation times for prefill and decode that add up to each phase.
"$EDGELLM" bench -m "$converted" -p 16 -n 8 -r 1 -t 2 --json --profile >"$tmp/prof.json" 2>/dev/null
check "bench --profile runs" $?
python3 - "$tmp/prof.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for phase, tokens in (("prefill", 16), ("decode", 8)):
    p = r["profile"][phase]
    ops = p["operations"]
    assert p["tokens"] == tokens, p
    for k in ("attention", "norm", "rope", "sampling", "other"):
        assert k in ops, k
    assert any(k.startswith("matmul ") for k in ops), ops
    assert all(v["seconds"] >= 0 for v in ops.values())
    assert abs(sum(v["seconds"] for v in ops.values()) - p["seconds"]) < 1e-4, p
PY
check "bench --profile has every operation" $?
"$EDGELLM" bench -m "$converted" -p 16 -n 8 -r 1 -t 1 --profile 2>/dev/null | grep -q "^  matmul "
check "bench --profile prints the table" $?

# bench --ctx-curve: decode speed at every depth the model's context holds; a context too short
# for two points is a usage error that says so. (F32 weights: the record then measures only the
# float FMA peak, whose run is shorter.)
"$EDGELLM" synth --dims 64,1,4,2,64 --vocab "$SHARED/models/aidreams260K-f32.gguf" --ctx 4200 \
  --type f32 -o "$tmp/long.gguf" 2>/dev/null &&
  "$EDGELLM" bench -m "$tmp/long.gguf" -p 8 -n 4 -r 1 -t 2 --json --ctx-curve >"$tmp/curve.json" 2>/dev/null
check "bench --ctx-curve runs" $?
python3 - "$tmp/curve.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["ctx_curve"]
assert [p["depth"] for p in c["points"]] == [128, 512, 1024, 2048, 4096], c
assert all(p["decode_tok_per_s"] > 0 for p in c["points"]) and c["generated_tokens"] == 4, c
assert abs(c["loss_deepest_vs_shallowest"] -
           (1 - c["points"][-1]["decode_tok_per_s"] / c["points"][0]["decode_tok_per_s"])) < 2e-3, c
PY
check "bench --ctx-curve record has every depth" $?
"$EDGELLM" synth --dims 64,1,4,2,64 --vocab "$SHARED/models/aidreams260K-f32.gguf" --ctx 256 \
  -o "$tmp/short.gguf" 2>/dev/null
err=$("$EDGELLM" bench -m "$tmp/short.gguf" -p 8 -n 8 -r 1 --ctx-curve 2>&1 >/dev/null)
[[ $? -eq 2 ]] && grep -q "needs room for 512 + 8 tokens" <<<"$err"
check "bench --ctx-curve on a short context is a usage error" $?

# eval: the F32 model against the reference runtime's logits: KL ~ 0 and full top-1 agreement;
# saved logits compared with themselves: KL exactly 0.
ids="$SHARED/testdata/aidreams/logits-ids.txt"
ev=$("$EDGELLM" eval -m "$SHARED/models/aidreams260K-f32.gguf" --ids "$ids" \
  --kl-base "$SHARED/testdata/aidreams/logits-f32.bin" --save-logits "$tmp/logits.bin")
check "eval runs" $?
grep -qF "top-1 agreement:   100.00% (55 of 55" <<<"$ev"; check "eval top-1 agreement 100%" $?
kl=$(sed -n 's/^KL divergence: *mean \([^,]*\),.*/\1/p' <<<"$ev")
python3 -c "import sys; sys.exit(0 if 0 <= float('$kl') < 1e-6 else 1)"; check "eval KL ~ 0 ($kl)" $?
[[ $(stat -c %s "$tmp/logits.bin") -eq $((55 * 512 * 4)) ]]; check "saved logits size" $?
"$EDGELLM" eval -m "$SHARED/models/aidreams260K-f32.gguf" --ids "$ids" --kl-base "$tmp/logits.bin" |
  grep -qF "mean 0, p99 0"
check "eval KL of identical logits is 0" $?

# quantize: per-tensor choices, the F16 fallback for ffn_down (172-value rows), quality.
for q in q8_0 q4_0; do
  "$EDGELLM" quantize "$SHARED/models/aidreams260K-f32.gguf" "$tmp/aid-$q.gguf" $q 2>"$tmp/quant.err"
  check "quantize to $q" $?
  [[ $(grep -c "ffn_down.weight: rows do not split into ${q^^} blocks; stored as F16" "$tmp/quant.err") -eq 4 ]]
  check "quantize $q says which tensors fell back" $?
  qinfo=$("$EDGELLM" info "$tmp/aid-$q.gguf")
  grep -qE "blk.0.attn_q.weight +${q^^} " <<<"$qinfo" && grep -qE "blk.0.ffn_down.weight +F16 " <<<"$qinfo" &&
    grep -qE "blk.0.attn_norm.weight +F32 " <<<"$qinfo" && grep -qE "output.weight +Q8_0 " <<<"$qinfo"
  check "quantize $q per-tensor types" $?
  ev=$("$EDGELLM" eval -m "$tmp/aid-$q.gguf" --ids "$ids" --kl-base "$SHARED/testdata/aidreams/logits-f32.bin")
  kl=$(sed -n 's/^KL divergence: *mean \([^,]*\),.*/\1/p' <<<"$ev")
  limit=$([[ $q == q8_0 ]] && echo 1e-3 || echo 0.05)
  python3 -c "import sys; sys.exit(0 if 0 <= float('$kl') < $limit else 1)"
  check "quantized $q stays close to F32 (KL $kl < $limit)" $?
done

# Wrong usage: one line on stderr, non-zero exit, never a crash (exit >= 128).
expect_error() { # expect_error WANT-EXIT PATTERN ARGS...
  local want=$1 pattern=$2; shift 2
  "$EDGELLM" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  local lines; lines=$(wc -l <"$tmp/err")
  [[ $rc -eq $want && $lines -eq 1 ]] && grep -qiE "$pattern" "$tmp/err"
  local ok=$?
  check "error for: $* -> exit $rc: $(head -c 150 "$tmp/err")" $ok
}
expect_error 2 "unknown command" frobnicate
expect_error 2 "no model" run -p hi
expect_error 2 "no prompt" run -m "$converted"
expect_error 2 "unknown option" run -m "$converted" -p hi --bogus
expect_error 2 "needs a value" run -m "$converted" -p
expect_error 2 "integer" run -m "$converted" -p hi -n abc
expect_error 2 "number" run -m "$converted" -p hi --temp -1
expect_error 2 "f16, f32 or q8_0" run -m "$converted" -p hi --kv-type q4
# More threads than the pool takes is a usage error where it is typed (bench and train said so at
# run time with exit 1).
expect_error 2 "t expects an integer from 1 to 256, got '5000'" bench -m "$converted" -p 8 -n 8 -r 1 -t 5000
expect_error 2 "t expects an integer from 1 to 256, got '1000'" train -o "$tmp/t.gguf" \
  --init "$converted" -f "$SOURCE_DIR/README.md" --steps 1 -t 1000
expect_error 1 "missing.gguf: no such model file" run -m "$tmp/missing.gguf" -p hi
expect_error 1 "not a GGUF" run -m "$SHARED/models/aidreams260K.bin" -p hi
expect_error 1 "prompt is .* tokens .* context" run -m "$converted" --ctx 8 -p "$(printf 'word %.0s' {1..40})"
expect_error 1 "longer than the model" run -m "$converted" --ctx 4096 -p hi
expect_error 1 "no-such-model is neither|not a file" run -m no-such-model -p hi
expect_error 1 "cannot read prompt file" run -m "$converted" -f "$tmp/no-such-prompt.txt"
expect_error 2 "no model" info
head -c 5000 "$converted" > "$tmp/truncated.gguf"
expect_error 1 "truncated" info "$tmp/truncated.gguf"
expect_error 1 "positions x" eval -m "$converted" --ids "$ids" --kl-base "$SHARED/models/aidreams-tok512.bin"
printf '1 2 x 4' > "$tmp/bad-ids.txt"
expect_error 1 "'x' at position 2 is not a token id \\(ids are 0..511\\)" eval -m "$converted" --ids "$tmp/bad-ids.txt"
# An id beyond 32 bits was reported as -1.
printf '1 2 99999999999 4' > "$tmp/big-ids.txt"
expect_error 1 "'99999999999' at position 2 is outside the vocabulary \\(ids are 0..511\\)" \
  eval -m "$converted" --ids "$tmp/big-ids.txt"
# A prompt file that cannot fit the context is refused before it is read whole (a 2 GB file was
# read and tokenized, minutes and gigabytes, before "the prompt is N tokens"), and an endless
# one ends (memory bounded here so that a build that reads it whole fails instead of swapping;
# not under AddressSanitizer, whose shadow memory alone is a reservation larger than any bound).
head -c 200000 /dev/zero | tr '\0' 'a' > "$tmp/long-prompt.txt"
expect_error 1 "prompt file '.*long-prompt.txt' is longer than [0-9]+ bytes \\(200000 bytes\\): more than the 64 tokens the context holds" \
  run -m "$converted" --ctx 64 -f "$tmp/long-prompt.txt"
memory_bound=2000000
[[ -n "${ASAN_OPTIONS:-}" ]] && memory_bound=unlimited
(ulimit -v $memory_bound; timeout 60 "$EDGELLM" run -m "$converted" --ctx 64 -f - </dev/zero >"$tmp/out" 2>"$tmp/err")
rc=$?
[[ $rc -eq 1 ]] && grep -q "prompt file '-' is longer than [0-9]* bytes: more than the 64 tokens" "$tmp/err"
ok=$?
check "run -f - from an endless input: refused ($rc: $(head -c 150 "$tmp/err"))" $ok
printf 'The machine' > "$tmp/prompt.txt"
[[ "$("$EDGELLM" run -m "$converted" -f "$tmp/prompt.txt" -n 8 --temp 0 2>/dev/null)" == \
   "$("$EDGELLM" run -m "$converted" -p 'The machine' -n 8 --temp 0 2>/dev/null)" ]]
check "run -f gives what run -p does" $?
# tokenize --jsonl named every bad line "not a JSON string", a lone surrogate included.
printf '"ok"\n"\\ud800 x"\n' > "$tmp/surrogate.jsonl"
expect_error 1 "line 2 column [0-9]+: invalid Unicode .*lone UTF-16 surrogate" \
  tokenize -m "$converted" --jsonl "$tmp/surrogate.jsonl"
printf '"ok"\n{"a": 1}\n' > "$tmp/object.jsonl"
expect_error 1 "line 2 is JSON but not a string" tokenize -m "$converted" --jsonl "$tmp/object.jsonl"
expect_error 2 "exactly one of" eval -m "$converted"
expect_error 2 "unknown type" quantize "$converted" "$tmp/q.gguf" q9_9
expect_error 1 "not supported yet" quantize "$converted" "$tmp/q.gguf" iq2_xxs
expect_error 2 "is the same file as the input model" quantize "$converted" "$converted" q8_0
expect_error 2 "llama2c" convert --from pytorch x --tokenizer y -o z
expect_error 1 "not a llama2.c checkpoint|truncated" convert --from llama2c "$SHARED/models/aidreams-tok512.bin" --tokenizer "$SHARED/models/aidreams-tok512.bin" -o "$tmp/x.gguf"

# An architecture the build does not support: rewrite general.architecture's value in a copy
# ("llama" -> "llamb" keeps every length and offset intact).
sed 's/\x05\x00\x00\x00\x00\x00\x00\x00llama/\x05\x00\x00\x00\x00\x00\x00\x00llamb/' "$converted" > "$tmp/llamb.gguf"
expect_error 1 "architecture 'llamb' is not supported" run -m "$tmp/llamb.gguf" -p hi

exit $fail
