#!/usr/bin/env bash
# Output paths that would destroy something. A command whose output names one of its own inputs
# by another spelling ("./m.gguf" for "m.gguf", a symbolic or hard link) is refused with exit 2
# and the input is left byte for byte as it was: before, only `quantize`, `prune` and `imatrix`
# compared the two strings, and `convert` (also over a file of a Hugging Face folder), `synth`,
# `eval --save-logits`, `train` and `models sign --out` wrote over their model, corpus or secret
# key and said "wrote". An output that is a FIFO or a device is refused and left in place: the
# writers create a temporary and rename it over the output, which replaced the FIFO (and, run
# as root, `-o /dev/full` replaced the system's /dev/full) with a regular file and reported
# success; the commands now refuse it with exit 2 before their work, the writers with exit 1.
# Standard output on a full disk is exit 1 and a message (it was exit 0 with the output lost).
# Every input here is a copy in $tmp: the commands on trial may destroy what they are given.
set -u
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/cli_output_paths"
rm -rf "$tmp" && mkdir -p "$tmp/in"
export EDGELLM_HOME="$tmp/home"
cp "$SHARED/models/aidreams260K-f32.gguf" "$SHARED/models/aidreams-tok512.bin" \
  "$SHARED/models/aidreams260K.bin" "$tmp/in/" || exit 1
chmod u+w "$tmp/in/"*
cd "$tmp/in" || exit 1
for i in $(seq 40); do echo "Once upon a time there was a dog who liked to run in the sun."; done \
  >corpus.txt
"$EDGELLM" models keygen key >/dev/null 2>&1 || exit 1
ln -s aidreams260K-f32.gguf linked.gguf
ln aidreams260K-f32.gguf hardlinked.gguf
mkdir -p sub
cp -r . "$tmp/pristine"
M=aidreams260K-f32.gguf

# One command line per case; each writes over one of its inputs by another name.
cases=(
  "quantize $M ./$M q8_0"
  "quantize $M linked.gguf q8_0"
  "quantize $M hardlinked.gguf q8_0"
  "prune -m $M -o sub/../$M --heads 0.25"
  "imatrix -m $M -f corpus.txt -o ./corpus.txt --ctx 16"
  "convert --from llama2c aidreams260K.bin --tokenizer aidreams-tok512.bin -o aidreams260K.bin"
  "convert --from llama2c aidreams260K.bin --tokenizer aidreams-tok512.bin -o aidreams-tok512.bin"
  "synth --dims 64,1,2,2,64 --vocab $M -o $M"
  "eval -m $M -f corpus.txt --ctx 16 --save-logits $M"
  "eval -m $M -f corpus.txt --ctx 16 --save-logits corpus.txt"
  "train -o $M --init $M -f corpus.txt --steps 1 --ctx 16 --batch 1"
  "train -o corpus.txt --init $M -f corpus.txt --steps 1 --ctx 16 --batch 1"
  "distill --teacher $M --student $M -o ./$M -f corpus.txt --steps 1 --ctx 16 --batch 1"
  "models sign --key key x:1 $M --out ./$M"
  "models sign --key key x:1 $M --out key"
)

# judge NAME DAMAGE STATUS WANT TEXT: what the command destroyed (DAMAGE, empty when nothing) fails
# first, then an exit status other than WANT, then a message without TEXT. Returns whether DAMAGE
# is empty.
judge() {
  local name=$1 damage=$2 rc=$3 want=$4 text=$5
  if [[ -n $damage ]]; then
    bad "$name: $damage (exit $rc: $(tail -c 200 "$tmp/err"))"
  elif [[ $rc -ne $want ]]; then
    bad "$name: exit $rc, not $want: $(tail -c 300 "$tmp/err")"
  elif ! grep -qF "$text" "$tmp/err"; then
    bad "$name: the message does not say why: $(tail -c 300 "$tmp/err")"
  else
    ok "$name: $(grep -F "$text" "$tmp/err" | head -c 200)"
  fi
  [[ -z $damage ]]
}

