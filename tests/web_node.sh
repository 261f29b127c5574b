#!/usr/bin/env bash
# The WebAssembly build (make web) through its JavaScript API in Node: tests/web/node_test.mjs,
# with the models and native references made here.
set -uo pipefail
tmp="$TEST_TMP/web_node"
rm -rf "$tmp" && mkdir -p "$tmp"
if ! make -C "$SOURCE_DIR" web WEB_BUILD_DIR="$BUILD_DIR/web" >"$tmp/make.log" 2>&1; then
  tail -30 "$tmp/make.log"
  echo "FAIL: make web" >&2
  exit 1
fi
set -e
# Quantized models: the aidreams model at Q4_0 (its 172-column ffn_down stays F16) and Q8_0, a
# synthetic model (rows of 256) in the K-quant mixes and IQ4_XS. Head size 16 in both: native
# builds take a fused multiply-add attention path for head sizes that are a multiple of 32, which
# WebAssembly (no FMA in SIMD128) cannot reproduce bit for bit (docs/web.md).
"$EDGELLM" convert --from llama2c "$SHARED/models/aidreams260K.bin" \
  --tokenizer "$SHARED/models/aidreams-tok512.bin" --outtype q4_0 -o "$tmp/aidreams-q4_0.gguf" 2>/dev/null
"$EDGELLM" convert --from llama2c "$SHARED/models/aidreams260K.bin" \
  --tokenizer "$SHARED/models/aidreams-tok512.bin" --outtype q8_0 -o "$tmp/aidreams-q8_0.gguf" 2>/dev/null
"$EDGELLM" synth --dims 256,2,16,4,512 --vocab "$SHARED/models/aidreams260K-f32.gguf" --type f32 \
  -o "$tmp/synth-f32.gguf" 2>/dev/null
"$EDGELLM" quantize "$tmp/synth-f32.gguf" "$tmp/synth-q4_k_m.gguf" q4_k_m >/dev/null 2>&1
"$EDGELLM" quantize "$tmp/synth-f32.gguf" "$tmp/synth-q5_k_m.gguf" q5_k_m >/dev/null 2>&1
"$EDGELLM" quantize "$tmp/synth-f32.gguf" "$tmp/synth-iq4_xs.gguf" iq4_xs >/dev/null 2>&1
ids=$(cut -f2,3 "$SHARED/testdata/aidreams/greedy.tsv" | sed -n 2p | tr '\t' ' ')
echo "$ids" >"$tmp/ids.txt"
models="aidreams-q4_0 aidreams-q8_0 synth-q4_k_m synth-q5_k_m synth-iq4_xs"
for m in $models; do
  # shellcheck disable=SC2086
  "$SCALAR_LOGITS" "$tmp/$m.gguf" "$tmp/$m.logits" $ids
done
status=0
WEB_TMP="$tmp" LOGIT_MODELS="$models" node "$SOURCE_DIR/tests/web/node_test.mjs" || status=1
# The relaxed-SIMD build (edgellm-<variant>-relaxed.wasm, chosen where the engine validates it).
WEB_RELAXED=1 WEB_TMP="$tmp" LOGIT_MODELS="$models" \
  node --experimental-wasm-relaxed-simd "$SOURCE_DIR/tests/web/node_test.mjs" || status=1
exit $status
