#!/usr/bin/env bash
# edgellm train: a short run whose output loads in `edgellm run`, the CSV log, a run stopped and
# resumed (at another thread count) giving the very same file as an uninterrupted one, Ctrl-C
# writing a checkpoint, and the bad inputs: a corpus smaller than a batch, a vocabulary that does
# not match --init, bad --dims, a truncated checkpoint, a model that is not a checkpoint, a
# non-finite loss, a full disk while checkpointing and one under the CSV log.
set -euo pipefail
work="$TEST_TMP/cli_train"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
vocab="$SHARED/models/aidreams260K-f32.gguf"
cat "$SOURCE_DIR"/README.md "$SOURCE_DIR"/docs/*.md > corpus.txt
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect CODE PATTERN CMD...: the command exits with CODE and its one-line error matches PATTERN
expect() {
  local code=$1 pattern=$2; shift 2
  set +e; "$@" > out.txt 2> err.txt; local rc=$?; set -e
  [[ $rc -eq $code ]] || { cat err.txt >&2; fail "$* exited $rc, expected $code"; }
  grep -Eq "$pattern" err.txt || { cat err.txt >&2; fail "$*: no message matching '$pattern'"; }
}
common=(--dims 64,2,4,2,128 --vocab "$vocab" -f corpus.txt --ctx 32 --batch 4 --steps 12)

"$EDGELLM" train -o a.gguf "${common[@]}" -t 2 2> a.err
grep -q '^step 12/12  loss [0-9.]*  eval [0-9.]*  .* tok/s  ETA' a.err || fail "no progress line"
[[ $(head -1 a.gguf.csv) == step,loss,eval_loss,lr,grad_norm,tokens_per_s ]] || fail "CSV header"
[[ $(wc -l < a.gguf.csv) -eq 13 ]] || fail "CSV rows"
first=$(sed -n 2p a.gguf.csv | cut -d, -f2); last=$(sed -n 13p a.gguf.csv | cut -d, -f2)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.2) }' || fail "loss $first -> $last"
"$EDGELLM" run -m a.gguf -p "The model" -n 8 > run.txt 2>&1 || { cat run.txt; fail "run"; }
"$EDGELLM" train -o e.gguf "${common[@]}" --steps 2 --eval-split 0 2> e.err
grep -q '^step 2/2  loss [0-9.]*  eval -  ' e.err || fail "no held-out text: eval shown as -"

# stopped at step 5 with 2 threads, resumed with 1: the same bytes as the uninterrupted run
"$EDGELLM" train -o b.gguf "${common[@]}" -t 2 --stop-at 5 2> b.err
[[ -s b.gguf.ckpt && ! -e b.gguf ]] || fail "--stop-at left no checkpoint"
"$EDGELLM" run -m b.gguf.ckpt -p "The" -n 4 > /dev/null 2>&1 || fail "a checkpoint loads as a model"
# quantizing a checkpoint gives the model alone: no optimizer moments, no train.* state
"$EDGELLM" quantize b.gguf.ckpt b-q8.gguf q8_0 > /dev/null 2>&1 || fail "quantizing a checkpoint"
"$EDGELLM" info b-q8.gguf > b-q8.info 2>&1 || fail "info on the quantized checkpoint"
grep -q 'blk.0.attn_q.weight' b-q8.info || fail "info lists no tensors"
! grep -Eq 'adam_[mv]\.|train\.' b-q8.info || fail "the quantized checkpoint kept training state"
"$EDGELLM" run -m b-q8.gguf -p "The" -n 4 > /dev/null 2>&1 || fail "the quantized checkpoint runs"
"$EDGELLM" train -o b.gguf --resume b.gguf.ckpt -f corpus.txt -t 1 2> b2.err
cmp a.gguf b.gguf || fail "resumed run differs from the uninterrupted one"
diff <(cut -d, -f1-5 a.gguf.csv) <(cut -d, -f1-5 b.gguf.csv) || fail "resumed CSV log differs"

# Ctrl-C: a checkpoint, then a clean exit
"$EDGELLM" train -o c.gguf --dims 64,2,4,2,128 --vocab "$vocab" -f corpus.txt --ctx 32 \
  --batch 4 --steps 100000 -t 1 2> c.err &
pid=$!
for _ in $(seq 100); do grep -q '^step' c.err && break; sleep 0.1; done
kill -INT $pid
set +e; wait $pid; rc=$?; set -e
[[ $rc -eq 130 ]] || { cat c.err >&2; fail "SIGINT exit $rc"; }
grep -q 'checkpoint c.gguf.ckpt' c.err || fail "SIGINT message"
done_steps=$(sed -n 's/.*stopped after step \([0-9]*\);.*/\1/p' c.err)
"$EDGELLM" train -o c.gguf --resume c.gguf.ckpt -f corpus.txt --stop-at 1 2> c2.err ||
  fail "resuming the Ctrl-C checkpoint"
grep -q "stopped after step $((done_steps + 1));" c2.err || fail "resume did not continue at $done_steps"

head -c 300 corpus.txt > small.txt
expect 2 'fewer than one batch' "$EDGELLM" train -o x.gguf --init "$vocab" -f small.txt --ctx 64
expect 1 'differs from that of --init' "$EDGELLM" train -o x.gguf --init "$vocab" \
  --vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" -f corpus.txt
