#!/bin/bash
# edgellm prune on the shared aidreams model: fraction 0 is the identity (the same logits, bit for
# bit); a pruned model (fewer heads, FFN channels or layers, with per-layer counts in the file)
# computes the logits of the original with exactly those parts zeroed (prune --zeroed: same shapes,
# the attn_output / ffn_down columns of what is removed set to 0) while differing clearly from the
# original; and bad input gets one-line errors. eval keeps an F16 KV cache, which rounds the
# summation-order differences of the shorter rows (up to 1.5e-4 of the largest logit here);
# test_prune makes the same comparison with an F32 cache to 2e-6.
set -u
tmp="$TEST_TMP/prune"
rm -rf "$tmp" && mkdir -p "$tmp"
fail=0
check() { # check NAME STATUS
  if [[ $2 -eq 0 ]]; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
src="$SHARED/models/aidreams260K-f32.gguf"
for s in $(seq 1 6); do "$EDGELLM" run -m "$src" -p "" -n 120 --temp 1 --seed "$s" 2>/dev/null; echo; done >"$tmp/calib.txt"
for s in $(seq 101 103); do "$EDGELLM" run -m "$src" -p "" -n 120 --temp 1 --seed "$s" 2>/dev/null; echo; done >"$tmp/held.txt"
logits() { # logits MODEL OUT
  "$EDGELLM" eval -m "$1" -f "$tmp/held.txt" --ctx 128 --save-logits "$2" >/dev/null
}
# max |a - b| / max |a| over two saved logit files
rel_diff() {
  python3 -c "
import array, sys
a = array.array('f'); a.frombytes(open('$1', 'rb').read())
b = array.array('f'); b.frombytes(open('$2', 'rb').read())
assert len(a) == len(b) and len(a) > 0
print(max(abs(x - y) for x, y in zip(a, b)) / max(abs(x) for x in a))"
}
logits "$src" "$tmp/base.bin"

for mode in "--heads 0" "--ffn 0"; do
  "$EDGELLM" prune -m "$src" -o "$tmp/id.gguf" $mode -f "$tmp/calib.txt" 2>/dev/null
  logits "$tmp/id.gguf" "$tmp/id.bin" && cmp -s "$tmp/base.bin" "$tmp/id.bin"
  check "prune $mode: the same logits bit for bit" $?
done

pruned_matches_zeroed() { # pruned_matches_zeroed OPTIONS... (the layer lines expected on stderr)
  "$EDGELLM" prune -m "$src" -o "$tmp/p.gguf" "$@" -f "$tmp/calib.txt" 2>"$tmp/err"
  local rc=$?
  "$EDGELLM" prune -m "$src" -o "$tmp/z.gguf" "$@" -f "$tmp/calib.txt" --zeroed 2>/dev/null
  [[ $rc -eq 0 ]] && logits "$tmp/p.gguf" "$tmp/p.bin" && logits "$tmp/z.gguf" "$tmp/z.bin"
  check "prune $*: runs, loads and evaluates" $?
  local smaller same moved
  smaller=$(( $(stat -c %s "$tmp/p.gguf") < $(stat -c %s "$src") ))
  same=$(rel_diff "$tmp/z.bin" "$tmp/p.bin")
  moved=$(rel_diff "$tmp/base.bin" "$tmp/p.bin")
  echo "     $*: pruned vs zeroed $same, vs the original $moved; $(grep -c "layer" "$tmp/err") layers changed"
  [[ $smaller -eq 1 ]]
  check "prune $*: a smaller file" $?
  python3 -c "import sys; sys.exit(0 if float('$same') < 1e-3 and float('$moved') > 1e-2 else 1)"
  check "prune $*: the zeroed original's logits (and not the original's)" $?
}
pruned_matches_zeroed --heads 0.3
python3 - "$tmp/p.gguf" <<'PY'
import struct, sys
# The file must say per layer how many heads it has: an array where layers differ.
data = open(sys.argv[1], 'rb').read()
sys.exit(0 if b'llama.attention.head_count' in data else 1)
PY
check "per-layer head counts in the file" $?
pruned_matches_zeroed --ffn 0.25
pruned_matches_zeroed --layers 1

# A quantized model: each layer keeps whole blocks of FFN channels, so ffn_down keeps its type
# (a partial block would store it as F16 and make the pruned file larger than the original).
"$EDGELLM" synth --dims 64,2,4,2,256 --vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" \
  -o "$tmp/q.gguf" --type q4_0 >/dev/null 2>&1
"$EDGELLM" prune -m "$tmp/q.gguf" -o "$tmp/qp.gguf" --ffn 0.1 2>/dev/null &&
  [[ $("$EDGELLM" info "$tmp/qp.gguf" | grep -c 'ffn_down.weight *Q4_0') -eq 2 ]] &&
  [[ $(stat -c %s "$tmp/qp.gguf") -lt $(stat -c %s "$tmp/q.gguf") ]]
check "Q4_0 model, --ffn 0.1: ffn_down stays Q4_0 and the file is smaller" $?

bad() { # bad NAME EXIT PATTERN OPTIONS...
  local name=$1 want=$2 pattern=$3
  shift 3
  "$EDGELLM" prune -m "$src" -o "$tmp/bad.gguf" "$@" 2>"$tmp/err"
  [[ $? -eq $want ]] && grep -q -- "$pattern" "$tmp/err" && [[ $(wc -l <"$tmp/err") -eq 1 ]] &&
    [[ ! -e "$tmp/bad.gguf" ]]
  check "$name" $?
}
bad "fraction 1: usage error" 2 "below 1" --heads 1
bad "negative fraction: usage error" 2 "at least 0" --ffn -0.1
bad "fraction not a number: usage error" 2 "give a fraction" --ffn half
bad "two modes at once: usage error" 2 "exactly one of" --ffn 0.1 --heads 0.1
bad "every head of a layer: one-line error" 1 "would remove every head of layer" --heads 0.9
bad "--layers without calibration: usage error" 2 "give -f" --layers 1
bad "--layers as many as the model has: one-line error" 1 "the model has 4 layers" --layers 4 -f "$tmp/calib.txt"
echo "a dream" >"$tmp/short.txt"
bad "calibration text shorter than the context: one-line error" 1 "fewer than one chunk of 128" \
  --ffn 0.1 -f "$tmp/short.txt"
tiny="$SHARED/models/llama2-vocab-tiny-f16.gguf"
"$EDGELLM" imatrix -m "$tiny" -f "$tmp/calib.txt" -o "$tmp/tiny-im.gguf" --ctx 64 --chunks 2 2>/dev/null
bad "an imatrix of another model: one-line error" 1 "computed for another model" \
  --ffn 0.1 --imatrix "$tmp/tiny-im.gguf"
exit $fail
