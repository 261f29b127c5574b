#!/bin/bash
# Thread counts on every command that takes one: 0 and negative counts are usage errors (exit 2,
# one line naming the option); one thread runs and gives the bytes three threads give (run's
# greedy text, eval's figures, imatrix files, GPTQ-quantized models, pruned models).
set -u
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/attack_threads"
rm -rf "$tmp" && mkdir -p "$tmp"
src="$SHARED/models/aidreams260K-f32.gguf"
sample_text "$src" 1 3 >"$tmp/calib.txt"

# usage NAME CMD...: exit 2 and one line naming the thread option
usage() {
  local name=$1
  shift
  "$@" >/dev/null 2>"$tmp/err"
  local rc=$?
  [[ $rc -eq 2 ]] && grep -Eq "(-t|--threads) expects an integer from 1" "$tmp/err" &&
    [[ $(wc -l <"$tmp/err") -eq 1 ]]
  local st=$?
  check "$name: exit $rc, '$(head -c 200 "$tmp/err")'" $st
}
for t in 0 -1; do
  usage "run -t $t" "$EDGELLM" run -m "$src" -p hi -n 2 -t "$t"
  usage "chat -t $t" "$EDGELLM" chat -m "$src" -n 2 -t "$t"
  usage "bench -t $t" "$EDGELLM" bench -m "$src" -p 8 -n 4 -r 1 -t "$t"
  usage "eval -t $t" "$EDGELLM" eval -m "$src" -f "$tmp/calib.txt" --ctx 64 -t "$t"
  usage "imatrix -t $t" "$EDGELLM" imatrix -m "$src" -f "$tmp/calib.txt" -o "$tmp/x.gguf" -t "$t"
  usage "quantize --gptq -t $t" "$EDGELLM" quantize "$src" "$tmp/x.gguf" q4_0 --gptq \
    --calib "$tmp/calib.txt" -t "$t"
  usage "prune -t $t" "$EDGELLM" prune -m "$src" -o "$tmp/x.gguf" --ffn 0.5 -f "$tmp/calib.txt" -t "$t"
  usage "plan -t $t" "$EDGELLM" plan -m "$src" --ctx 64 -t "$t"
  usage "train -t $t" "$EDGELLM" train -o "$tmp/x.gguf" --init "$src" -f "$tmp/calib.txt" --steps 1 -t "$t"
  usage "serve --threads $t" "$EDGELLM" serve -m "$src" --port 0 --threads "$t"
done

# One thread and three: the same bytes.
for t in 1 3; do
  "$EDGELLM" run -m "$src" -p "I dreamed" -n 24 --temp 0 -t "$t" >"$tmp/run$t.txt" 2>/dev/null &&
    "$EDGELLM" eval -m "$src" -f "$tmp/calib.txt" --ctx 64 -t "$t" 2>/dev/null >"$tmp/eval$t.txt" &&
    "$EDGELLM" imatrix -m "$src" -f "$tmp/calib.txt" -o "$tmp/im$t.gguf" --ctx 64 -t "$t" 2>/dev/null &&
    "$EDGELLM" quantize "$src" "$tmp/gptq$t.gguf" q4_0 --gptq --calib "$tmp/calib.txt" --ctx 64 \
      -t "$t" 2>/dev/null &&
    "$EDGELLM" prune -m "$src" -o "$tmp/prune$t.gguf" --ffn 0.5 -f "$tmp/calib.txt" -t "$t" 2>/dev/null &&
    grep -q "^perplexity: " "$tmp/eval$t.txt"
  check "run, eval, imatrix, quantize --gptq, prune at -t $t" $?
done
for f in run1.txt:run3.txt eval1.txt:eval3.txt im1.gguf:im3.gguf gptq1.gguf:gptq3.gguf \
  prune1.gguf:prune3.gguf; do
  [[ -s "$tmp/${f%:*}" ]] && cmp -s "$tmp/${f%:*}" "$tmp/${f#*:}"
  check "${f%:*} and ${f#*:} are the same bytes" $?
done

# bench at one thread with one and two generated tokens (its warm-up decoded 4 tokens into a
# context sized for the requested ones).
for n in 1 2; do
  "$EDGELLM" bench -m "$src" -p 8 -n "$n" -r 1 -t 1 --json >"$tmp/bench.json" 2>"$tmp/err"
  rc=$?
  [[ $rc -eq 0 ]] && grep -q '"decode_tok_per_s"' "$tmp/bench.json"
  st=$?
  check "bench -p 8 -n $n -t 1: exit $rc $(tail -1 "$tmp/err")" $st
done

exit $fail
