#!/usr/bin/env bash
# edgellm convert --from sentencepiece: a BPE model trained here by spm_train (Debian's
# sentencepiece) and imported to GGUF tokenizes every line of a test text exactly as spm_encode
# does (with and without the dummy-prefix space, through byte fallback for characters the
# vocabulary lacks); models that edgellm would tokenize differently are refused by name.
set -euo pipefail
work="$TEST_TMP/spm_import"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
cat "$SOURCE_DIR"/README.md "$SOURCE_DIR"/docs/*.md > corpus.txt
# The test text: lines of the training text, then lines it never saw (other scripts, emoji,
# runs of spaces, tabs, leading and trailing spaces).
{ sed -n '1,80p' corpus.txt
  printf '%s\n' 'naïve café, Größe — 你好世界 🙂' '  two  spaces   and three  ' $'tab\tseparated\tvalues' \
    'x' ' leading' 'trailing ' 'Ünïcödé Ωμέγα' '<s> </s> <unk> <0x41>'
} | grep -v '^$' > text.txt
python3 -c 'import json,sys
for line in open(sys.argv[1], encoding="utf-8"): print(json.dumps(line.rstrip("\n")))' text.txt > text.jsonl

train() { # NAME OPTIONS...: a SentencePiece model NAME.model trained on corpus.txt
  local name=$1; shift
  spm_train --input=corpus.txt --model_prefix="$name" --vocab_size=600 --character_coverage=1.0 \
    --num_threads=1 "$@" > "$name.log" 2>&1 || { cat "$name.log" >&2; fail "spm_train $name"; }
}
# same_ids NAME [N]: spm_encode and the imported GGUF give the same ids on every line of text.txt
# (on its first N lines only with N)
same_ids() {
  local name=$1 lines=${2:-\$}
  "$EDGELLM" convert --from sentencepiece "$name.model" -o "$name.gguf" 2> "$name.convert.err" ||
    { cat "$name.convert.err" >&2; fail "convert $name"; }
  spm_encode --model="$name.model" --output_format=id < text.txt > "$name.spm.txt"
  "$EDGELLM" tokenize -m "$name.gguf" --jsonl text.jsonl > "$name.ours.jsonl"
  python3 -c 'import json,sys
for line in open(sys.argv[1]): print(" ".join(map(str, json.loads(line)["ids"])))' \
    "$name.ours.jsonl" > "$name.ours.txt"
  [[ $(wc -l < "$name.spm.txt") -ge 80 ]] || fail "$name: spm_encode gave too few lines"
  diff <(sed -n "1,${lines}p" "$name.spm.txt") <(sed -n "1,${lines}p" "$name.ours.txt") > "$name.diff" ||
    { head -20 "$name.diff" >&2; fail "$name: edgellm tokenizes differently from spm_encode"; }
}
bpe=(--model_type=bpe --normalization_rule_name=identity --remove_extra_whitespaces=false)
train bpe "${bpe[@]}" --byte_fallback=true
same_ids bpe
# 🙂 is F0 9F 99 82; byte tokens <0x00>..<0xFF> follow <unk>, <s>, </s> (ids 3..258)
"$EDGELLM" tokenize -m bpe.gguf -p '🙂' | grep -q '243, 162, 156, 133\]' || fail "no byte fallback"
train noprefix "${bpe[@]}" --byte_fallback=true --add_dummy_prefix=false
same_ids noprefix
# Without byte fallback spm_encode gives one <unk> for a run of unknown characters, edgellm one
# per byte (as other GGUF runtimes do): the same ids on text the vocabulary covers.
train nobytes "${bpe[@]}"
same_ids nobytes "$(grep -c . <(sed -n '1,80p' corpus.txt))"

# expect PATTERN MODEL: the import exits 1 and its one-line error matches PATTERN
expect() {
  set +e; "$EDGELLM" convert --from sentencepiece "$2" -o refused.gguf > out.txt 2> err.txt
  local rc=$?; set -e
  [[ $rc -eq 1 ]] || { cat err.txt >&2; fail "$2 exited $rc, expected 1"; }
  grep -Eq -- "$1" err.txt || { cat err.txt >&2; fail "$2: no message matching '$1'"; }
  [[ $(wc -l < err.txt) -eq 1 ]] || fail "$2: the error is not one line"
  [[ ! -e refused.gguf ]] || fail "$2: a refused model still wrote a file"
}
train unigram --model_type=unigram --normalization_rule_name=identity --remove_extra_whitespaces=false
expect 'unigram.*--model_type=bpe' unigram.model
train nfkc --model_type=bpe --remove_extra_whitespaces=false
expect 'normaliz.*--normalization_rule_name=identity' nfkc.model
train collapse --model_type=bpe --normalization_rule_name=identity
expect '--remove_extra_whitespaces=false' collapse.model
head -c 3000 bpe.model > truncated.model
expect 'truncated.model.*not a SentencePiece model' truncated.model
expect 'not a SentencePiece model' corpus.txt
expect 'missing.model' missing.model
set +e; "$EDGELLM" convert --from sentencepiece bpe.model 2> err.txt; rc=$?; set -e
[[ $rc -eq 2 ]] && grep -q -- '-o VOCAB.gguf' err.txt || fail "no -o: usage error"
echo "spm_import: ok"
