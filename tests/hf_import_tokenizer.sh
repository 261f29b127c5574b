#!/usr/bin/env bash
# A Hugging Face folder with a real tokenizer.json (the shared Qwen 3 and Llama 3 ones) converts
# into one GGUF with weights and vocabulary: the public API loads it, tokenizes exactly as the
# transformers.js reference did (testdata/tokenize-*-bpe.json), and generates. config.json's
# vocab_size may exceed the tokenizer (padded embeddings, as Qwen ships); a tokenizer larger than
# the embedding is refused.
set -uo pipefail
fail=0
tmp="$TEST_TMP/hf_import_tokenizer"
rm -rf "$tmp" && mkdir -p "$tmp"
helper="$SOURCE_DIR/tests/helpers/hf_model.py"
for spec in qwen3:151936 llama:128256; do
  IFS=: read -r arch vocab <<<"$spec"
  tok=$([[ $arch == qwen3 ]] && echo qwen3 || echo llama3)
  dir="$tmp/$arch"
  python3 "$helper" model "$arch" "$dir" --no-reference --vocab-size "$vocab" || exit 1
  cp "$SHARED/tokenizers/$tok/tokenizer.json" "$SHARED/tokenizers/$tok/tokenizer_config.json" "$dir/"
  if ! "$EDGELLM" convert --from hf "$dir" -o "$dir.gguf" --outtype q8_0 2>"$dir.err"; then
    echo "FAIL: $arch: convert: $(cat "$dir.err")" >&2; fail=1; continue
  fi
  grep -q "weights only" "$dir.err" && { echo "FAIL: $arch: no vocabulary written" >&2; fail=1; }
  # Every reference text tokenizes to the reference ids.
  python3 - "$EDGELLM" "$dir.gguf" "$SHARED/testdata/tokenize-$tok-bpe.json" <<'PY' || fail=1
import json, subprocess, sys
exe, model, ref = sys.argv[1:]
cases = json.load(open(ref))
lines = "".join(json.dumps(c["text"]) + "\n" for c in cases)
out = subprocess.run([exe, "tokenize", "-m", model, "--no-bos", "--jsonl", "/dev/stdin"],
                     input=lines.encode(), capture_output=True, check=True).stdout.decode().splitlines()
bad = [c["text"] for c, o in zip(cases, out) if json.loads(o)["ids"] != c["ids"]]
if len(out) != len(cases) or bad:
    sys.exit("FAIL: %s: %d of %d texts tokenize differently, e.g. %r" % (model, len(bad), len(cases), bad[:1]))
print("ok: %s tokenizes all %d reference texts as the reference" % (model, len(cases)))
PY
  if "$EDGELLM" run -m "$dir.gguf" -p "Hello" -n 4 --temp 0 >/dev/null 2>"$dir.run.err"; then
    echo "ok: $arch with the $tok tokenizer generates"
  else
    echo "FAIL: $arch: run: $(tail -1 "$dir.run.err")" >&2; fail=1
  fi
done

# The tokenizer does not fit the embedding: refused, nothing written.
dir="$tmp/small"
python3 "$helper" model qwen3 "$dir" --no-reference || exit 1
cp "$SHARED/tokenizers/qwen3/tokenizer.json" "$dir/"
"$EDGELLM" convert --from hf "$dir" -o "$dir.gguf" 2>"$dir.err"
rc=$?
if [[ $rc -eq 1 ]] && grep -q "tokens but the embedding" "$dir.err" && [[ ! -e "$dir.gguf" ]]; then
  echo "ok: oversized tokenizer refused: $(cat "$dir.err")"
else
  echo "FAIL: oversized tokenizer: exit $rc: $(cat "$dir.err")" >&2; fail=1
fi
[[ $fail -eq 0 ]] && echo "hf_import_tokenizer: all passed"
exit $fail