for c in "${cases[@]}"; do
  # shellcheck disable=SC2086 # the case is a command line: split on spaces on purpose
  timeout -k 2 60 "$EDGELLM" $c </dev/null >"$tmp/out" 2>"$tmp/err"
  rc=$?
  changed=$(for f in *; do [[ -f $f && ! -L $f ]] && ! cmp -s "$f" "$tmp/pristine/$f" && echo "$f"; done)
  judge "edgellm $c" "${changed:+destroyed $changed}" $rc 2 "is the same file as" ||
    { rm -rf "$tmp/in"/* && cp -r "$tmp/pristine/." "$tmp/in/"; }
  rm -f ./*.csv ./*.ckpt
done

# A Hugging Face folder: the output must not be one of the .json or .safetensors files in it.
python3 "$SOURCE_DIR/tests/helpers/hf_model.py" model llama hf --no-reference --shards 2 || exit 1
cp -r hf "$tmp/hf-pristine"
for out in hf/config.json ./hf/model-00002-of-00002.safetensors hf/model.safetensors.index.json; do
  timeout -k 2 60 "$EDGELLM" convert --from hf hf -o "$out" </dev/null >"$tmp/out" 2>"$tmp/err"
  rc=$?
  changed=$(diff -rq hf "$tmp/hf-pristine")
  judge "edgellm convert --from hf hf -o $out" "${changed:+destroyed: $changed}" $rc 2 \
    "is a file of the checkpoint folder 'hf' that the import reads" ||
    { rm -rf hf && cp -r "$tmp/hf-pristine" hf; }
done

# The checkpoint is the output's own: resuming from OUT.ckpt into OUT is how a run continues.
"$EDGELLM" train -o run.gguf --init $M -f corpus.txt --steps 1 --ctx 16 --batch 1 \
  --checkpoint-every 1 >/dev/null 2>"$tmp/err" &&
  "$EDGELLM" train -o run.gguf --resume run.gguf.ckpt -f corpus.txt --steps 2 --ctx 16 \
    --batch 1 >/dev/null 2>>"$tmp/err"
check "train -o OUT --resume OUT.ckpt still resumes: $(tail -c 200 "$tmp/err")" $?

# Outputs that are not regular files: a FIFO anyone can make; a device node only root (a test
# run as root gets its own node here, never the system's). The commands refuse them as usage
# errors before their work (one line: quantize's per-tensor notes would come first).
mkfifo "$tmp/fifo"
targets=("$tmp/fifo")
if mknod "$tmp/full" c 1 7 2>/dev/null; then targets+=("$tmp/full"); fi
for target in "${targets[@]}"; do
  kind=$([[ -p $target ]] && echo FIFO || echo "character device")
  for c in "quantize $M @ q8_0" "eval -m $M -f corpus.txt --ctx 16 --save-logits @" \
           "convert --from llama2c aidreams260K.bin --tokenizer aidreams-tok512.bin -o @" \
           "convert --from hf hf -o @"; do
    line=${c//@/$target}
    # shellcheck disable=SC2086
    timeout -k 2 60 "$EDGELLM" $line </dev/null >"$tmp/out" 2>"$tmp/err"
    rc=$?
    damage=""
    if [[ ($kind == FIFO && ! -p $target) || ($kind != FIFO && ! -c $target) ]]; then
      damage="replaced it with a $(stat -c %F "$target")"
    elif [[ $(wc -l <"$tmp/err") -ne 1 ]]; then
      damage="refused only after the work: $(wc -l <"$tmp/err") lines of messages"
    fi
    judge "edgellm $c on a $kind" "$damage" \
      $rc 2 "cannot write '$target': it is a $kind, not a regular file" && continue
    rm -f "$target"
    if [[ $kind == FIFO ]]; then mkfifo "$target"; else mknod "$target" c 1 7; fi
  done
done

# `models keygen KEY` replaces KEY.pub the same way (and deletes KEY again when it cannot).
mkfifo "$tmp/key.pub"
timeout -k 2 20 "$EDGELLM" models keygen "$tmp/key" >"$tmp/out" 2>"$tmp/err"
rc=$?
damage=$([[ -p $tmp/key.pub ]] || echo "replaced it with a $(stat -c %F "$tmp/key.pub")")
judge "models keygen KEY with KEY.pub a FIFO" "$damage" $rc 1 \
  "cannot write '$tmp/key.pub': it is a FIFO, not a regular file"
[[ ! -e $tmp/key ]]
check "models keygen refused leaves no secret key behind" $?

# Standard output on a full disk (/dev/full): exit 1 and one line saying so, not exit 0 with the
# output lost. A command that failed anyway keeps its own single message.
for c in "run -m $M -p hi -n 8" "tokenize -m $M -p hello" "info $M" "eval -m $M -f corpus.txt --ctx 16" \
         "plan -m $M --ctx 64" "recommend --ram 4G" "models list" "--version"; do
  # shellcheck disable=SC2086
  timeout -k 2 60 "$EDGELLM" $c </dev/null >/dev/full 2>"$tmp/err"
  judge "edgellm $c >/dev/full" "" $? 1 "writing the output failed"
done
# shellcheck disable=SC2086
timeout -k 2 60 "$EDGELLM" run -m $M -p hi --bogus >/dev/full 2>"$tmp/err"
[[ $? -eq 2 && $(wc -l <"$tmp/err") -eq 1 ]]
check "a usage error with stdout on a full disk: exit 2, its one message ($(cat "$tmp/err"))" $?

cd / && rm -rf "$tmp"
exit $fail
