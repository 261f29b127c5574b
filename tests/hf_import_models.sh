#!/usr/bin/env bash
# `edgellm convert --from hf` on small random models of every supported architecture, written in
# Hugging Face layout (BF16, F16 and F32 checkpoints, one file or shards) by
# tests/helpers/hf_model.py, which also computes every position's logits with a naive reference
# forward pass from the architectures' published definitions. The converted GGUF must load and
# reproduce those logits within 1e-4 (weights stored exactly: f32, or the checkpoint's own 16-bit
# type) or within 5% of the largest logit when the converter quantizes to Q8_0.
set -uo pipefail
fail=0
tmp="$TEST_TMP/hf_import_models"
rm -rf "$tmp" && mkdir -p "$tmp"
helper="$SOURCE_DIR/tests/helpers/hf_model.py"
check="$BUILD_DIR/tests/hf_logits_check"

case_() { # ARCH DTYPE SHARDS OUTTYPE TOL [REL] (HELPER_ARGS / CHECK_ARGS from the environment)
  local arch=$1 dtype=$2 shards=$3 outtype=$4 dir="$tmp/$1-$2-$3${HELPER_ARGS:-}"
  [[ -d "$dir" ]] || python3 "$helper" model "$arch" "$dir" --dtype "$dtype" --shards "$shards" \
    ${HELPER_ARGS:-} ||
    { echo "FAIL: $arch: helper failed" >&2; fail=1; return; }
  local out="$dir-$outtype.gguf"
  if ! "$EDGELLM" convert --from hf "$dir" -o "$out" --outtype "$outtype" 2>"$out.err"; then
    echo "FAIL: $arch $dtype -> $outtype: convert failed: $(cat "$out.err")" >&2; fail=1; return
  fi
  if "$check" "$out" "$dir" "${@:5}" ${CHECK_ARGS:-}; then
    echo "ok: $arch ($dtype checkpoint, $shards shard(s)) -> $outtype"
  else
    echo "FAIL: $arch ($dtype checkpoint) -> $outtype: logits differ from the reference" >&2
    fail=1
  fi
}

case_ llama bf16 1 f32 1e-4
case_ llama bf16 1 bf16 1e-4
case_ llama bf16 1 q8_0 0 0.05
case_ mistral f16 1 f16 1e-4
case_ qwen2 bf16 3 f32 1e-4
case_ qwen3 f32 1 f32 1e-4
case_ qwen3 f32 1 q8_0 0 0.05
case_ gemma bf16 1 f32 1e-4
case_ gemma2 f16 1 f32 1e-4
case_ gemma3 bf16 1 bf16 1e-4
case_ phi3 f32 1 f32 1e-4
# LongRoPE: a context longer than the original one switches to the long factors.
HELPER_ARGS=--long-rope CHECK_ARGS="--ctx 128" case_ phi3 f32 1 f32 1e-4

# The converted files carry the metadata other GGUF runtimes read.
python3 - "$tmp" <<'PY' || fail=1
import struct, sys, glob
def kv(path):
    d = open(path, "rb").read()
    assert d[:4] == b"GGUF"
    n_t, n_kv = struct.unpack_from("<QQ", d, 8)
    p, out = 24, {}
    def s():
        nonlocal p
        n, = struct.unpack_from("<Q", d, p); p += 8
        v = d[p:p + n].decode(); p += n; return v
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    def val(t):
        nonlocal p
        if t == 8: return s()
        if t == 9:
            et, n = struct.unpack_from("<IQ", d, p); p += 12
            return [val(et) for _ in range(n)]
        v, = struct.unpack_from("<" + fmt[t], d, p); p += sizes[t]; return v
    for _ in range(n_kv):
        k = s(); t, = struct.unpack_from("<I", d, p); p += 4; out[k] = val(t)
    names = []
    for _ in range(n_t):
        names.append(s()); nd, = struct.unpack_from("<I", d, p); p += 4 + 8 * nd + 4 + 8
    return out, names
