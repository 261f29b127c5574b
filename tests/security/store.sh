#!/usr/bin/env bash
# The model store against hostile input (issue 11): a key smuggled into trusted-keys through the
# path given to `models trust` (newline, and a line longer than a fixed read buffer); installs of
# files that parse but cannot load; a download server that ignores Range; a manifest whose sha256
# is a path; temporaries left by killed installs; the disk-full message; unreadable manifests;
# control characters in signatures and sources. Each case failed before its fix.
set -uo pipefail
fail=0
source "$(dirname "$0")/../lib.sh"
active_of() { "$E" models info "$1" 2>/dev/null | sed -n 's/^active: *//p'; }
sha() { sha256sum "$1" | cut -c1-64; }
has_control() { LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$1"; }

E="$EDGELLM"
tmp="$TEST_TMP/security_store"
rm -rf "$tmp" && mkdir -p "$tmp"
base="$SHARED/models/aidreams260K-f32.gguf"
synth="$BUILD_DIR/tests/store_synth_model"
"$E" models keygen "$tmp/pub.key" >/dev/null && "$E" models keygen "$tmp/evil.key" >/dev/null || bad "keygen"
evil_hex=$(awk '{print $2}' "$tmp/evil.key.pub")
"$BUILD_DIR/tests/store_gguf_variant" "$base" "$tmp/m.gguf" general.version sec || bad "variant"
cp "$tmp/m.gguf" "$tmp/evil.gguf"
"$E" models sign --key "$tmp/pub.key" m:1 "$tmp/m.gguf" >/dev/null || bad "sign m"
"$E" models sign --key "$tmp/evil.key" m:1 "$tmp/evil.gguf" >/dev/null || bad "sign evil"

# ---- 4. `models trust PATH` must not let the path add a key -------------------------------------
# trust_case NAME PUBFILE: trusting PUBFILE in a fresh store trusts our key and nothing else.
trust_case() {
  local name=$1 pub=$2
  export EDGELLM_HOME="$tmp/home-$name"
  "$E" models trust "$pub" >/dev/null 2>"$tmp/err"; check "$name: trust succeeds" $?
  [[ $(grep -c '^ed25519 ' "$EDGELLM_HOME/trusted-keys") -eq 1 ]] && ! has_control "$EDGELLM_HOME/trusted-keys"
  check "$name: trusted-keys holds one key line, no control characters" $?
  expect_refused "$name: a model signed by the key in the path is refused" "not in .*trusted-keys" \
    "$E" models install m "$tmp/evil.gguf"
  "$E" models install m "$tmp/m.gguf" >/dev/null 2>"$tmp/err"; check "$name: the trusted key still works" $?
}
# A directory name with a newline and a key line in it.
nl_dir="$tmp/pubs/x"$'\n'"ed25519 $evil_hex y"
mkdir -p "$nl_dir" && cp "$tmp/pub.key.pub" "$nl_dir/k.pub"
trust_case newline "$nl_dir/k.pub"
# No newline: the key line starts where a 512-byte line buffer would split the line
# ("ed25519 " + 64 hex digits + " " come before the path, so 438 bytes of path fill the buffer).
(
  cd "$tmp/pubs" || exit 1
  pad="$(printf 'a%.0s' {1..200})/$(printf 'b%.0s' {1..200})/$(printf 'c%.0s' {1..35})"
  long="$pad/ed25519 $evil_hex z"
  [[ ${#pad} -eq 437 ]] || { echo "FAIL: pad length ${#pad}" >&2; exit 1; }
  mkdir -p "$long" && cp "$tmp/pub.key.pub" "$long/k.pub"
  E="$E" tmp="$tmp" fail=0
  trust_case longline "$long/k.pub"
  exit $fail
) || fail=1
# The reader takes lines whole: one too long is an error, not two lines.
export EDGELLM_HOME="$tmp/home-reader"
mkdir -p "$EDGELLM_HOME"
{ printf 'ed25519 %s ' "$(awk '{print $2}' "$tmp/pub.key.pub")"; printf 'x%.0s' {1..4100}; echo; } >"$EDGELLM_HOME/trusted-keys"
expect_refused "a trusted-keys line over the limit is an error" "trusted-keys line 1 is longer than 4096 bytes" \
  "$E" models install m "$tmp/m.gguf"
printf 'ed25519 %s\r\n' "$(awk '{print $2}' "$tmp/pub.key.pub")" >"$EDGELLM_HOME/trusted-keys"
expect_refused "a control character in trusted-keys is an error" "trusted-keys line 1 holds a control character" \
  "$E" models install m "$tmp/m.gguf"

# ---- 6. install loads the model before activating it ---------------------------------------------
export EDGELLM_HOME="$tmp/home-load"
"$synth" "$base" "$tmp/good.gguf" 64 2 4 4 128 128 &&
  "$synth" "$base" "$tmp/ff.gguf" 64 2 4 4 128 128 --ff-meta 172 &&
  "$synth" "$base" "$tmp/vocab.gguf" 64 2 4 4 128 128 --vocab-rows 500 &&
  "$BUILD_DIR/tests/gguf_edit" "$tmp/good.gguf" "$tmp/missing.gguf" --drop blk.1.ffn_up.weight
check "broken model variants written" $?
"$E" models install s "$tmp/good.gguf" --allow-unsigned >/dev/null 2>&1; check "a loadable model installs" $?
good_sha=$(sha "$tmp/good.gguf")
for bad_model in "ff:shape .* need" "missing:tensor 'blk.1.ffn_up.weight' is missing" "vocab:vocabulary has 512 tokens but the embedding has 500"; do
  file=${bad_model%%:*} why=${bad_model#*:}
  expect_refused "install of a model that cannot load ($file)" "refusing to install .*$file.gguf: the model does not load.*$why" \
    "$E" models install s "$tmp/$file.gguf" --allow-unsigned
done
[[ "$(active_of s)" == 1 && "$(sha "$("$E" models path s)")" == "$good_sha" ]]; check "the previous version is still active" $?
[[ $("$E" models info s | grep -c '^version ') -eq 1 && $(ls "$EDGELLM_HOME/blobs/sha256" | wc -l) -eq 1 &&
   -z "$(ls -A "$EDGELLM_HOME/tmp")" ]]; check "nothing half-installed (no version, blob or temporary)" $?
"$E" run -m s -p "Once" -n 2 -t 1 >/dev/null 2>&1; check "the active version still runs" $?

# ---- 7. a server that ignores Range --------------------------------------------------------------
export EDGELLM_HOME="$tmp/home-http"
mkdir -p "$tmp/www" && cp "$tmp/m.gguf" "$tmp/m.gguf.sig" "$tmp/www/" && cp "$tmp/m.gguf" "$tmp/www/m2.gguf"
"$E" models trust "$tmp/pub.key.pub" >/dev/null
python3 "$SOURCE_DIR/tests/helpers/store_http_server.py" "$tmp/www" "$tmp/port" "$tmp/requests.log" &
server=$!
trap 'kill $server 2>/dev/null; [[ -n "${holder:-}" ]] && kill $holder 2>/dev/null' EXIT
for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$tmp/port")"
# Dropped mid-body, then the retry's Range is ignored: one install, restarted from byte 0.
"$E" models install m "$url/drop/m.gguf?n=1&norange=1" --sig "$url/files/m.gguf.sig" >/dev/null 2>"$tmp/err"
rc=$?; check "dropped connection then Range ignored: install completes ($(head -c 160 "$tmp/err"))" $rc
grep -q "ignored the request to resume at byte [1-9].*from byte 0" "$tmp/err"; check "it says it restarted from byte 0" $?
grep -Eq "^/drop/m.gguf [1-9][0-9]*$" "$tmp/requests.log"; check "the retry did ask for a range" $?
[[ "$(sha "$("$E" models path m)")" == "$(sha "$tmp/m.gguf")" ]]; check "the installed bytes are intact" $?
"$E" models remove m >/dev/null && "$E" models gc >/dev/null
# The retries run out; the rerun meets a server that ignores Range and must not fail forever.
# (the server counts requests per path: m2.gguf is a copy under a path not asked for yet)
expect_refused "download that drops with no retries left" "did not complete after 1 attempts.*resume" \
  "$E" models install m "$url/drop/m2.gguf?n=1&norange=1" --sig "$url/files/m.gguf.sig" --retries 0
"$E" models install m "$url/drop/m2.gguf?n=1&norange=1" --sig "$url/files/m.gguf.sig" --retries 0 >/dev/null 2>"$tmp/err"
rc=$?; check "the rerun restarts from byte 0 and completes ($(head -c 160 "$tmp/err"))" $rc
[[ "$(sha "$("$E" models path m)")" == "$(sha "$tmp/m.gguf")" && -z "$(ls -A "$EDGELLM_HOME/tmp")" ]]
check "intact, and no temporaries left" $?
"$E" models remove m >/dev/null && "$E" models gc >/dev/null
# A whole file already in the partial (killed after the body arrived) and a server without Range.
whole="$url/files/m.gguf?norange=1"
cp "$tmp/m.gguf" "$EDGELLM_HOME/tmp/download-$(printf %s "$whole" | sha256sum | cut -c1-32).part"
"$E" models install m "$whole" --sig "$url/files/m.gguf.sig" --retries 1 >/dev/null 2>"$tmp/err"
rc=$?; check "a complete partial and a server without Range ($(head -c 160 "$tmp/err"))" $rc

# ---- disk full: the message matches what happened to the partial --------------------------------
"$E" models remove m >/dev/null && "$E" models gc >/dev/null
(ulimit -f 512; "$E" models install m "$url/files/m.gguf" --sig "$url/files/m.gguf.sig" >"$tmp/out" 2>"$tmp/err"); rc=$?
[[ $rc -ne 0 ]] && grep -q "disk full.*partial download was deleted" "$tmp/err" && ! grep -q "resume" "$tmp/err" &&
  [[ -z "$(ls -A "$EDGELLM_HOME/tmp")" ]]
rc=$?; check "disk full: says the partial was deleted, promises no resume ($(head -c 200 "$tmp/err"))" $rc

# ---- 10. a manifest's sha256 must be a hash, never a path ----------------------------------------
"$E" models install m "$tmp/m.gguf" >/dev/null 2>&1; check "install for the manifest cases" $?
manifest="$EDGELLM_HOME/models/m/manifest.json"
cp "$manifest" "$tmp/manifest.good"
n_blobs=$(ls "$EDGELLM_HOME/blobs/sha256" | wc -l)
# tamper FIELD VALUE: sets FIELD of the first version entry.
tamper() {
  python3 - "$manifest" "$1" "$2" <<'EOF'
import json, sys
path, field, value = sys.argv[1:]
m = json.load(open(path))
m["versions"][0][field] = value
json.dump(m, open(path, "w"))
EOF
}
target="$(printf '../%.0s' {1..12})$(printf './%.0s' {1..9})etc/passwd"  # 64 characters
[[ ${#target} -eq 64 ]] || bad "target length ${#target}"
tamper sha256 "$target"
expect_refused "models path with a path in sha256" "manifest .*manifest.json is corrupt: version entry 1: sha256 is not a SHA-256" \
  "$E" models path m
! grep -q passwd "$tmp/out"; check "no path printed" $?
expect_refused "run -m NAME with a path in sha256" "manifest .* is corrupt" "$E" run -m m -p x -n 1
expect_refused "verify names the corrupt manifest" "problem" "$E" models verify
grep -q "CORRUPT m.*manifest .*models/m/manifest.json is corrupt" "$tmp/out"; check "verify's line names the file" $?
expect_refused "gc stops on a corrupt manifest" "corrupt" "$E" models gc
[[ $(ls "$EDGELLM_HOME/blobs/sha256" | wc -l) -eq $n_blobs ]]; check "gc deleted nothing" $?
cp "$tmp/manifest.good" "$manifest"
tamper version $'1\e[31m'
expect_refused "a control character in a manifest version" "version entry 1: version is not a version name" "$E" models info m
! has_control "$tmp/err"; check "the message carries no control character" $?
cp "$tmp/manifest.good" "$manifest"
"$E" models path m >/dev/null; check "the restored manifest works" $?

# ---- same class: signature fields and install sources reach messages and manifests ---------------
cp "$tmp/m.gguf" "$tmp/esc.gguf"
sed $'s/"name": "m"/"name": "m\\\\u001b[2J"/' "$tmp/m.gguf.sig" >"$tmp/esc.gguf.sig"
grep -q 'u001b' "$tmp/esc.gguf.sig" || bad "escape sequence not in the test signature"
expect_refused "a signature name with a control character" "signature name or version is not" "$E" models install m:2 "$tmp/esc.gguf"
! has_control "$tmp/err"; check "no control character echoed from the signature" $?
"$BUILD_DIR/tests/gguf_edit" "$base" "$tmp/arch.gguf" --set-str general.architecture $'llama\e[2J' || bad "gguf_edit arch"
"$E" plan -m "$tmp/arch.gguf" --ctx 64 >"$tmp/out" 2>"$tmp/err"
! has_control "$tmp/out" && ! has_control "$tmp/err"; check "plan prints no control character from a file's architecture" $?
expect_refused "install of a file with an escape sequence as its architecture" "refusing to install .*arch.gguf: not a usable GGUF model" \
  "$E" models install arch "$tmp/arch.gguf" --allow-unsigned
! has_control "$tmp/err"; check "the refusal carries no control character" $?
src_dir="$tmp/src"$'\n'"x"
mkdir -p "$src_dir" && cp "$base" "$src_dir/plain.gguf"
"$E" models install plain "$src_dir/plain.gguf" --allow-unsigned >/dev/null 2>&1; check "install from a path with a newline" $?
"$E" models info plain >"$tmp/info" 2>&1; check "its manifest reads back" $?
grep -q 'source: .*src\\x0ax/plain.gguf' "$tmp/info"; check "the source is recorded escaped" $?

# ---- stale temporaries of killed installs go at the next install; live ones stay ----------------
head -c 1048576 /dev/zero >"$EDGELLM_HOME/tmp/install-killed1"
head -c 1024 /dev/zero >"$EDGELLM_HOME/tmp/install-live01"
head -c 1024 /dev/zero >"$EDGELLM_HOME/tmp/download-0123456789abcdef0123456789abcdef.part"
# A live install, as far as the lock shows: one process holding flock() on its temporary.
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1])
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)' "$EDGELLM_HOME/tmp/install-live01" >"$tmp/holder.out" 2>&1 &
holder=$!
for _ in $(seq 100); do [[ -s "$tmp/holder.out" ]] && break; sleep 0.05; done
"$E" models install m:3 "$tmp/good.gguf" --allow-unsigned >/dev/null 2>&1; check "install with stale temporaries around" $?
[[ ! -e "$EDGELLM_HOME/tmp/install-killed1" ]]; check "the killed install's copy is gone" $?
[[ -e "$EDGELLM_HOME/tmp/install-live01" ]]; check "a temporary a live process holds is kept" $?
[[ -e "$EDGELLM_HOME/tmp/download-0123456789abcdef0123456789abcdef.part" ]]; check "a resumable partial download is kept" $?
kill $holder 2>/dev/null; wait $holder 2>/dev/null; holder=
# A `trust` killed mid-write leaves its temporary beside trusted-keys: gc removes it.
echo "ed25519 partial" >"$EDGELLM_HOME/.trusted-keys.Ab12Cd"
"$E" models gc >/dev/null && [[ ! -e "$EDGELLM_HOME/.trusted-keys.Ab12Cd" ]]; check "gc removes a killed trust's temporary" $?

# ---- verify on an unreadable manifest names it; remove clears it ---------------------------------
mkdir -p "$EDGELLM_HOME/models/broken"
ln -s manifest.json "$EDGELLM_HOME/models/broken/manifest.json"  # a symlink loop: lstat works, open fails
expect_refused "verify with an unreadable manifest" "problem" "$E" models verify
grep -q "CORRUPT broken.*cannot read the manifest .*models/broken/manifest.json" "$tmp/out"; rc=$?; check "verify names the unreadable file ($(grep broken "$tmp/out"))" $rc
"$E" models list >"$tmp/list" 2>&1; grep -q "^broken .*unreadable" "$tmp/list"; check "list shows it unreadable" $?
"$E" models remove broken >/dev/null 2>&1; check "remove clears an unreadable manifest" $?
"$E" models verify >/dev/null; check "the store verifies afterwards" $?

# ---- a signature file's size: one padded past 64 KiB is still read whole; over 1 MiB is refused -----
# (a local file was cut at 64 KiB and then called "not valid JSON"; a URL's limit was already 1 MiB)
export EDGELLM_HOME="$tmp/home-sigsize"
"$E" models trust "$tmp/pub.key.pub" >/dev/null || bad "trust for the signature sizes"
pad_signature() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["note"] = "x" * int(sys.argv[3]); json.dump(d, open(sys.argv[2], "w"))' "$@"
}
pad_signature "$tmp/m.gguf.sig" "$tmp/padded.sig" 100000
"$E" models install m "$tmp/m.gguf" --sig "$tmp/padded.sig" >/dev/null 2>"$tmp/err"
rc=$?; check "a valid signature of 100 KB installs ($(head -c 160 "$tmp/err"))" $rc
pad_signature "$tmp/m.gguf.sig" "$tmp/huge.sig" 2000000
expect_refused "a signature file over 1 MiB" "huge.sig is larger than 1 MiB: not a signature" \
  "$E" models install m:2 "$tmp/m.gguf" --sig "$tmp/huge.sig"

# ---- the next version after one too large to count up from ---------------------------------------
# (LONG_MAX + 1 wrapped to "-9223372036854775808", which the manifest reader refuses: the whole
# model became unreadable)
cp "$tmp/m.gguf" "$tmp/plain.gguf"  # no .sig beside it
for big in 9223372036854775807 99999999999999999999; do
  export EDGELLM_HOME="$tmp/home-version-$big"
  "$E" models install "m:$big" "$tmp/good.gguf" --allow-unsigned >/dev/null 2>&1 || bad "install m:$big"
  "$E" models install m "$tmp/plain.gguf" --allow-unsigned >"$tmp/out" 2>"$tmp/err"
  rc=$?; check "after m:$big an install without a version succeeds ($(head -c 160 "$tmp/err"))" $rc
  grep -q "^installed m:1 " "$tmp/out"; rc=$?; check "it is m:1 ($(head -c 80 "$tmp/out"))" $rc
  "$E" models verify >/dev/null 2>"$tmp/err"; rc=$?; check "the store verifies ($(head -c 160 "$tmp/err"))" $rc
done

[[ $fail -eq 0 ]] && echo "security/store: all passed"
exit $fail
