#!/usr/bin/env bash
# Error messages quote strings from the files they reject (architecture, tokenizer and tensor
# names). A hostile file must not get a control byte onto the user's terminal through them:
# every library message is one printable line.
set -uo pipefail
fail=0
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
exit $fail
