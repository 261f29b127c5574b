#!/usr/bin/env bash
# Crash safety and concurrency of the store. The installer is SIGKILLed after random delays while
# it copies, hashes, verifies and commits a large model, while it downloads from a throttled local
# server, and while it activates; after every kill the store must verify, the active version must
# be the old or the new one with exactly its bytes and must load, and a rerun must complete. Then
# several processes install and activate at the same time and the store must end consistent.
set -uo pipefail
fail=0
source "$(dirname "$0")/lib.sh"
E="$EDGELLM"
tmp="$TEST_TMP/store_crash"
rm -rf "$tmp" && mkdir -p "$tmp/www"
export EDGELLM_HOME="$tmp/home"
variant="$BUILD_DIR/tests/store_gguf_variant"
base="$SHARED/models/aidreams260K-f32.gguf"
sha() { sha256sum "$1" | cut -c1-64; }
active_of() { "$E" models info "$1" 2>/dev/null | sed -n 's/^active: *//p'; }
rand_sleep() { sleep "$(printf '0.%03d' $((RANDOM % $1)))"; }

"$E" models keygen "$tmp/pub.key" >/dev/null && "$E" models trust "$tmp/pub.key.pub" >/dev/null
"$variant" "$base" "$tmp/m1.gguf" general.version v1
# Large enough (~17 MiB) that copying, hashing and parsing take a while to interrupt.
"$variant" "$base" "$tmp/m2.gguf" general.version v2 16
for v in 1 2; do "$E" models sign --key "$tmp/pub.key" "m:$v" "$tmp/m$v.gguf" >/dev/null; done
sha1=$(sha "$tmp/m1.gguf")
sha2=$(sha "$tmp/m2.gguf")
"$E" models install m "$tmp/m1.gguf" >/dev/null 2>&1; check "install v1" $?

# consistent EXPECT...: verify passes, the active version is one of EXPECT with its own bytes,
# and that file loads and generates.
consistent() {
  local label=$1; shift
  local active path want
  if ! "$E" models verify >"$tmp/verify.out" 2>&1; then bad "$label: verify: $(grep -v '^ok' "$tmp/verify.out" | head -3)"; return 1; fi
  active=$(active_of m)
  case " $* " in *" $active "*) ;; *) bad "$label: active is '$active', expected one of $*"; return 1 ;; esac
  path=$("$E" models path m) || { bad "$label: no path"; return 1; }
  want=$sha1; [[ $active == 2 ]] && want=$sha2
  [[ $(sha "$path") == "$want" ]] || { bad "$label: active file has the wrong bytes"; return 1; }
  "$E" run -m "$path" -p "Once" -n 2 --temp 0 -t 1 >/dev/null 2>"$tmp/run.err" || { bad "$label: active model does not load: $(cat "$tmp/run.err")"; return 1; }
  return 0
}

# How long a whole install takes here (build type, sanitizers and machine load all change it),
# so the kills below land anywhere from the first byte copied to the manifest commit.
start=$(date +%s%N)
EDGELLM_HOME="$tmp/timing" "$E" models install m "$tmp/m2.gguf" --allow-unsigned --no-progress >/dev/null 2>&1
install_ms=$(( ($(date +%s%N) - start) / 1000000 ))
rm -rf "$tmp/timing"
echo "one install of 17 MiB takes ${install_ms} ms here"
rand_ms() { sleep "$(awk -v ms=$((RANDOM * $1 / 32768)) 'BEGIN { printf "%.3f", ms / 1000 }')"; }

# 1. Kill the installer of v2 at random moments.
kills=0 completed=0 errors=0 range_ms=$((install_ms * 3 / 2 + 10)) streak=0
for i in $(seq 1 20); do
  "$E" models install m "$tmp/m2.gguf" --no-progress >/dev/null 2>&1 &
  pid=$!
  rand_ms $range_ms
  kill -9 $pid 2>/dev/null && kills=$((kills + 1))
  wait $pid 2>/dev/null
  consistent "install kill $i" 1 2 || errors=$((errors + 1))
  # When the machine slows down (parallel tests, sanitizers) widen the window so kills keep
  # reaching the late steps too.
  streak=$((streak + 1))
  if [[ $streak -ge 6 ]]; then range_ms=$((range_ms * 2)); streak=0; fi
  if [[ $(active_of m) == 2 ]]; then
    completed=$((completed + 1)) streak=0
    "$E" models rollback m >/dev/null && "$E" models remove m:2 >/dev/null || bad "reset after completed install"
  fi
done
[[ $errors -eq 0 ]]; check "store consistent after $kills kills during install ($completed installs finished first)" $?
[[ $kills -ge 5 && $completed -ge 1 ]]; check "kills spread over the whole install ($kills killed, $completed completed)" $?
"$E" models install m "$tmp/m2.gguf" >/dev/null 2>&1; check "rerun after the kills completes" $?
consistent "after rerun" 2 && ok "v2 active, intact and loading after rerun"

