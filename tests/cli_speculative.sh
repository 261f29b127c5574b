#!/usr/bin/env bash
# Speculative decoding from the command line: `run --draft` (a Q4_0 copy, the model itself) and
# `run --lookup` give the reference greedy text for every prompt, -v reports acceptance, `chat`
# keeps its replies, and a draft with another vocabulary or contradictory options is refused.
set -uo pipefail
fail=0
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/cli_speculative"
rm -rf "$tmp" && mkdir -p "$tmp"
export EDGELLM_HOME="$tmp/home"
model="$SHARED/models/aidreams260K-f32.gguf"
q4="$tmp/aidreams-q4_0.gguf"
"$EDGELLM" quantize "$model" "$q4" q4_0 2>"$tmp/quantize.err"
check "quantize the draft" $?

for opts in "--draft $q4" "--draft $model --draft-max 4" "--lookup 2" "--lookup 1 --draft-min 2"; do
  n=0
  while IFS=$'\t' read -r prompt ids cont text; do
    [[ "$prompt" == \#* ]] && continue
    want=$(printf '%b' "${text//\\n/\\n}")
    # shellcheck disable=SC2086
    got=$("$EDGELLM" run -m "$model" -p "$prompt" -n 48 --temp 0 -t 1 $opts 2>"$tmp/run.err")
    rc=$?
    [[ $rc -eq 0 && "$got" == "$want" ]]
    check "greedy '$prompt' with $opts" $?
    n=$((n + 1))
  done < "$SHARED/testdata/aidreams/greedy.tsv"
  [[ $n -eq 7 ]]; check "7 prompts with $opts" $?
done

# Constrained decoding with proposals: the draft proposes under the grammar, the model verifies
# with the mask at every position, and greedy output is the constrained output without proposals.
schemas="$(dirname "$0")/structured"
for schema in person list contact tree; do
  for prompt in "Once upon a time" "The robot"; do
    plain=$("$EDGELLM" run -m "$model" -p "$prompt" -n 80 --temp 0 -t 1 \
      --json-schema "$schemas/$schema.json" 2>"$tmp/plain.err")
    rc=$?
    for opts in "--draft $q4" "--lookup 1"; do
      # shellcheck disable=SC2086
      got=$("$EDGELLM" run -m "$model" -p "$prompt" -n 80 --temp 0 -t 1 -v \
        --json-schema "$schemas/$schema.json" $opts 2>"$tmp/run.err")
      [[ $rc -eq 0 && $? -eq 0 && "$got" == "$plain" && "$got" =~ ^[[{] ]] &&
        grep -Eq "^speculative: [0-9]+ of [1-9]" "$tmp/run.err"
      check "greedy --json-schema $schema '$prompt' with $opts" $?
    done
  done
done
# A 32000-token vocabulary: plain decoding computes each mask on a helper thread during the
# forward pass, speculative decoding masks in place; both give the same greedy text.
big="$SHARED/models/llama2-vocab-tiny-f16.gguf"
for schema in person tree; do
  plain=$("$EDGELLM" run -m "$big" -p "Once upon a time" -n 60 --temp 0 -t 1 \
    --json-schema "$schemas/$schema.json" 2>"$tmp/plain.err")
  rc=$?
  for opts in "--draft $big" "--lookup 1"; do
    # shellcheck disable=SC2086
    got=$("$EDGELLM" run -m "$big" -p "Once upon a time" -n 60 --temp 0 -t 1 \
      --json-schema "$schemas/$schema.json" $opts 2>"$tmp/run.err")
    [[ $rc -eq 0 && $? -eq 0 && "$got" == "$plain" && "$got" =~ ^[[{] ]]
    check "32000-token vocabulary: greedy --json-schema $schema with $opts" $?
  done
done
# Sampled under a grammar with a draft: the output is still valid for the schema.
for seed in 1 2 3; do
  "$EDGELLM" run -m "$model" -p "Once upon a time" -n -1 --temp 1 --top-k 0 --top-p 1 --min-p 0 \
    --seed "$seed" -t 1 --json-schema "$schemas/person.json" --draft "$q4" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [[ $rc -eq 0 ]] && python3 "$schemas/validate.py" "$schemas/person.json" "$tmp/out" >/dev/null
  check "sampled --json-schema person with --draft, seed $seed, validates (exit $rc)" $?
done

"$EDGELLM" run -m "$model" -p "Once upon a time" -n 40 --temp 0 -v --draft "$q4" >/dev/null \
  2>"$tmp/verbose.err"
pattern='^speculative: [0-9]+ of [1-9][0-9]* proposals accepted \([0-9.]+ %\), [0-9.]+ tokens per'
grep -Eq "$pattern pass" "$tmp/verbose.err"
check "run -v reports acceptance and tokens per pass" $?

plain=$(printf 'Hello there\nAnd then?\n' |
  "$EDGELLM" chat -m "$model" --temp 0 -n 20 --ctx 128 2>/dev/null)
drafted=$(printf 'Hello there\nAnd then?\n' |
  "$EDGELLM" chat -m "$model" --temp 0 -n 20 --ctx 128 --draft "$q4" -v 2>"$tmp/chat.err")
[[ "$plain" == "$drafted" ]] && grep -q "^\[chat\] speculative:" "$tmp/chat.err"
check "chat --draft: same replies, acceptance reported" $?

# bench: the speculative record; under forced acceptance 1 every proposal is taken.
"$EDGELLM" bench -m "$model" -p 8 -n 16 -r 1 -t 1 --draft "$q4" --force-acceptance 1 --json \
  >"$tmp/bench.json" 2>/dev/null
python3 - "$tmp/bench.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["speculative"]
assert s["forced_acceptance"] == 1.0 and s["proposed"] > 0, s
assert s["accepted"] == s["proposed"] and s["acceptance_rate"] == 1.0, s
assert s["tokens_per_pass"] > 1.5, s
assert s["decode_tok_per_s"] > 0 and s["plain_decode_tok_per_s"] > 0, s
EOF
check "bench --draft --force-acceptance 1 --json" $?

expect_error() { # expect_error NAME EXIT-CODE PATTERN ARGS...
  local name=$1 code=$2 pattern=$3
  shift 3
  "$EDGELLM" "$@" >/dev/null 2>"$tmp/err"
  local rc=$?
  [[ $rc -eq $code && $(wc -l <"$tmp/err") -eq 1 ]] && grep -q "$pattern" "$tmp/err"
  local matched=$?
  check "$name (exit $rc: $(head -c 160 "$tmp/err"))" $matched
}
expect_error "draft with another vocabulary" 1 "32000 tokens, the target 512" \
  run -m "$model" -p hi --draft "$SHARED/models/llama2-vocab-tiny-f16.gguf"
expect_error "missing draft file" 1 "draft model" run -m "$model" -p hi --draft "$tmp/none.gguf"
expect_error "draft and lookup together" 2 "not both" run -m "$model" -p hi --draft "$q4" --lookup 2
expect_error "draft-min above draft-max" 2 "must not exceed" \
  run -m "$model" -p hi --lookup 2 --draft-max 2 --draft-min 3
expect_error "draft-max 0" 2 "draft-max" run -m "$model" -p hi --lookup 2 --draft-max 0
expect_error "lookup not a number" 2 "lookup" run -m "$model" -p hi --lookup x
# (a chat format named: the model has none, and the warning would be a second line)
expect_error "chat draft with another vocabulary" 1 "32000 tokens" \
  chat -m "$model" --template-family chatml --draft "$SHARED/models/llama2-vocab-tiny-f16.gguf"
expect_error "bench forced acceptance out of range" 2 "force-acceptance" \
  bench -m "$model" --lookup 2 --force-acceptance 1.5
expect_error "bench forced acceptance without proposals" 2 "needs proposals" \
  bench -m "$model" --force-acceptance 0.5
exit $fail
