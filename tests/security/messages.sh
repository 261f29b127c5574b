#!/usr/bin/env bash
# Error messages quote strings from the files they reject (architecture, tokenizer and tensor
# names). A hostile file must not get a control byte onto the user's terminal through them:
# every library message is one printable line.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
tmp="$TEST_TMP/security_messages"
rm -rf "$tmp" && mkdir -p "$tmp"
edit="$BUILD_DIR/tests/gguf_edit"
base="$SHARED/models/aidreams260K-f32.gguf"
has_control() { LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$1"; }
# expect_printable NAME KEY VALUE: a model whose KEY is VALUE is refused with a printable message
expect_printable() {
  local name=$1 key=$2 value=$3
  "$edit" "$base" "$tmp/$name.gguf" --set-str "$key" "$value" || { echo "FAIL: $name: gguf_edit" >&2; fail=1; return; }
  for cmd in info run; do
    if [[ $cmd == run ]]; then
      "$EDGELLM" run -m "$tmp/$name.gguf" -p hi -n 1 >/dev/null 2>"$tmp/err"
    else
      "$EDGELLM" info "$tmp/$name.gguf" >/dev/null 2>"$tmp/err"
    fi
    local rc=$?
    if [[ $rc -eq 0 ]]; then
      echo "FAIL: $name: $cmd accepted the model" >&2; fail=1
    elif has_control "$tmp/err" || [[ $(wc -l <"$tmp/err") -ne 1 ]]; then
      echo "FAIL: $name: $cmd wrote control bytes or several lines: $(od -c "$tmp/err" | head -5)" >&2; fail=1
    else
      echo "ok: $name ($cmd): $(cat "$tmp/err")"
    fi
  done
}
expect_printable arch general.architecture $'llama\e]0;owned\a\e[2J\nforged line'
expect_printable tokenizer tokenizer.ggml.model $'spm\e[31m\rx'

# What the commands print from a model, not only their errors: general.name and tensor names are
# made printable by the library (info printed them raw, escape sequences included), and bench
# --json quotes the name as JSON (a quote, a backslash or a control byte made the record invalid).
"$edit" "$base" "$tmp/named.gguf" --set-str general.name $'we"ird\\name\e]0;owned\a\e[2J\rforged' ||
  { echo "FAIL: gguf_edit" >&2; fail=1; }
"$EDGELLM" info "$tmp/named.gguf" >"$tmp/out" 2>&1
if [[ $? -ne 0 ]] || has_control "$tmp/out"; then
  echo "FAIL: info printed control bytes from general.name: $(grep -a '^name:' "$tmp/out" | od -c | head -3)" >&2; fail=1
else
  echo "ok: info prints general.name printable: $(grep -a '^name:' "$tmp/out")"
fi
"$EDGELLM" bench -m "$tmp/named.gguf" -p 8 -n 8 -r 1 -t 1 --json >"$tmp/out" 2>/dev/null
if name=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["model"])' "$tmp/out" 2>&1) &&
    [[ $name == 'we"ird\name?]0;owned??[2J?forged' ]]; then
  echo "ok: bench --json quotes the name: $name"
else
  echo "FAIL: bench --json with a hostile general.name: $name" >&2; fail=1
fi
# Paths as typed go into JSON records too: plan --json's model, bench --json's draft.
cp "$base" "$tmp/we\"ird\\dir.gguf"
odd="$tmp/we\"ird\\dir.gguf"
json_field() { python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v = v[k]
print(v)' "$@" 2>&1; }
"$EDGELLM" plan -m "$odd" --ctx 64 --json >"$tmp/out" 2>/dev/null
got=$(json_field "$tmp/out" model)
[[ $got == "$odd" ]]
check "plan --json quotes the path: $got" $?
"$EDGELLM" bench -m "$base" -p 8 -n 8 -r 1 -t 1 --draft "$odd" --json >"$tmp/out" 2>/dev/null
got=$(json_field "$tmp/out" speculative draft)
[[ $got == "$odd" ]]
check "bench --json quotes the draft's path: $got" $?
exit $fail
