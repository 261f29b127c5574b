#!/usr/bin/env bash
# Engine-side hostile inputs of issue 11, from the command line: models that compute NaN (a NaN
# in the output head, huge F32 weights, random bytes in quantized blocks) fail the request with
# one line and exit 1 instead of crashing the sampler; hyper-parameters that can only overflow
# RoPE are refused at load; the converters refuse non-finite values instead of writing them;
# `convert --vocab-only` keeps the vocabulary bounds of the full import; a SentencePiece
# vocabulary without an unknown token is an error, not id -1. Hostile files are made here.
set -uo pipefail
fail=0
source "$(dirname "$0")/../lib.sh"
tmp="$TEST_TMP/security_engine"
rm -rf "$tmp" && mkdir -p "$tmp"
edit="$BUILD_DIR/tests/gguf_edit"
base="$SHARED/models/aidreams260K-f32.gguf"

# expect_error NAME PATTERN CMD...: exit status 1 (not a signal), one line on stderr naming it.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [[ $rc -eq 1 && $(wc -l <"$tmp/err") -eq 1 ]] && grep -qiE "$pattern" "$tmp/err"
  local ok=$?
  check "$name (exit $rc: $(head -c 200 "$tmp/err"))" $ok
}

# --- models that compute NaN: run (default sampling and greedy) and chat fail cleanly ---
"$edit" "$base" "$tmp/nan-head.gguf" --poke-f32 output.weight 640 nan || exit 1
"$edit" "$base" "$tmp/huge-f32.gguf" --poke-f32 blk.0.attn_norm.weight 0 3e38 \
  --poke-f32 blk.0.attn_norm.weight 1 -3e38 || exit 1
"$EDGELLM" quantize "$base" "$tmp/q8.gguf" q8_0 >/dev/null 2>&1 || exit 1
"$edit" "$tmp/q8.gguf" "$tmp/q8-random.gguf" --scramble blk.1.ffn_gate.weight 3 \
  --scramble blk.2.attn_q.weight 5 || exit 1
for m in nan-head huge-f32 q8-random; do
  expect_error "run $m at the default temperature" "NaN|infinite" \
    "$EDGELLM" run -m "$tmp/$m.gguf" -p "The machine" -n 8
  expect_error "run $m greedy" "NaN|infinite" \
    "$EDGELLM" run -m "$tmp/$m.gguf" -p "The machine" -n 8 --temp 0
done
printf 'hello\n' | "$EDGELLM" chat -m "$tmp/nan-head.gguf" >/dev/null 2>"$tmp/err"
rc=$?
[[ $rc -eq 1 ]] && grep -q "NaN" "$tmp/err"
ok=$?
check "chat on a NaN model ends with exit 1 and says why (exit $rc)" $ok
# The working model still works: the check rejects nothing finite.
"$EDGELLM" run -m "$base" -p "The machine" -n 8 >/dev/null 2>"$tmp/err"
check "the unbroken model still samples" $?

# --- hyper-parameters that can only overflow are refused at load ---
for spec in "llama.rope.freq_base 1e-45" "llama.rope.scaling.factor 1e-45" \
            "llama.rope.scale_linear 1e-45" "llama.attention.scale 3e38"; do
  set -- $spec
  "$edit" "$base" "$tmp/hp.gguf" --set-f32 "$1" "$2" || exit 1
  expect_error "load refuses $1 = $2" "RoPE|rope|attention.scale|overflow" \
    "$EDGELLM" run -m "$tmp/hp.gguf" -p "The" -n 2
done
"$edit" "$base" "$tmp/ones.gguf" --add-f32 rope_freqs.weight 8 || exit 1
"$edit" "$tmp/ones.gguf" "$tmp/hp.gguf" --poke-f32 rope_freqs.weight 3 1e-45 || exit 1
expect_error "load refuses a rope_freqs factor of 1e-45" "RoPE" \
  "$EDGELLM" run -m "$tmp/hp.gguf" -p "The" -n 2
"$edit" "$base" "$tmp/hp.gguf" --set-f32 llama.rope.freq_base 500000 || exit 1
"$EDGELLM" run -m "$tmp/hp.gguf" -p "The" -n 2 >/dev/null 2>&1
check "load accepts a large ordinary freq_base" $?

# --- converters refuse non-finite values ---
expect_error "quantize refuses NaN weights" "NaN" \
  "$EDGELLM" quantize "$tmp/nan-head.gguf" "$tmp/nan-q8.gguf" f16
[[ ! -e "$tmp/nan-q8.gguf" ]]; check "quantize wrote nothing" $?
"$edit" "$base" "$tmp/nan-meta.gguf" --set-f32 llama.rope.freq_base nan || exit 1
"$EDGELLM" quantize "$tmp/nan-meta.gguf" "$tmp/nan-meta-q8.gguf" q8_0 >/dev/null 2>"$tmp/err"
[[ $? -eq 1 ]] && grep -q "freq_base" "$tmp/err" && [[ ! -e "$tmp/nan-meta-q8.gguf" ]]
check "quantize refuses a NaN hyper-parameter" $?

