# The helpers the shell tests share; a test sources it after `set`:
#   source "$(dirname "$0")/lib.sh"
# and ends with `exit $fail`.
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1" >&2; fail=1; }
# check NAME STATUS: STATUS is the exit code of the condition ($?)
check() { if [[ $2 -eq 0 ]]; then ok "$1"; else bad "$1"; fi; }
# expect_refused NAME PATTERN CMD...: the command fails and its stderr matches PATTERN; its output
# goes to $tmp/out and $tmp/err
expect_refused() {
  local name=$1 pattern=$2; shift 2
  if "$@" >"$tmp/out" 2>"$tmp/err"; then bad "$name (succeeded)"; return; fi
  if grep -Eq "$pattern" "$tmp/err"; then ok "$name: $(head -c 200 "$tmp/err")"; else bad "$name: message was: $(cat "$tmp/err")"; fi
}

# The mean KL divergence in `edgellm eval --kl-base` output.
kl_of() { sed -n 's/^KL divergence: *mean \([^,]*\),.*/\1/p' <<<"$1"; }
# lt A B: 0 <= A < B;  le A B: A <= B;  below A B FACTOR: 0 <= A < B * FACTOR (as decimals)
lt() { python3 -c "import sys; sys.exit(0 if 0 <= float('$1') < float('$2') else 1)"; }
le() { python3 -c "import sys; sys.exit(0 if float('$1') <= float('$2') else 1)"; }
below() { python3 -c "import sys; sys.exit(0 if 0 <= float('$1') < float('$2') * float('$3') else 1)"; }

# kernel_sets MODEL: the kernel sets this CPU runs, space-separated (from the message a bad
# EDGELLM_KERNELS gets).
kernel_sets() {
  EDGELLM_KERNELS=bogus "$EDGELLM" run -m "$1" -p hi -n 1 2>&1 | sed -n 's/.*this CPU runs: //p' | tr -d ,
}

# sample_text MODEL FIRST LAST: text sampled from MODEL (120 tokens at temperature 1 from an empty
# prompt) for each seed FIRST..LAST, a line each: calibration and held-out text.
sample_text() {
  local s
  for s in $(seq "$2" "$3"); do "$EDGELLM" run -m "$1" -p "" -n 120 --temp 1 --seed "$s" 2>/dev/null; echo; done
}

# aidreams_setup NAME CALIB HELD CTX: the start the quantization tests share: $tmp ($TEST_TMP/NAME,
# emptied), $src (the F32 aidreams model), $edit (gguf_edit), $ctx (CTX); $tmp/calib.txt and
# $tmp/held.txt, CALIB and HELD texts the model samples itself (sample_text from seeds 1 and 101:
# the model was trained on one narrow kind of text, so this is its own distribution, and the held-out
# texts are never calibrated on), and $tmp/base.bin, its logits on the held-out text.
aidreams_setup() {
  tmp="$TEST_TMP/$1"
  ctx=$4
  rm -rf "$tmp" && mkdir -p "$tmp"
  src="$SHARED/models/aidreams260K-f32.gguf"
  edit="$BUILD_DIR/tests/gguf_edit"
  sample_text "$src" 1 "$2" >"$tmp/calib.txt"
  sample_text "$src" 101 $((100 + $3)) >"$tmp/held.txt"
  "$EDGELLM" eval -m "$src" -f "$tmp/held.txt" --ctx "$ctx" --save-logits "$tmp/base.bin" >/dev/null
}
# kl MODEL [BASE_LOGITS]: MODEL's mean KL on aidreams_setup's held-out text against BASE_LOGITS
# (default $tmp/base.bin).
kl() { kl_of "$("$EDGELLM" eval -m "$1" -f "$tmp/held.txt" --ctx "$ctx" --kl-base "${2:-$tmp/base.bin}")"; }

# The ggml base library of the npm package @node-llama-cpp/linux-x64 (another runtime's own
# quantizers, the reference of the cross-checks), installed once per build tree at a pinned
# version; prints its path, or prints the error and exits 1.
ggml_base_library() {
  local ref="$BUILD_DIR/npm-ref/node-llama-cpp"
  local lib="$ref/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"
  if [[ ! -f "$lib" ]]; then
    mkdir -p "$ref"
    if ! npm install --prefix "$ref" --no-audit --no-fund --ignore-scripts \
        @node-llama-cpp/linux-x64@3.21.1 >"$ref/install.log" 2>&1; then
      echo "FAIL: could not install @node-llama-cpp/linux-x64 from npm (see $ref/install.log)" >&2
      exit 1
    fi
  fi
  echo "$lib"
}
