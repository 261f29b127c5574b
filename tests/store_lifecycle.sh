#!/usr/bin/env bash
# The model store end to end on real GGUF files: signed install, update, activate, rollback, pin,
# remove, gc, verify; and every kind of bad input (tampered blob, wrong hash, bad, missing or
# untrusted signature) refused with a clear message while the active version stays as it was.
set -uo pipefail
fail=0
source "$(dirname "$0")/lib.sh"
active_of() { "$EDGELLM" models info "$1" | sed -n 's/^active: *//p'; }
active_sha() { sha256sum "$("$EDGELLM" models path "$1")" | cut -c1-64; }

tmp="$TEST_TMP/store_lifecycle"
rm -rf "$tmp" && mkdir -p "$tmp"
export EDGELLM_HOME="$tmp/home"
variant="$BUILD_DIR/tests/store_gguf_variant"
base="$SHARED/models/aidreams260K-f32.gguf"
E="$EDGELLM"

# Publisher side: a key, three versions of one model with different metadata, signed.
"$E" models keygen "$tmp/pub.key" >/dev/null; check "keygen" $?
"$E" models keygen "$tmp/stranger.key" >/dev/null; check "keygen second key" $?
for v in 1 2 3; do
  "$variant" "$base" "$tmp/dreams-v$v.gguf" general.version "v$v" || bad "make variant $v"
  "$E" models sign --key "$tmp/pub.key" "dreams:$v" "$tmp/dreams-v$v.gguf" >/dev/null; check "sign v$v" $?
done
sha1=$(sha256sum "$tmp/dreams-v1.gguf" | cut -c1-64)
sha2=$(sha256sum "$tmp/dreams-v2.gguf" | cut -c1-64)
sha3=$(sha256sum "$tmp/dreams-v3.gguf" | cut -c1-64)
[[ $sha1 != "$sha2" && $sha2 != "$sha3" ]]; check "variants differ" $?

# Nothing is trusted yet: a signed install is refused.
expect_refused "untrusted key refused" "not in .*trusted-keys" "$E" models install dreams "$tmp/dreams-v1.gguf"
[[ ! -e "$EDGELLM_HOME/models/dreams/manifest.json" ]]; check "nothing visible after refusal" $?
"$E" models trust "$tmp/pub.key.pub" >/dev/null; check "trust publisher key" $?

# Install v1 (version taken from the signature) and check what is recorded.
"$E" models install dreams "$tmp/dreams-v1.gguf" >"$tmp/out" 2>&1; check "install v1" $?
[[ "$(active_of dreams)" == 1 ]]; check "v1 active" $?
[[ "$(active_sha dreams)" == "$sha1" ]]; check "active file is v1's bytes" $?
"$E" models info dreams >"$tmp/info"
grep -q "architecture:  llama" "$tmp/info" && grep -q "parameters:    263744" "$tmp/info" &&
  grep -q "context:       128" "$tmp/info" && grep -q "quantization:  F32" "$tmp/info" &&
  grep -q "signed by:     $(awk '{print $2}' "$tmp/pub.key.pub")" "$tmp/info"
check "manifest records architecture, parameters, context, quantization, signer" $?
blob=$("$E" models path dreams)
[[ ! -w "$blob" || $(stat -c %a "$blob") == 444 ]]; check "blob is read-only" $?
"$E" plan -m dreams -c 64 --json | grep -q '"weights_bytes": 1054976'; check "plan resolves a store name" $?

# Update to v2 and v3; rollback returns to the previous version.
"$E" models install dreams "$tmp/dreams-v2.gguf" >/dev/null 2>&1; check "install v2" $?
[[ "$(active_of dreams)" == 2 && "$(active_sha dreams)" == "$sha2" ]]; check "update made v2 active" $?
"$E" models rollback dreams >/dev/null; check "rollback" $?
[[ "$(active_of dreams)" == 1 && "$(active_sha dreams)" == "$sha1" ]]; check "rollback restored v1" $?
"$E" models activate dreams:2 >/dev/null; check "activate v2" $?
[[ "$(active_of dreams)" == 2 ]]; check "v2 active again" $?

# Pin: an install leaves the active version alone.
"$E" models pin dreams >/dev/null; check "pin" $?
"$E" models install dreams "$tmp/dreams-v3.gguf" >"$tmp/out" 2>&1; check "install v3 while pinned" $?
[[ "$(active_of dreams)" == 2 ]]; check "pinned model kept v2 active" $?
grep -q "pinned" "$tmp/out"; check "install says it did not activate because of the pin" $?
"$E" models activate dreams:3 >/dev/null; check "explicit activate still works when pinned" $?
"$E" models unpin dreams >/dev/null && "$E" models activate dreams:2 >/dev/null; check "unpin" $?
"$E" models install dreams:3 "$tmp/dreams-v3.gguf" >/dev/null 2>&1; check "reinstalling an installed version succeeds" $?
[[ "$(active_of dreams)" == 3 ]]; check "reinstalling activates it" $?
[[ $(ls "$EDGELLM_HOME/blobs/sha256" | wc -l) -eq 3 ]]; check "reinstall added no blob" $?
"$E" models activate dreams:2 >/dev/null; check "back to v2" $?