python3 - "$SHARED/models/aidreams260K.bin" "$tmp/nan.bin" "$SHARED/models/aidreams-tok512.bin" \
  "$tmp/nan-tok.bin" <<'PY' || exit 1
import struct, sys
ckpt = bytearray(open(sys.argv[1], "rb").read())
ckpt[28 + 4 * 1000:28 + 4 * 1001] = struct.pack("<f", float("nan"))  # in the token embedding
open(sys.argv[2], "wb").write(ckpt)
tok = bytearray(open(sys.argv[3], "rb").read())
tok[4:8] = struct.pack("<f", float("inf"))  # score of token 0
open(sys.argv[4], "wb").write(tok)
PY
expect_error "llama2.c import refuses NaN weights" "NaN" "$EDGELLM" convert --from llama2c \
  "$tmp/nan.bin" --tokenizer "$SHARED/models/aidreams-tok512.bin" -o "$tmp/nan-l2c.gguf"
[[ ! -e "$tmp/nan-l2c.gguf" ]]; check "llama2.c import wrote nothing" $?
expect_error "llama2.c import refuses an infinite token score" "score" "$EDGELLM" convert \
  --from llama2c "$SHARED/models/aidreams260K.bin" --tokenizer "$tmp/nan-tok.bin" -o "$tmp/x.gguf"

helper="$SOURCE_DIR/tests/helpers/hf_model.py"
python3 "$helper" model llama "$tmp/hf" --no-reference --dtype f32 >/dev/null || exit 1
cp -r "$tmp/hf" "$tmp/hf-theta"
python3 - "$tmp/hf-theta/config.json" <<'PY' || exit 1
import json, sys
c = json.load(open(sys.argv[1])); c["rope_theta"] = 1e308; json.dump(c, open(sys.argv[1], "w"))
PY
expect_error "HF import refuses rope_theta 1e308 (inf as a float32)" "rope_theta.*float32" \
  "$EDGELLM" convert --from hf "$tmp/hf-theta" -o "$tmp/theta.gguf"
cp -r "$tmp/hf" "$tmp/hf-nan"
python3 - "$tmp/hf-nan/model.safetensors" <<'PY' || exit 1
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
hlen = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + hlen])
name = "lm_head.weight" if "lm_head.weight" in header else "model.embed_tokens.weight"
at = 8 + hlen + header[name]["data_offsets"][0] + 4 * 5
data[at:at + 4] = struct.pack("<f", float("nan"))
open(sys.argv[1], "wb").write(data)
PY
expect_error "HF import refuses NaN in the output head" "NaN" \
  "$EDGELLM" convert --from hf "$tmp/hf-nan" -o "$tmp/hf-nan.gguf"
[[ ! -e "$tmp/hf-nan.gguf" ]]; check "HF import wrote nothing" $?
"$EDGELLM" convert --from hf "$tmp/hf" -o "$tmp/hf.gguf" >/dev/null 2>&1
check "the unbroken HF checkpoint still converts" $?

# --- convert --vocab-only keeps the full import's vocabulary bounds ---
# make_vocab DIR [CONFIG-VOCAB-SIZE] [EXTRA-ADDED-ID]: a small byte-level BPE tokenizer.json.
make_vocab() {
  python3 - "$@" <<'PY'
import json, os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
chars = [chr(c) for c in range(33, 127)] + [chr(c) for c in range(161, 173)] + \
        [chr(c) for c in range(174, 256)] + [chr(c) for c in range(256, 324)]
vocab = {c: i for i, c in enumerate(chars)}
added = [{"id": len(vocab), "content": "<|endoftext|>", "special": True}]
if len(sys.argv) > 3:
    added.append({"id": int(sys.argv[3]), "content": "<|far|>", "special": True})
tok = {"model": {"type": "BPE", "vocab": vocab, "merges": []}, "added_tokens": added,
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
       "normalizer": None}
json.dump(tok, open(os.path.join(d, "tokenizer.json"), "w"))
if len(sys.argv) > 2 and sys.argv[2] != "-":
    json.dump({"model_type": "llama", "vocab_size": int(sys.argv[2])},
              open(os.path.join(d, "config.json"), "w"))
PY
}
make_vocab "$tmp/v-ok" 300 || exit 1
"$EDGELLM" convert --from hf "$tmp/v-ok" --vocab-only -o "$tmp/v-ok.gguf" >/dev/null 2>&1 &&
  "$EDGELLM" tokenize -m "$tmp/v-ok.gguf" -p "hi" >/dev/null 2>&1
