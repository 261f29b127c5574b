#!/usr/bin/env bash
# edgellm serve's page files without a browser: at "/" the page that chats through the API (and
# its script), with --web the page that runs the model in the browser plus the browser build's
# files under /dist/ (a stand-in folder here), cross-origin isolated; names that could leave the
# web root, files it lacks and a missing build get clear errors. (web_browser drives the pages.)
set -uo pipefail
dir="$TEST_TMP/serve_web"
rm -rf "$dir" && mkdir -p "$dir/dist"
model="$SHARED/models/aidreams260K-f32.gguf"
fails=0
check() { # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAIL: $name"; fails=$((fails + 1)); fi
}
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT
model_opt=(-m "$model") # what start passes for the model
start() { # start NAME ARGS...: serve in the background, its address in $addr
  local name=$1; shift
  rm -f "$dir/$name.addr"
  "$EDGELLM" serve "${model_opt[@]}" --port 0 --parallel 1 --ready-file "$dir/$name.addr" "$@" \
    2>"$dir/$name.log" &
  pids+=($!)
  for _ in $(seq 300); do [[ -s "$dir/$name.addr" ]] && break; sleep 0.1; done
  addr=$(cat "$dir/$name.addr")
}
get() { # get PATH: status, then headers and body in $dir/headers, $dir/body
  curl -s --path-as-is -o "$dir/body" -D "$dir/headers" -w '%{http_code}' "http://$addr$1"
}
header() { grep -i "^$1:" "$dir/headers" | tr -d '\r' | cut -d' ' -f2-; }

# The page at "/" against the API: no key needed for it, the API still wants one.
start api --api-key sekrit
check "/ is the page marked for the server, without a key" \
  test "$(get /)" = 200 -a "$(grep -c 'data-backend="server"' "$dir/body")" = 1
check "/ is not cross-origin isolated and has a CSP" \
  test -z "$(header Cross-Origin-Embedder-Policy)" -a -n "$(header Content-Security-Policy)"
check "/demo.js streams from /v1/chat/completions" \
  test "$(get /demo.js)" = 200 -a "$(grep -c '/v1/chat/completions' "$dir/body")" -ge 1
check "/markdown.js is served as JavaScript" \
  test "$(get /markdown.js)" = 200 -a "$(header Content-Type)" = "text/javascript; charset=utf-8"
check "the API still needs the key" test "$(get /v1/models)" = 401
check "no /dist/ without --web" test "$(get /dist/edgellm.mjs)" = 401
check "/index.html is not a page path" test "$(get /index.html)" = 401

# --web with a stand-in build.
printf 'export const built = true;\n' >"$dir/dist/edgellm.mjs"
printf '// worker\n' >"$dir/dist/edgellm-worker.js"
printf '\0asm\1\0\0\0' >"$dir/dist/edgellm-st.wasm"
printf 'secret\n' >"$dir/secret.txt"
start web --web-root "$dir/dist"
check "--web: / is the in-browser page, cross-origin isolated" \
  test "$(get /)" = 200 -a "$(grep -c 'data-backend' "$dir/body")" = 0 \
  -a "$(header Cross-Origin-Opener-Policy)" = same-origin \
  -a "$(header Cross-Origin-Embedder-Policy)" = require-corp
check "--web: /dist/edgellm.mjs from the web root" \
  test "$(get /dist/edgellm.mjs)" = 200 -a "$(cat "$dir/body")" = "export const built = true;" \
  -a "$(header Content-Type)" = "text/javascript; charset=utf-8" \
  -a "$(header Cross-Origin-Embedder-Policy)" = require-corp
check "--web: .wasm as application/wasm" \
  test "$(get /dist/edgellm-st.wasm)" = 200 -a "$(header Content-Type)" = application/wasm
check "--web: a file the build lacks is a 404 that says so" \
  test "$(get /dist/edgellm-mt.wasm)" = 404 -a "$(grep -c 'not part of the browser build' "$dir/body")" = 1
for bad in /dist/../secret.txt /dist/..%2fsecret.txt /dist/.hidden /dist/ /dist/a/b; do
  check "--web: $bad is refused" test "$(get "$bad")" = 404 -a "$(grep -c secret "$dir/body")" = 0
done
check "--web: the API stays" test "$(get /v1/models)" = 200

# --web without -m: the page and the build, no model for the API (the page loads its own).
model_opt=()
start bare --web-root "$dir/dist"
check "--web without -m: the server starts" test -n "$addr"
check "--web without -m: / is the in-browser page, cross-origin isolated" \
  test "$(get /)" = 200 -a "$(grep -c 'data-backend' "$dir/body")" = 0 \
  -a "$(header Cross-Origin-Embedder-Policy)" = require-corp
check "--web without -m: /dist/edgellm.mjs" \
  test "$(get /dist/edgellm.mjs)" = 200 -a "$(cat "$dir/body")" = "export const built = true;"
check "--web without -m: /health is 200, no_model" \
  test "$(get /health)" = 200 -a "$(grep -c no_model "$dir/body")" = 1
check "--web without -m: /v1/models is a 404 that says to pass -m" \
  test "$(get /v1/models)" = 404 -a "$(grep -c 'restart with -m MODEL' "$dir/body")" = 1
status=$(curl -s -o "$dir/body" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"messages":[{"role":"user","content":"hi"}]}' "http://$addr/v1/chat/completions")
check "--web without -m: a chat completion is a 404 no_model" \
  test "$status" = 404 -a "$(grep -c no_model "$dir/body")" = 1
check "--web without -m: the log says the page runs the model" grep -q "no model: the page" "$dir/bare.log"
"$EDGELLM" serve --web-root "$dir/dist" --draft "$model" 2>"$dir/err"
check "--web without -m, with --draft: exit 2 naming -m" test $? = 2 -a "$(grep -c -- '-m MODEL' "$dir/err")" = 1
"$EDGELLM" serve --port 0 2>"$dir/err"
check "no --web, no -m: exit 2, no model given" test $? = 2 -a "$(grep -c 'no model given' "$dir/err")" = 1
model_opt=(-m "$model")

# A missing build: one clear line, exit 1; --web-root without a folder: usage, exit 2.
"$EDGELLM" serve -m "$model" --web-root "$dir/nowhere" 2>"$dir/err"
check "--web-root without the build: exit 1" test $? = 1
check "  ... naming what is missing" grep -q "does not hold the browser build.*make web" "$dir/err"
"$EDGELLM" serve -m "$model" --web-root 2>"$dir/err"
check "--web-root without a value: exit 2" test $? = 2
[[ $fails -eq 0 ]] && echo "all checks passed"
exit $((fails > 0))