# Refusals: each leaves v2 active.
cp "$tmp/dreams-v3.gguf" "$tmp/evil.gguf"
cp "$tmp/dreams-v3.gguf.sig" "$tmp/evil.gguf.sig"
sed -i 's/"version": "3"/"version": "4"/' "$tmp/evil.gguf.sig"
expect_refused "signature altered (version changed)" "bad signature" "$E" models install dreams "$tmp/evil.gguf"
printf 'X' | dd of="$tmp/evil.gguf" bs=1 seek=5000 conv=notrunc status=none
cp "$tmp/dreams-v3.gguf.sig" "$tmp/evil.gguf.sig"
expect_refused "file tampered after signing" "does not match the signed" "$E" models install dreams "$tmp/evil.gguf"
"$E" models sign --key "$tmp/stranger.key" dreams:5 "$tmp/evil.gguf" >/dev/null
expect_refused "signed by an untrusted key" "not in .*trusted-keys" "$E" models install dreams "$tmp/evil.gguf"
rm -f "$tmp/evil.gguf.sig"
expect_refused "missing signature" "no signature" "$E" models install dreams:6 "$tmp/evil.gguf"
expect_refused "signature for another model" "signature is for model 'dreams'" "$E" models install other "$tmp/dreams-v1.gguf"
expect_refused "signature for another version" "signature is for version '1'" "$E" models install dreams:7 "$tmp/dreams-v1.gguf"
head -c 100000 "$tmp/dreams-v1.gguf" >"$tmp/trunc.gguf"
expect_refused "truncated GGUF even when unsigned allowed" "not a usable GGUF" "$E" models install dreams:8 "$tmp/trunc.gguf" --allow-unsigned
[[ "$(active_of dreams)" == 2 && "$(active_sha dreams)" == "$sha2" ]]; check "v2 still active after every refusal" $?
[[ -z "$(ls -A "$EDGELLM_HOME/tmp")" ]]; check "refusals leave no temporaries" $?

# Tampered blob in the store: verify reports it, activating it is refused.
blob3="$EDGELLM_HOME/blobs/sha256/$sha3"
chmod u+w "$blob3"; printf 'Y' | dd of="$blob3" bs=1 seek=4000 conv=notrunc status=none
expect_refused "verify reports corruption" "problem" "$E" models verify
grep -q "CORRUPT dreams:3" "$tmp/out"; check "verify names the corrupt version" $?
expect_refused "activating a tampered blob" "dreams:3 is corrupt" "$E" models activate dreams:3
[[ "$(active_of dreams)" == 2 ]]; check "v2 still active after tampered activation" $?
# A manifest whose hash does not match its blob.
python3 - "$EDGELLM_HOME/models/dreams/manifest.json" "$sha1" <<'EOF'
import json, sys
path, sha1 = sys.argv[1], sys.argv[2]
m = json.load(open(path))
for v in m["versions"]:
    if v["version"] == "1":
        v["sha256"] = "0" * 64
json.dump(m, open(path, "w"))
EOF
expect_refused "manifest hash does not match (missing blob)" "dreams:1: its file .* is missing" "$E" models activate dreams:1
[[ "$(active_of dreams)" == 2 ]]; check "v2 still active after bad manifest entry" $?

# Unsigned installs only when asked; auto-numbered versions.
"$E" models install plain "$base" --allow-unsigned >/dev/null 2>&1; check "unsigned install with --allow-unsigned" $?
[[ "$(active_of plain)" == 1 ]]; check "unsigned install got version 1" $?
"$E" models install plain "$tmp/dreams-v2.gguf" --allow-unsigned --sig /dev/null >/dev/null 2>&1
[[ $? -ne 0 ]]; check "an unreadable --sig is an error even with --allow-unsigned" $?
"$E" models install vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" --allow-unsigned >/dev/null 2>&1; check "install the shared F16 model" $?
"$E" models info vocab >"$tmp/info2"
grep -q "quantization:  F16" "$tmp/info2" && grep -q "size:.*(9180480 bytes)" "$tmp/info2" && grep -q "signed by:     (unsigned)" "$tmp/info2"
check "F16 model's manifest: quantization, size, unsigned" $?
"$E" models list >"$tmp/list"; grep -q "^plain" "$tmp/list" && grep -q "^dreams" "$tmp/list" && grep -q "^vocab .* F16 " "$tmp/list"; check "list shows all three" $?

# Remove and gc.
expect_refused "removing the active version" "is the active version" "$E" models remove dreams:2
"$E" models remove dreams:3 >/dev/null; check "remove v3" $?
"$E" models gc >"$tmp/gc"; check "gc" $?
[[ ! -e "$blob3" && -e "$EDGELLM_HOME/blobs/sha256/$sha2" ]]; check "gc dropped v3's blob and kept v2's" $?
"$E" models remove plain >/dev/null; check "remove a whole model" $?
expect_refused "removed model is gone" "not installed" "$E" models info plain
"$E" models gc >/dev/null
[[ ! -e "$EDGELLM_HOME/blobs/sha256/$(sha256sum "$base" | cut -c1-64)" ]]; check "gc dropped the removed model's blob" $?
"$E" run -m "$("$E" models path dreams)" -p "Once" -n 4 --temp 0 -t 1 >"$tmp/run.out" 2>"$tmp/run.err"; check "the active version loads and generates" $?
"$E" run -m dreams -p "Once" -n 4 --temp 0 -t 1 >"$tmp/run-name.out" 2>/dev/null && cmp -s "$tmp/run.out" "$tmp/run-name.out"
check "edgellm run -m NAME runs the active version" $?
"$E" run -m dreams:3 -p "Once" -n 1 -t 1 >/dev/null 2>"$tmp/err"; [[ $? -ne 0 ]] && grep -q "not installed" "$tmp/err"
check "edgellm run -m NAME:VERSION of a removed version fails clearly" $?

[[ $fail -eq 0 ]] && echo "store_lifecycle: all passed"
exit $fail