expect 2 'multiple of twice the head count' "$EDGELLM" train -o x.gguf --dims 60,2,7,2,128 \
  --vocab "$vocab" -f corpus.txt
expect 2 'needs --vocab' "$EDGELLM" train -o x.gguf --dims 64,2,4,2,128 -f corpus.txt
head -c 100000 b.gguf.ckpt > truncated.ckpt
expect 1 'cannot resume from truncated.ckpt: .*truncated' "$EDGELLM" train -o x.gguf \
  --resume truncated.ckpt -f corpus.txt
expect 1 'not a training checkpoint' "$EDGELLM" train -o x.gguf --resume a.gguf -f corpus.txt
expect 1 'the corpus has .* tokens but the checkpoint' "$EDGELLM" train -o x.gguf \
  --resume b.gguf.ckpt -f small.txt

# A NaN in the final norm's weights (F32, no padding: it follows the 512 x 64 embedding in the
# data section at the end of the file) makes the first loss NaN: stop, no output written.
python3 - a.gguf nan.gguf <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
per_layer = 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 64 * 128
n_params = 512 * 64 + 64 + 2 * per_layer
start = len(data) - 4 * n_params + 4 * 512 * 64
data[start:start + 4] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(data)
PY
expect 1 'loss became nan|non-finite|NaN' "$EDGELLM" train -o nan-out.gguf --init nan.gguf \
  -f corpus.txt --ctx 32 --batch 4 --steps 3
[[ ! -e nan-out.gguf ]] || fail "a diverged run wrote its output"
# Divergence mid-run: NaN in the embedding row of '~' (token 129), which the corpus has once, so the
# loss turns NaN only at the step whose windows reach it. The run stops there without updating
# and names the checkpoint of the step before.
# (a generated corpus, so that edits to the docs cannot move the step)
seq 1 200 | awk '{ print "and the king said unto them, go in peace, day " $1 }' > plain.txt
{ head -c 2000 plain.txt; printf ' ~ '; tail -c +2001 plain.txt; } > tilde.txt
[[ $("$EDGELLM" tokenize -m "$vocab" -f tilde.txt | grep -o '\b129\b' | wc -l) -eq 1 ]] ||
  fail "token 129 ('~') is not in the corpus exactly once"
"$BUILD_DIR/tests/gguf_edit" "$vocab" init-nan.gguf --poke-f32 token_embd.weight $((129 * 64)) nan
expect 1 '^edgellm train: step [0-9]+: the loss became nan .*The last good checkpoint is d.gguf.ckpt' \
  "$EDGELLM" train -o d.gguf --init init-nan.gguf -f tilde.txt --ctx 32 --batch 4 --steps 200 \
  --checkpoint-every 1 -t 1
stop=$(sed -n 's/^edgellm train: step \([0-9]*\): the loss became.*/\1/p' err.txt)
(( stop > 1 )) || fail "the loss became NaN at step $stop, not mid-run: the test proves nothing"
[[ ! -e d.gguf ]] || fail "a diverged run wrote its output"
[[ $(tail -1 d.gguf.csv | cut -d, -f1) -eq $((stop - 1)) ]] ||
  fail "the CSV log does not end at step $((stop - 1))"
# A full disk while checkpointing (a file size limit, EFBIG): exit 1 naming the checkpoint, the
# previous checkpoint intact and no temporary file left; the run still resumes from it.
"$EDGELLM" train -o f.gguf "${common[@]}" -t 2 --checkpoint-every 2 --stop-at 2 2> /dev/null
cp f.gguf.ckpt kept.ckpt
set +e
(trap '' XFSZ; ulimit -f 600; "$EDGELLM" train -o f.gguf --resume f.gguf.ckpt -f corpus.txt -t 1 \
  > /dev/null 2> full.err)
rc=$?; set -e
[[ $rc -eq 1 ]] || { cat full.err >&2; fail "full disk: exit $rc, expected 1"; }
grep -q 'writing the checkpoint f.gguf.ckpt: .*(the previous checkpoint is kept)' full.err ||
  { cat full.err >&2; fail "full disk: no message naming the checkpoint"; }
cmp f.gguf.ckpt kept.ckpt || fail "full disk: the previous checkpoint changed"
[[ -z $(find . -name 'f.gguf.ckpt?*') ]] || fail "full disk: a temporary file was left behind"
"$EDGELLM" train -o f.gguf --resume f.gguf.ckpt -f corpus.txt -t 2 2> /dev/null ||
  fail "resuming after a failed checkpoint write"
cmp a.gguf f.gguf || fail "the run resumed after a failed write differs"
# A log on a full disk (OUT.csv a link to /dev/full): said at the first failed write, the run
# goes on and writes the model, and the exit status says the log is incomplete (was exit 0).
ln -s /dev/full g.gguf.csv
expect 1 'the log g.gguf.csv is incomplete: writing it failed at step 1: No space left on device' \
  "$EDGELLM" train -o g.gguf "${common[@]}" --steps 2
grep -q 'writing the log g.gguf.csv failed at step 1: .*training goes on' err.txt ||
  fail "full log disk: no message at the first failed write"
"$EDGELLM" run -m g.gguf -p "The model" -n 2 > /dev/null 2>&1 || fail "full log disk: no model"
echo "cli_train: ok"
