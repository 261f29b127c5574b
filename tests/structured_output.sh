#!/usr/bin/env bash
# Constrained decoding end to end with a model that writes poetry, not JSON (aidreams): under
# random sampling every output for a set of schemas parses and validates with Python's jsonschema
# (independent of edgellm's converter); --json gives a JSON object; greedy output under a grammar
# that admits everything equals unconstrained greedy output; bad grammars and schemas are refused
# before decoding with a one-line error naming the problem.
set -uo pipefail
fail=0
source "$(dirname "$0")/lib.sh"
here="$SOURCE_DIR/tests/structured"
tmp="$TEST_TMP/structured_output"
rm -rf "$tmp" && mkdir -p "$tmp"
model="$SHARED/models/aidreams260K-f32.gguf"

runs=0 valid=0
for schema in person shapes ident stamp list contact; do
  for seed in 1 2 3 4 5; do
    "$EDGELLM" run -m "$model" -p "Once upon a time" -n -1 --temp 1 --top-k 0 --top-p 1 \
      --min-p 0 --seed "$seed" -t 1 --json-schema "$here/$schema.json" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    runs=$((runs + 1))
    if [[ $rc -eq 0 ]] && grep -Eq "stop: (grammar complete|end of sequence)" "$tmp/err" &&
       python3 "$here/validate.py" "$here/$schema.json" "$tmp/out"; then
      valid=$((valid + 1))
    else
      echo "schema $schema seed $seed (exit $rc):" >&2
      cat "$tmp/out" "$tmp/err" >&2
    fi
  done
done
echo "schema validity: $valid of $runs sampled outputs"
[[ $valid -eq $runs && $runs -eq 30 ]]; check "every sampled output validates against its schema" $?

# Any JSON object: unbounded, so with this model's 128-token context a sampled one may be cut off
# by the context; those that complete must be objects.
completed=0
for seed in 1 2 3 4 5 6; do
  "$EDGELLM" run -m "$model" -p "Once upon a time" -n -1 --temp 1 --seed "$seed" -t 1 --json \
    >"$tmp/out" 2>"$tmp/err"
  grep -Eq "stop: (grammar complete|end of sequence)" "$tmp/err" || continue
  completed=$((completed + 1))
  python3 -c 'import json, sys; v = json.load(open(sys.argv[1])); sys.exit(not isinstance(v, dict))' \
    "$tmp/out"
  check "--json seed $seed gives a JSON object" $?
done
[[ $completed -ge 1 ]]; check "--json completes for at least 1 of 6 seeds ($completed)" $?

# A grammar that admits every text: greedy output must not change.
printf 'root ::= .*\n' >"$tmp/all.gbnf"
for prompt in "Once upon a time" "The stars" "I am"; do
  "$EDGELLM" run -m "$model" -p "$prompt" -n 60 --temp 0 -t 1 >"$tmp/free" 2>/dev/null
  "$EDGELLM" run -m "$model" -p "$prompt" -n 60 --temp 0 -t 1 --grammar-file "$tmp/all.gbnf" \
    >"$tmp/constrained" 2>/dev/null
  [[ -s "$tmp/free" ]] && cmp -s "$tmp/free" "$tmp/constrained"
  check "greedy '$prompt' unchanged under an all-admitting grammar" $?
done

# A grammar is followed exactly, and the run says when it is complete.
printf 'root ::= "The " ("cat" | "dog") " sat" [.!]\n' >"$tmp/small.gbnf"
out=$("$EDGELLM" run -m "$model" -p "Once" -n 40 --temp 1 --seed 7 -t 1 \
  --grammar-file "$tmp/small.gbnf" 2>"$tmp/err")
[[ "$out" =~ ^The\ (cat|dog)\ sat[.!]$ ]] && grep -q "stop: grammar complete" "$tmp/err"
check "small grammar followed to completion ('$out')" $?

# Refusals: exit 1, one line naming the problem, nothing generated.
expect_error() { # expect_error NAME PATTERN ARGS...
  local name=$1 pattern=$2
  shift 2
  "$EDGELLM" run -m "$model" -p "x" -n 10 "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [[ $rc -eq 1 && ! -s "$tmp/out" && $(wc -l <"$tmp/err") -eq 1 ]] && grep -q "$pattern" "$tmp/err"
  local ok=$?
  check "$name ($(cat "$tmp/err"))" $ok
}
printf 'root ::= "a" | undefined\n' >"$tmp/bad.gbnf"
expect_error "undefined rule" "rule 'undefined' is used but never defined" --grammar-file "$tmp/bad.gbnf"
printf 'root ::= root "a" | "b"\n' >"$tmp/left.gbnf"
expect_error "left recursion" "can reach itself" --grammar-file "$tmp/left.gbnf"
printf '{"type": "integer", "minimum": 3}' >"$tmp/min.json"
expect_error "unsupported keyword" "unsupported JSON Schema keyword 'minimum' at /" --json-schema "$tmp/min.json"
printf '{"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)"}}}' >"$tmp/look.json"
expect_error "unsupported pattern" "'pattern' uses a lookaround.* at /properties/a/pattern" --json-schema "$tmp/look.json"
printf '{"type": ' >"$tmp/broken.json"
expect_error "schema not JSON" "not valid JSON" --json-schema "$tmp/broken.json"
expect_error "missing schema file" "cannot read schema file" --json-schema "$tmp/none.json"
"$EDGELLM" run -m "$model" -p "x" --json --grammar-file "$tmp/all.gbnf" >/dev/null 2>"$tmp/err"
[[ $? -eq 2 ]] && grep -q "only one of" "$tmp/err"
check "two constraints are a usage error" $?

exit $fail
