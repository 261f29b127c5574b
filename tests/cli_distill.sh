#!/usr/bin/env bash
# edgellm distill: a short run lowers the student's KL to the teacher (a real model, also as
# Q8_0, and with --top-k) and says so before and after; a distillation checkpoint resumes to the
# same bytes; a teacher with another vocabulary and the other bad inputs are refused clearly.
set -euo pipefail
work="$TEST_TMP/cli_distill"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
teacher="$SHARED/models/aidreams260K-f32.gguf"
cat "$SOURCE_DIR"/README.md "$SOURCE_DIR"/docs/*.md > corpus.txt
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {
  local code=$1 pattern=$2; shift 2
  set +e; "$@" > out.txt 2> err.txt; local rc=$?; set -e
  [[ $rc -eq $code ]] || { cat err.txt >&2; fail "$* exited $rc, expected $code"; }
  grep -Eq -- "$pattern" err.txt || { cat err.txt >&2; fail "$*: no message matching '$pattern'"; }
}
# kl_of WHEN LOG: the KL to the teacher reported before or after
kl_of() { sed -n "s/^edgellm distill: $1: KL to the teacher \([0-9.]*\),.*/\1/p" "$2"; }
# A student with the teacher's vocabulary: a new model trained for one step.
"$EDGELLM" train -o student.gguf --dims 32,1,2,2,64 --vocab "$teacher" -f corpus.txt --ctx 32 \
  --batch 4 --steps 1 -t 1 2> /dev/null
common=(--student student.gguf -f corpus.txt --ctx 32 --batch 4 --steps 30 --lr 3e-3 -t 2)

# distilled_ok LOG: the KL fell by at least a fifth
distilled_ok() {
  local before after
  before=$(kl_of before "$1"); after=$(kl_of after "$1")
  [[ -n "$before" && -n "$after" ]] || { cat "$1" >&2; fail "$1: no KL before/after"; }
  awk -v a="$before" -v b="$after" 'BEGIN { exit !(b < 0.8 * a) }' ||
    fail "$1: KL to the teacher $before -> $after"
}
"$EDGELLM" distill --teacher "$teacher" -o a.gguf "${common[@]}" 2> a.err
distilled_ok a.err
grep -q '^step 30/30  loss [0-9.]*  eval [0-9.]*  kl [0-9.]*  lr' a.err || fail "no progress line"
[[ $(head -1 a.gguf.csv) == step,loss,eval_loss,lr,grad_norm,tokens_per_s,kl_to_teacher ]] ||
  fail "CSV header"
"$EDGELLM" run -m a.gguf -p "I dreamed" -n 8 > /dev/null 2>&1 || fail "the student runs"

# the teacher quantized (any model the engine runs), and only its top 20 tokens
"$EDGELLM" quantize "$teacher" teacher-q8.gguf q8_0 > /dev/null 2>&1
"$EDGELLM" distill --teacher teacher-q8.gguf -o q.gguf "${common[@]}" --top-k 20 2> q.err
distilled_ok q.err

# stopped and resumed with --teacher again: the same bytes as the uninterrupted run
"$EDGELLM" distill --teacher "$teacher" -o b.gguf "${common[@]}" --stop-at 10 2> /dev/null
"$EDGELLM" distill --teacher "$teacher" -o b.gguf --resume b.gguf.ckpt -f corpus.txt -t 1 \
  2> /dev/null
cmp a.gguf b.gguf || fail "resumed distillation differs from the uninterrupted one"
expect 1 'checkpoint of edgellm distill' "$EDGELLM" train -o x.gguf --resume b.gguf.ckpt \
  -f corpus.txt

expect 1 'the teacher .*llama2-vocab-tiny-f16.gguf has another vocabulary \(32000 tokens\) than the student student.gguf \(512 tokens\)' \
  "$EDGELLM" distill --teacher "$SHARED/models/llama2-vocab-tiny-f16.gguf" "${common[@]}" -o x.gguf
[[ ! -e x.gguf ]] || fail "a refused run wrote its output"
expect 2 '--teacher MODEL.gguf and --student MODEL.gguf are required' \
  "$EDGELLM" distill --student student.gguf -o x.gguf -f corpus.txt
expect 2 "unknown option '--dims'" "$EDGELLM" distill --teacher "$teacher" --dims 32,1,2,2,64 \
  -o x.gguf -f corpus.txt
expect 2 'alpha' "$EDGELLM" distill --teacher "$teacher" "${common[@]}" -o x.gguf --alpha 1.5
expect 2 'temperature' "$EDGELLM" distill --teacher "$teacher" "${common[@]}" -o x.gguf \
  --temperature 0
expect 1 'loading the teacher missing.gguf' "$EDGELLM" distill --teacher missing.gguf \
  "${common[@]}" -o x.gguf

# A teacher that breaks mid-run: NaN in the embedding row of '~' (token 129), which the corpus has
# once, so only the step whose windows reach it fails. The run stops there naming the checkpoint
# of the step before, which holds finite weights and resumes to the same stop.
# (a generated corpus, so that edits to the docs cannot move the step)
seq 1 200 | awk '{ print "and the king said unto them, go in peace, day " $1 }' > plain.txt
{ head -c 2000 plain.txt; printf ' ~ '; tail -c +2001 plain.txt; } > tilde.txt
[[ $("$EDGELLM" tokenize -m "$teacher" -f tilde.txt | grep -o '\b129\b' | wc -l) -eq 1 ]] ||
  fail "token 129 ('~') is not in the corpus exactly once"
"$BUILD_DIR/tests/gguf_edit" "$teacher" teacher-nan.gguf --poke-f32 token_embd.weight $((129 * 64)) nan
nan_run=(--teacher teacher-nan.gguf --student "$teacher" -f tilde.txt --ctx 32 --batch 4
         --steps 200 --checkpoint-every 1 -t 1)
expect 1 "^edgellm distill: step [0-9]+: the teacher: .*NaN.*The last good checkpoint is n.gguf.ckpt" \
  "$EDGELLM" distill -o n.gguf "${nan_run[@]}"
stop=$(sed -n 's/^edgellm distill: step \([0-9]*\): the teacher.*/\1/p' err.txt)
(( stop > 1 )) || fail "the NaN teacher failed at step $stop, not mid-run: the test proves nothing"
[[ ! -e n.gguf ]] || fail "a run stopped by its teacher wrote its output"
[[ $(tail -1 n.gguf.csv | cut -d, -f1) -eq $((stop - 1)) ]] || fail "the CSV log does not end at step $((stop - 1))"
"$EDGELLM" run -m n.gguf.ckpt -p "I dreamed" -n 4 > /dev/null 2> run.err ||
  { cat run.err >&2; fail "the last good checkpoint does not run"; }
cp n.gguf.ckpt kept.ckpt
expect 1 "^edgellm distill: step $stop: the teacher: .*NaN" "$EDGELLM" distill -o n.gguf \
  --teacher teacher-nan.gguf --resume n.gguf.ckpt -f tilde.txt -t 1
cmp n.gguf.ckpt kept.ckpt || fail "the failed resume changed the last good checkpoint"

head -c 300 corpus.txt > small.txt
expect 2 'fewer than one batch' "$EDGELLM" distill --teacher "$teacher" --student student.gguf \
  -o x.gguf -f small.txt --ctx 64
echo "cli_distill: ok"
