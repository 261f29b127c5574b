#!/usr/bin/env bash
# The store and its keys on a disk that fills up at each step: an update larger than the free
# space, a blob that fits but its manifest does not, an activation, `models trust`, making a key.
# Each must fail with a clear error and leave what was there before whole: the previous version
# active and intact, trusted-keys unchanged, no half-made key. The disk is a small tmpfs (skipped
# where mount is not allowed).
set -uo pipefail
fail=0
source "$(dirname "$0")/lib.sh"
E="$EDGELLM"
tmp="$TEST_TMP/store_full_disk"
disk="$tmp/disk"
if mountpoint -q "$disk" 2>/dev/null; then umount "$disk"; fi
rm -rf "$tmp" && mkdir -p "$disk"
if ! mount -t tmpfs -o size=12m tmpfs "$disk" 2>/dev/null; then
  echo "skip: mount not permitted (the file-size limit cases in store_http.sh cover the message)"
  exit 0
fi
trap 'umount "$disk" 2>/dev/null' EXIT
export EDGELLM_HOME="$disk/home"
variant="$BUILD_DIR/tests/store_gguf_variant"
base="$SHARED/models/aidreams260K-f32.gguf"
sha() { sha256sum "$1" | cut -c1-64; }
active_of() { "$E" models info "$1" 2>/dev/null | sed -n 's/^active: *//p'; }
free_bytes() { echo $(($(stat -f -c %a "$disk") * $(stat -f -c %S "$disk"))); }
# fill_to BYTES: a filler file leaves exactly BYTES free on the tmpfs (whole pages).
fill_to() {
  rm -f "$disk/filler"
  head -c $(($(free_bytes) - $1)) /dev/zero >"$disk/filler" || bad "filler"
  [[ $(free_bytes) -eq $1 ]] || bad "filler left $(free_bytes) bytes free, not $1"
}
# intact LABEL: v1 is active with its own bytes, verify passes, no temporaries are left.
intact() {
  [[ $(active_of m) == 1 && $(sha "$("$E" models path m)") == "$sha1" ]]; check "$1: v1 still active and intact" $?
  "$E" models verify >"$tmp/verify" 2>&1
  rc=$?; check "$1: verify passes ($(grep -v '^ok' "$tmp/verify" | head -c 160))" $rc
  [[ -z "$(ls -A "$EDGELLM_HOME/tmp")" && -z "$(ls -A "$EDGELLM_HOME/models/m" | grep -v '^manifest.json$')" ]]
  check "$1: no temporaries left" $?
}

"$E" models keygen "$tmp/pub.key" >/dev/null && "$E" models trust "$tmp/pub.key.pub" >/dev/null || bad "keygen"
"$variant" "$base" "$tmp/m1.gguf" general.version v1 && "$variant" "$base" "$tmp/m2.gguf" general.version v2 2 || bad "variants"
for v in 1 2; do "$E" models sign --key "$tmp/pub.key" "m:$v" "$tmp/m$v.gguf" >/dev/null || bad "sign $v"; done
sha1=$(sha "$tmp/m1.gguf")
"$E" models install m "$tmp/m1.gguf" --no-progress >/dev/null 2>&1; check "install v1 on the tmpfs" $?
size2=$(stat -c %s "$tmp/m2.gguf")
pages2=$(( (size2 + 4095) / 4096 * 4096 ))

# An update larger than the free space.
fill_to $((pages2 / 8192 * 4096))
expect_refused "update larger than the free space" "m2.gguf is [0-9.]* MiB but the store's file system has [0-9.]* MiB free; nothing was copied" \
  "$E" models install m "$tmp/m2.gguf" --no-progress
intact "update too large"

# The blob fits to the page, the manifest that would reference it does not.
fill_to "$pages2"
expect_refused "blob fits, manifest does not" "no space left writing .*manifest.json" \
  "$E" models install m "$tmp/m2.gguf" --no-progress
intact "manifest does not fit"
"$E" models gc >"$tmp/gc" 2>&1
rc=$?; check "gc deletes the blob nothing references ($(cat "$tmp/gc"))" $rc
[[ $(ls "$EDGELLM_HOME/blobs/sha256") == "$sha1" ]]; check "only v1's blob is left" $?

# Switching versions with no page free for the manifest.
fill_to $((pages2 + 8192))
"$E" models install m "$tmp/m2.gguf" --no-activate --no-progress >/dev/null 2>&1; check "v2 installed inactive" $?
fill_to 0
expect_refused "activate on a full disk" "no space left writing .*manifest.json" "$E" models activate m:2
intact "activate"

# Trusting a key with no page free: trusted-keys keeps its keys.
cp "$EDGELLM_HOME/trusted-keys" "$tmp/trusted.before"
"$E" models keygen "$tmp/other.key" >/dev/null || bad "keygen other"
expect_refused "trust on a full disk" "no space left writing .*trusted-keys" "$E" models trust "$tmp/other.key.pub"
cmp -s "$tmp/trusted.before" "$EDGELLM_HOME/trusted-keys"; check "trusted-keys unchanged" $?
[[ -z "$(ls -A "$EDGELLM_HOME" | grep '^\.trusted-keys\.')" ]]; check "no temporary of trusted-keys left" $?

# A key made on a disk with room for the secret but not its public half: nothing is left behind,
# so a rerun with space succeeds (before, the secret stayed without a .pub and the rerun refused
# to overwrite it).
fill_to 4096
expect_refused "keygen with room for one file" "no key was made .*new.key removed again.*no space left" \
  "$E" models keygen "$disk/new.key"
[[ ! -e "$disk/new.key" && ! -e "$disk/new.key.pub" ]]; check "neither half of the key is left" $?
rm -f "$disk/filler"
"$E" models keygen "$disk/new.key" >/dev/null 2>"$tmp/err"
rc=$?; check "keygen rerun with space ($(head -c 160 "$tmp/err"))" $rc
[[ -s "$disk/new.key" && -s "$disk/new.key.pub" ]]; check "both halves written" $?

# With space again the update goes through.
"$E" models install m "$tmp/m2.gguf" --no-progress >/dev/null 2>"$tmp/err"
rc=$?; check "update with space ($(head -c 160 "$tmp/err"))" $rc
[[ $(active_of m) == 2 && $(sha "$("$E" models path m)") == "$(sha "$tmp/m2.gguf")" ]]; check "v2 active and intact" $?
"$E" models verify >/dev/null; check "store verifies at the end" $?
[[ $fail -eq 0 ]] && echo "store_full_disk: all passed"
exit $fail
