#!/usr/bin/env bash
# The chat page (web/demo) in Debian's headless chromium, driven by puppeteer-core (installed with
# npm ci from tests/web/browser/package-lock.json into the build tree): served by web/serve.py
# once cross-origin isolated (threads) and once not (one thread), each cutting the first download
# short (the page resumes it, then loads from its cache); then embedded in `edgellm serve`, at "/"
# against the server's API and with --web running the model in the browser. Screenshots go to
# $TEST_TMP/web_browser/*.png.
set -uo pipefail
tmp="$TEST_TMP/web_browser"
rm -rf "$tmp" && mkdir -p "$tmp"
die() { echo "FAIL: $*" >&2; exit 1; }
command -v chromium >/dev/null || die "chromium is missing: run scripts/install-deps.sh --test"
make -C "$SOURCE_DIR" web WEB_BUILD_DIR="$BUILD_DIR/web" >"$tmp/make.log" 2>&1 ||
  { tail -30 "$tmp/make.log"; die "make web"; }
npm_dir="$BUILD_DIR/web-browser-npm"
mkdir -p "$npm_dir"
if ! cmp -s "$SOURCE_DIR/tests/web/browser/package-lock.json" "$npm_dir/node_modules/.installed-lock.json" 2>/dev/null; then
  cp "$SOURCE_DIR/tests/web/browser/package.json" "$SOURCE_DIR/tests/web/browser/package-lock.json" "$npm_dir/"
  (cd "$npm_dir" && npm ci --ignore-scripts --no-audit --no-fund >"$tmp/npm.log" 2>&1) ||
    { cat "$tmp/npm.log" >&2; die "npm ci could not install puppeteer-core (is the npm registry reachable?)"; }
  cp "$npm_dir/package-lock.json" "$npm_dir/node_modules/.installed-lock.json"
fi
cp "$SOURCE_DIR/tests/web/browser/browser_test.mjs" "$npm_dir/"

# A model with a 2048-token context (the aidreams model's is 128): a generation left running takes
# seconds, so whether it was stopped does not depend on timing.
"$EDGELLM" synth --dims 256,2,16,4,512 --vocab "$SHARED/models/aidreams260K-f32.gguf" --type f32 \
  -o "$tmp/synth-f32.gguf" 2>/dev/null || die "edgellm synth"
"$EDGELLM" quantize "$tmp/synth-f32.gguf" "$tmp/long-context.gguf" q4_k_m >/dev/null 2>&1 ||
  die "edgellm quantize"

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT
# Two servers on free ports; each prints its address first, then one line per request.
cut=400000 # bytes of the model's first download each server sends before it hangs up
python3 "$SOURCE_DIR/web/serve.py" --port 0 --models "$SHARED/models" --cut-first-download $cut \
  >/dev/null 2>"$tmp/server-isolated.log" &
pids+=($!)
python3 "$SOURCE_DIR/web/serve.py" --port 0 --models "$SHARED/models" --no-isolation \
  --cut-first-download $cut >/dev/null 2>"$tmp/server-plain.log" &
pids+=($!)
# edgellm serve: its own page at / (the API), and with --web (the model in the browser).
"$EDGELLM" serve -m "$SHARED/models/aidreams260K-f32.gguf" --port 0 --parallel 1 \
  --ready-file "$tmp/serve-api.addr" 2>"$tmp/serve-api.log" &
pids+=($!)
"$EDGELLM" serve -m "$SHARED/models/aidreams260K-f32.gguf" --port 0 --parallel 1 \
  --web-root "$SOURCE_DIR/web/dist" --ready-file "$tmp/serve-web.addr" 2>"$tmp/serve-web.log" &
pids+=($!)
# ... and one that wants an API key (sekrit), as its page's user has to find out.
"$EDGELLM" serve -m "$SHARED/models/aidreams260K-f32.gguf" --port 0 --parallel 1 --api-key sekrit \
  --ready-file "$tmp/serve-key.addr" 2>"$tmp/serve-key.log" &
pids+=($!)
ready() { # ready FILE: host:port once the server listens
  for _ in $(seq 300); do
    [[ -s "$1" ]] && { echo "http://$(cat "$1")"; return 0; }
    sleep 0.1
  done
  return 1
}
address() { # address LOG: the server's base URL once it listens
  for _ in $(seq 100); do
    url=$(sed -n 's|^serving .* on \(http://[0-9.:]*\)/demo/$|\1|p' "$1")
    [[ -n "$url" ]] && { echo "$url"; return 0; }
    sleep 0.1
  done
  return 1
}
isolated=$(address "$tmp/server-isolated.log") || die "web/serve.py did not start"
plain=$(address "$tmp/server-plain.log") || die "web/serve.py did not start"
serve_api=$(ready "$tmp/serve-api.addr") || { cat "$tmp/serve-api.log"; die "edgellm serve did not start"; }
serve_web=$(ready "$tmp/serve-web.addr") || { cat "$tmp/serve-web.log"; die "edgellm serve --web did not start"; }
serve_key=$(ready "$tmp/serve-key.addr") || { cat "$tmp/serve-key.log"; die "edgellm serve --api-key did not start"; }
CHROMIUM=$(command -v chromium) ISOLATED_URL="$isolated" PLAIN_URL="$plain" \
  ISOLATED_LOG="$tmp/server-isolated.log" PLAIN_LOG="$tmp/server-plain.log" CUT_BYTES=$cut \
  SERVE_API_URL="$serve_api" SERVE_WEB_URL="$serve_web" SERVE_KEY_URL="$serve_key" \
  MODEL_FILE="$SHARED/models/aidreams260K-f32.gguf" LONG_MODEL_FILE="$tmp/long-context.gguf" \
  MODEL_PATH=/models/aidreams260K-f32.gguf OUT_DIR="$tmp" node "$npm_dir/browser_test.mjs"
