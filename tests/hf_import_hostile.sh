#!/usr/bin/env bash
# `edgellm convert --from hf` on broken checkpoints: every kind of lie in a safetensors header,
# truncated or missing files, inconsistent shards and config.json files. Each must fail with a
# one-line message naming the problem, exit 1 (not a signal), and leave no output file.
set -uo pipefail
fail=0
tmp="$TEST_TMP/hf_import_hostile"
rm -rf "$tmp" && mkdir -p "$tmp"
helper="$SOURCE_DIR/tests/helpers/hf_model.py"

expect_error() { # KIND PATTERN
  local dir="$tmp/$1" out="$tmp/$1.gguf"
  python3 "$helper" hostile "$1" "$dir" || { echo "FAIL: $1: helper failed" >&2; fail=1; return; }
  "$EDGELLM" convert --from hf "$dir" -o "$out" 2>"$tmp/$1.err"
  local rc=$?
  if grep -qE "Sanitizer|runtime error" "$tmp/$1.err"; then
    echo "FAIL: $1: sanitizer report" >&2; cat "$tmp/$1.err" >&2; fail=1
  elif [[ $rc -ne 1 ]]; then
    echo "FAIL: $1: exit $rc (want 1)" >&2; cat "$tmp/$1.err" >&2; fail=1
  elif ! grep -qiE "$2" "$tmp/$1.err"; then
    echo "FAIL: $1: message does not match '$2':" >&2; cat "$tmp/$1.err" >&2; fail=1
  elif [[ -e "$out" ]] || compgen -G "$out.*" >/dev/null; then
    echo "FAIL: $1: an output file was left behind" >&2; fail=1
  else
    echo "ok: $1: $(head -c 200 "$tmp/$1.err")"
  fi
}

expect_error header-len-huge "header length .* does not fit"
expect_error header-len-short "header length 1 "
expect_error header-not-json "JSON header does not parse"
expect_error offsets-outside "outside the .*data section"
expect_error offsets-overlap "overlaps"
expect_error offsets-hole "unindexed bytes"
expect_error dtype-lies "need [0-9]+"
expect_error dtype-unknown "unknown dtype 'Q4'"
expect_error dtype-int "dtype I16; only F32, F16 and BF16"
expect_error negative-offset "data_offsets must be two non-negative integers"
expect_error truncated "outside the .*data section|indexes [0-9]+ data bytes"
expect_error empty-file "too short for a safetensors file"
expect_error shard-missing "model-00002-of-00002.safetensors.*(No such file|missing)|shard missing"
expect_error index-disagrees "places tensor 'model.embed_tokens.weight' in model-00002"
expect_error duplicate-across-shards "appears in two shards|lists [0-9]+ tensors but its shards hold"
expect_error shard-path-escape "not a plain file name"
expect_error config-heads "num_attention_heads 4 is not a multiple of num_key_value_heads 3"
expect_error config-missing-key "missing 'hidden_size'"
expect_error config-not-json "config.json"
expect_error config-arch "model class 'MambaForCausalLM' is not supported"
expect_error config-layer-types "layer_types\\[1\\] is not 'full_attention'"
expect_error shape-mismatch "has shape \[48, 32\] but config.json implies \[40, 32\]"
expect_error tensor-missing "'model.layers.1.mlp.up_proj.weight' is missing"
expect_error tensor-extra "'model.layers.0.self_attn.q_proj.bias' has no place"
expect_error no-weights "neither model.safetensors nor"

# Usage errors exit 2.
"$EDGELLM" convert --from hf "$tmp/header-len-huge" 2>/dev/null
[[ $? -eq 2 ]] || { echo "FAIL: missing -o is not a usage error" >&2; fail=1; }
"$EDGELLM" convert --from hf "$tmp/header-len-huge" -o "$tmp/x.gguf" --outtype q4_0 2>/dev/null
[[ $? -eq 2 ]] || { echo "FAIL: --outtype q4_0 with hf is not a usage error" >&2; fail=1; }

[[ $fail -eq 0 ]] && echo "hf_import_hostile: all passed"
exit $fail