want = {
    "llama-bf16-1-f32": ("llama", ["llama.rope.freq_base", "llama.attention.head_count_kv"], ["rope_freqs.weight", "blk.1.attn_q.weight", "output.weight"]),
    "mistral-f16-1-f16": ("llama", ["llama.attention.sliding_window"], ["blk.0.ffn_gate.weight"]),
    "qwen2-bf16-3-f32": ("qwen2", ["qwen2.context_length"], ["blk.0.attn_q.bias", "blk.1.attn_v.bias"]),
    "qwen3-f32-1-f32": ("qwen3", ["qwen3.attention.key_length"], ["blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight"]),
    "gemma2-f16-1-f32": ("gemma2", ["gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping", "gemma2.attention.sliding_window"], ["blk.2.post_attention_norm.weight", "blk.2.post_ffw_norm.weight"]),
    "gemma3-bf16-1-bf16": ("gemma3", ["gemma3.rope.scaling.factor", "gemma3.attention.sliding_window"], ["blk.6.attn_k_norm.weight"]),
    "phi3-f32-1-f32": ("phi3", ["phi3.rope.scaling.attn_factor", "phi3.rope.scaling.original_context_length"], ["rope_factors_long.weight", "rope_factors_short.weight", "blk.0.attn_qkv.weight"]),
}
bad = 0
for stem, (arch, keys, tensors) in want.items():
    meta, names = kv(sys.argv[1] + "/" + stem + ".gguf")
    missing = [k for k in keys + ["general.architecture", arch + ".block_count", arch + ".embedding_length", arch + ".attention.layer_norm_rms_epsilon"] if k not in meta]
    missing += [t for t in tensors + ["token_embd.weight", "output_norm.weight"] if t not in names]
    if meta.get("general.architecture") != arch or missing:
        print("FAIL: %s: architecture %s, missing %s" % (stem, meta.get("general.architecture"), missing), file=sys.stderr); bad = 1
    else:
        print("ok: %s metadata and tensor names" % stem)
sys.exit(bad)
PY

# Files with a feature the loader does not implement, or missing a piece, fail to load with a
# message naming it.
edit="$BUILD_DIR/tests/gguf_edit"
load_error() { # NAME SOURCE PATTERN EDIT-ARGS...
  local name=$1 src="$tmp/$2.gguf" src_stem=$2 pattern=$3 out="$tmp/edit-$1.gguf"
  shift 3
  "$edit" "$src" "$out" "$@" || { echo "FAIL: $name: gguf_edit failed" >&2; fail=1; return; }
  if "$check" "$out" "$tmp/${src_stem%-*}" 1e-4 >/dev/null 2>"$out.err"; then
    echo "FAIL: $name: loaded" >&2; fail=1
  elif ! grep -qE "$pattern" "$out.err"; then
    echo "FAIL: $name: message does not match '$pattern': $(cat "$out.err")" >&2; fail=1
  else
    echo "ok: $name: $(cat "$out.err")"
  fi
}
load_error unknown-arch llama-bf16-1-f32 "architecture 'mamba' is not supported \\(supported: llama" \
  --set-str general.architecture mamba
load_error output-bias qwen2-bf16-3-f32 "'blk.0.attn_output.bias' belongs to a feature of this qwen2" \
  --add-f32 blk.0.attn_output.bias 32
load_error no-window gemma2-f16-1-f32 "missing metadata 'gemma2.attention.sliding_window'" \
  --del gemma2.attention.sliding_window
load_error no-qkv phi3-f32-1-f32 "'blk.0.attn_qkv.weight' is missing" --drop blk.0.attn_qkv.weight
load_error no-k-norm qwen3-f32-1-f32 "'blk.1.attn_k_norm.weight' is missing" \
  --drop blk.1.attn_k_norm.weight
load_error yarn llama-bf16-1-f32 "rope scaling type 'yarn' is not supported" \
  --set-str llama.rope.scaling.type yarn

[[ $fail -eq 0 ]] && echo "hf_import_models: all passed"
exit $fail
