#!/usr/bin/env bash
# Every command that takes a file path, given a FIFO or a directory instead: a refusal that names
# the path and what it is, never a hang (a FIFO opened for reading waits for a writer forever),
# a crash or success. "-" for standard input keeps working where a command documents it.
set -u
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/cli_special_files"
rm -rf "$tmp" && mkdir -p "$tmp"
export EDGELLM_HOME="$tmp/home"
M="$SHARED/models/aidreams260K-f32.gguf"
TOK="$SHARED/models/aidreams-tok512.bin"
CKPT="$SHARED/models/aidreams260K.bin"
fifo="$tmp/fifo"
dir="$tmp/dir"
mkfifo "$fifo" && mkdir -p "$dir"
echo "Once upon a time there was a dog." >"$tmp/text.txt"
"$EDGELLM" models keygen "$tmp/key" >/dev/null 2>&1

# One command line per file argument; @ stands for the special file.
cases=(
  "run -m @ -p hi -n 1"
  "run -m $M -f @ -n 1"
  "run -m $M -p hi -n 1 --grammar-file @"
  "run -m $M -p hi -n 1 --json-schema @"
  "run -m $M -p hi -n 1 --draft @"
  "chat -m @"
  "chat --detect-template @"
  "serve -m @ --port 1"
  "serve -m $M --port 1 --api-key-file @"
  "serve -m $M --port 1 --web --web-root @"
  "info @"
  "plan -m @ --ctx 64"
  "bench -m @ -p 8 -n 8 -r 1"
  "tokenize -m @ -p hi"
  "tokenize -m $M -f @"
  "tokenize -m $M --jsonl @"
  "convert --from llama2c @ --tokenizer $TOK -o $tmp/out.gguf"
  "convert --from llama2c $CKPT --tokenizer @ -o $tmp/out.gguf"
  "convert --from sentencepiece @ -o $tmp/out.gguf"
  "convert --from hf @ -o $tmp/out.gguf"
  "synth --preset tinyllama-1.1b --vocab @ -o $tmp/out.gguf"
  "quantize @ $tmp/out.gguf q8_0"
  "quantize $M $tmp/out.gguf q4_0 --imatrix @"
  "quantize $M $tmp/out.gguf q4_0 --gptq --calib @"
  "eval -m @ -f $tmp/text.txt"
  "eval -m $M -f @"
  "eval -m $M --ids @"
  "eval -m $M -f $tmp/text.txt --kl-base @"
  "imatrix -m $M -f @ -o $tmp/out.gguf"
  "imatrix -m @ -f $tmp/text.txt -o $tmp/out.gguf"
  "prune -m @ -o $tmp/out.gguf --heads 0.25"
  "prune -m $M -o $tmp/out.gguf --layers 1 -f @"
  "redact -f @"
  "redact -p hi --policy @"
  "gateway -m $M --port 1 --cloud-url http://127.0.0.1:9/v1 --cloud-key-file @"
  "gateway -m $M --port 1 --cloud-url http://127.0.0.1:9/v1 --policy @"
  "train -o $tmp/out.gguf --init @ -f $tmp/text.txt --steps 1"
  "train -o $tmp/out.gguf --init $M -f @ --steps 1"
  "train -o $tmp/out.gguf --dims 16,1,2,2,32 --vocab @ -f $tmp/text.txt --steps 1"
  "distill --teacher @ --student $M -o $tmp/out.gguf -f $tmp/text.txt --steps 1"
  "models install x:1 @ --allow-unsigned"
  "models install x:1 $M --sig @"
  "models trust @"
  "models sign --key @ x:1 $M --out $tmp/x.sig"
  "models sign --key $tmp/key x:1 @ --out $tmp/x.sig"
)

for c in "${cases[@]}"; do
  for special in "$fifo" "$dir"; do
    kind=$([[ -p $special ]] && echo FIFO || echo directory)
    line=${c//@/$special}
    # shellcheck disable=SC2086 # the case is a command line: split on spaces on purpose
    timeout -k 2 20 "$EDGELLM" $line </dev/null >"$tmp/out" 2>"$tmp/err"
    rc=$?
    name="$kind: edgellm $c"
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
      bad "$name: hung (killed after 20 s)"
    elif [[ $rc -ge 128 ]]; then
      bad "$name: crashed (status $rc)"
    elif [[ $rc -eq 0 ]]; then
      bad "$name: succeeded"
    elif ! grep -qF "$special" "$tmp/err"; then
      bad "$name: the message does not name the path: $(head -c 300 "$tmp/err")"
    elif ! grep -qiE "$kind|not a directory|does not hold" "$tmp/err"; then
      bad "$name: the message does not say what the path is: $(head -c 300 "$tmp/err")"
    else
      ok "$name: $(head -c 160 "$tmp/err")"
    fi
  done
done

# A file inside a folder argument: a Hugging Face folder whose config.json is special.
for kind in FIFO directory; do
  rm -rf "$tmp/hf" && mkdir -p "$tmp/hf"
  if [[ $kind == FIFO ]]; then mkfifo "$tmp/hf/config.json"; else mkdir "$tmp/hf/config.json"; fi
  timeout -k 2 20 "$EDGELLM" convert --from hf "$tmp/hf" -o "$tmp/out.gguf" 2>"$tmp/err"
  rc=$?
  [[ $rc -ne 0 && $rc -lt 124 ]] && grep -q "'$tmp/hf/config.json' is a $kind" "$tmp/err"
  rc=$?; check "convert --from hf, config.json a $kind: $(head -c 200 "$tmp/err")" $rc
done

# The library's own entry point refuses the FIFO the same way.
timeout -k 2 20 "$EDGELLM" run -m "$fifo" -p hi -n 1 2>"$tmp/err"
[[ $? -ne 124 ]] && grep -q "is a FIFO, not a model file" "$tmp/err"
check "run -m FIFO: 'is a FIFO, not a model file'" $?
timeout -k 2 20 "$EDGELLM" quantize "$fifo" "$tmp/out.gguf" q8_0 2>"$tmp/err"
[[ $? -ne 124 ]] && grep -q "'$fifo' is a FIFO, not a regular file" "$tmp/err"
check "quantize FIFO: 'is a FIFO, not a regular file'" $?

# "-" is standard input where documented, a pipe included.
out=$(echo "Once upon a time" | timeout 20 "$EDGELLM" tokenize -m "$M" -f -)
[[ $out == \[* ]]
check "tokenize -f - reads a pipe: $out" $?
out=$(echo "mail me at a@b.com" | timeout 20 "$EDGELLM" redact -f -)
[[ $out == *"[EMAIL_1]"* ]]
check "redact -f - reads a pipe: $out" $?

out=$(echo '"Once upon a time"' | timeout 20 "$EDGELLM" tokenize -m "$M" --jsonl /dev/stdin)
[[ $out == *'"ids"'* ]]
check "tokenize --jsonl /dev/stdin reads a pipe: $out" $?
out=$(timeout 20 "$EDGELLM" tokenize -m "$M" -f <(echo "Once upon a time"))
[[ $out == \[* ]]
check "tokenize -f <(...) reads the shell's pipe: $out" $?

rm -rf "$tmp"
exit $fail