check "vocab-only: a padded 300-token vocabulary converts and tokenizes" $?
for spec in "v-size 40000000" "v-id - 16777215" "v-hole - 8000000"; do
  set -- $spec
  make_vocab "$tmp/$1" "${@:2}" || exit 1
  # Peak resident memory of the command, in KB (children's ru_maxrss).
  rss=$(python3 -c 'import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[-1] + ".err", "w")).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' \
    "$EDGELLM" convert --from hf "$tmp/$1" --vocab-only -o "$tmp/$1.gguf")
  cp "$tmp/$1.gguf.err" "$tmp/err" 2>/dev/null
  rc=${rss% *}
  rss=${rss#* }
  [[ $rc -eq 1 && ! -e "$tmp/$1.gguf" ]] && grep -qE "vocab|id below" "$tmp/err" && ((rss < 100000))
  ok=$?
  check "vocab-only refuses $spec (exit $rc, peak ${rss} KB: $(head -c 160 "$tmp/err"))" $ok
done

# --- a SentencePiece vocabulary without an unknown token ---
python3 - "$tmp/spm2-vocab.gguf" <<'PY' || exit 1
import struct, sys
def s(b): b = b.encode(); return struct.pack("<Q", len(b)) + b
kv = [s("general.architecture") + struct.pack("<I", 8) + s("llama"),
      s("tokenizer.ggml.model") + struct.pack("<I", 8) + s("llama"),
      s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + s("\u2581a") + s("b")]
d = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv)
open(sys.argv[1], "wb").write(d + b"\0" * (-len(d) % 32))
PY
"$EDGELLM" synth --dims 64,1,4,4,128 --vocab "$tmp/spm2-vocab.gguf" -o "$tmp/spm2.gguf" \
  >/dev/null 2>&1 || exit 1
out=$("$EDGELLM" tokenize -m "$tmp/spm2.gguf" -p "ab" 2>/dev/null)
[[ "$out" == "[0, 1]" ]]; ok=$?; check "SPM without unk: covered text tokenizes ($out)" $ok
expect_error "SPM without unk: uncovered text is an error, not id -1" "unknown token" \
  "$EDGELLM" tokenize -m "$tmp/spm2.gguf" -p "a xyz"
expect_error "SPM without unk: run says so" "unknown token" \
  "$EDGELLM" run -m "$tmp/spm2.gguf" -p "xyz" -n 2

# --- eval --save-logits: its own locked temporary, renamed whole into place (was a fixed PATH.tmp) ---
ids="$SHARED/testdata/aidreams/logits-ids.txt"
save="$tmp/logits.bin"
mkdir "$save.tmp" # another writer's fixed temporary in the way
touch "$save.tmp.4000000.0" "$save.tmp.4000001.0" "$save.tmp.x"
flock "$save.tmp.4000001.0" sleep 60 & # a live writer's temporary
holder=$!
sleep 0.2
"$EDGELLM" eval -m "$base" --ids "$ids" --save-logits "$save" >"$tmp/out" 2>"$tmp/err"
rc=$?
size=$(stat -c %s "$save" 2>/dev/null || echo none)
[[ $rc -eq 0 && $size == $((55 * 512 * 4)) ]]
ok=$?
check "eval --save-logits with a PATH.tmp in the way writes them (exit $rc, $size bytes: $(head -c 200 "$tmp/err"))" $ok
[[ ! -e "$save.tmp.4000000.0" && -e "$save.tmp.4000001.0" && -e "$save.tmp.x" ]]
ok=$?
check "eval --save-logits deletes an unlocked temporary, keeps a locked one and a look-alike ($(ls "$tmp" | grep logits | tr '\n' ' '))" $ok
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
# A full disk (a file size limit): one line saying why, exit 1, the old file kept, no temporary.
rm -f "$save".tmp.*
cp "$save" "$tmp/old.bin"
expect_error "eval --save-logits past a file size limit says why" "File too large" \
  bash -c 'ulimit -f 64; exec "$@"' _ "$EDGELLM" eval -m "$base" --ids "$ids" --save-logits "$save"
cmp -s "$save" "$tmp/old.bin" && ! ls "$save".tmp.[0-9]* >/dev/null 2>&1
check "a failed eval --save-logits leaves the previous file whole and no temporary" $?
expect_error "eval --save-logits into a missing directory names it" "$tmp/no-such-dir/logits.bin" \
  "$EDGELLM" eval -m "$base" --ids "$ids" --save-logits "$tmp/no-such-dir/logits.bin"

# --- eval --kl-base: reference logits holding NaN or infinity (a corrupt file, or one saved
# elsewhere from a broken model) are refused; NaN rows used to count as a KL of 0, a perfect score ---
for value in nan inf; do
  python3 -c "import struct, sys
rows = bytearray(open(sys.argv[1], 'rb').read())
struct.pack_into('<f', rows, (3 * 512 + 7) * 4, float(sys.argv[2]))
open(sys.argv[3], 'wb').write(rows)" "$save" "$value" "$tmp/kl-$value.bin" || exit 1
  expect_error "eval --kl-base with $value in the base logits is refused" \
    "kl-$value.bin' holds (NaN|an infinite value) at position 3, token 7" \
    "$EDGELLM" eval -m "$base" --ids "$ids" --kl-base "$tmp/kl-$value.bin"
done
"$EDGELLM" eval -m "$base" --ids "$ids" --kl-base "$save" >"$tmp/out" 2>"$tmp/err"
check "eval --kl-base with finite base logits still compares ($(grep KL "$tmp/out"))" $?

exit $fail