# 2. Kill while switching the active version back and forth (each switch re-hashes 17 MiB).
errors=0
for i in $(seq 1 20); do
  target=$(( (i % 2) + 1 ))
  "$E" models activate "m:$target" >/dev/null 2>&1 &
  pid=$!
  rand_sleep 120
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  consistent "activate kill $i" 1 2 || errors=$((errors + 1))
done
[[ $errors -eq 0 ]]; check "store consistent after 20 kills during activation" $?
"$E" models activate m:1 >/dev/null; check "activate after the kills" $?

# 3. Kill downloads from a throttled local server; a rerun resumes.
"$variant" "$base" "$tmp/www/m3.gguf" general.version v3 2
"$E" models sign --key "$tmp/pub.key" "m:3" "$tmp/www/m3.gguf" >/dev/null
python3 "$SOURCE_DIR/tests/helpers/store_http_server.py" "$tmp/www" "$tmp/port" "$tmp/requests.log" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$tmp/port")/slow/m3.gguf"
errors=0
part_size() { stat -c %s "$EDGELLM_HOME"/tmp/download-*.part 2>/dev/null || echo 0; }
for i in $(seq 1 4); do
  before=$(part_size)
  "$E" models install m "$url" --no-progress >/dev/null 2>&1 &
  pid=$!
  # Kill once this attempt has written bytes (a fixed delay can pass before a busy machine has
  # even started the process, and then no rerun has anything to resume).
  for _ in $(seq 250); do (( $(part_size) > before )) && break; sleep 0.02; done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  consistent "download kill $i" 1 || errors=$((errors + 1))
done
[[ $errors -eq 0 ]]; check "store consistent after 4 kills during download" $?
"$E" models install m "$url" >/dev/null 2>&1; check "download rerun completes" $?
[[ $(active_of m) == 3 && $(sha "$("$E" models path m)") == $(sha "$tmp/www/m3.gguf") ]]; check "v3 active and intact" $?
[[ $(awk '$2 > 0' "$tmp/requests.log" | wc -l) -ge 1 ]]; check "a rerun resumed a killed download (Range > 0)" $?
kill $server 2>/dev/null

# Orphans from the kills: gc removes them and keeps everything referenced.
"$E" models gc >"$tmp/gc.out"; rc=$?; check "gc after crashes ($(cat "$tmp/gc.out"))" $rc
[[ -z "$(ls -A "$EDGELLM_HOME/tmp")" && -z "$(ls -A "$EDGELLM_HOME/models/m" | grep -v '^manifest.json$')" ]]; check "no temporaries left after gc" $?
[[ $(ls "$EDGELLM_HOME/blobs/sha256" | wc -l) -eq 3 ]]; check "exactly the 3 referenced blobs remain" $?
"$E" models verify >/dev/null; check "verify after gc" $?

# 4. Concurrent installs and activations.
for v in 4 5 6 7; do
  "$variant" "$base" "$tmp/m$v.gguf" general.version "v$v" 4
  "$E" models sign --key "$tmp/pub.key" "m:$v" "$tmp/m$v.gguf" >/dev/null
done
for round in 1 2 3; do
  pids=()
  for v in 4 5 6 7; do "$E" models install m "$tmp/m$v.gguf" --no-progress >/dev/null 2>"$tmp/conc$v.err" & pids+=($!); done
  for v in 1 2; do "$E" models activate "m:$v" >/dev/null 2>&1 & pids+=($!); done
  "$E" models gc >/dev/null 2>&1 & pids+=($!)
  rc=0
  for p in "${pids[@]:0:4}"; do wait "$p" || rc=1; done
  wait
  [[ $rc -eq 0 ]]; check "round $round: 4 concurrent installs all succeeded" $?
  "$E" models info m >"$tmp/info"
  n=$(grep -c '^version ' "$tmp/info")
  [[ $n -eq 7 ]]; check "round $round: manifest holds all 7 versions ($n)" $?
  "$E" models verify >/dev/null; check "round $round: store verifies" $?
  "$E" run -m "$("$E" models path m)" -p "Once" -n 2 --temp 0 -t 1 >/dev/null 2>&1; rc=$?; check "round $round: active model $(active_of m) loads" $rc
  [[ $round -lt 3 ]] && for v in 4 5 6 7; do "$E" models activate m:1 >/dev/null; "$E" models remove "m:$v" >/dev/null; done
done
# Two processes downloading the same URL share one partial file under a lock.
python3 "$SOURCE_DIR/tests/helpers/store_http_server.py" "$tmp/www" "$tmp/port2" "$tmp/requests2.log" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 100); do [[ -s "$tmp/port2" ]] && break; sleep 0.05; done
"$E" models remove m >/dev/null
u="http://127.0.0.1:$(cat "$tmp/port2")/files/m3.gguf"
"$E" models install m "$u" >/dev/null 2>"$tmp/d1.err" & p1=$!
"$E" models install m "$u" >/dev/null 2>"$tmp/d2.err" & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
[[ $r1 -eq 0 && $r2 -eq 0 ]]; check "two concurrent downloads of one URL both succeed" $?
[[ $(active_of m) == 3 ]] && "$E" models verify >/dev/null; check "store consistent after concurrent downloads" $?

[[ $fail -eq 0 ]] && echo "store_crash: all passed"
exit $fail
