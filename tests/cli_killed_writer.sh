#!/usr/bin/env bash
# A command writing a model (quantize, convert, prune, train...: all go through one GGUF writer's
# temporary + rename) that hits a file-size limit, or was killed, must not leave OUT.tmp.PID.N next
# to its output: past `ulimit -f` the write fails with EFBIG and a message (SIGXFSZ would kill the
# process mid-file), and a temporary whose writer is gone is deleted by the next write of OUT.
set -u
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/cli_killed_writer"
rm -rf "$tmp" && mkdir -p "$tmp"
M="$SHARED/models/aidreams260K-f32.gguf"
out="$tmp/out.gguf"

# Runs a command under a 256 KiB file-size limit with SIGXFSZ at its default action (a shell or
# harness may have left it ignored, which would hide the signal).
limited() {
  python3 -c 'import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))
os.execvp(sys.argv[1], sys.argv[1:])' "$@"
}

limited "$EDGELLM" quantize "$M" "$out" q8_0 >"$tmp/out.txt" 2>"$tmp/err"
rc=$?
[[ $rc -eq 1 ]] && grep -q "writing '$out' failed: File too large" "$tmp/err"
ok=$?; check "quantize past ulimit -f: exit 1 naming the output ($rc: $(tail -n 1 "$tmp/err"))" $ok
[[ -z $(find "$tmp" -name 'out.gguf*') ]]
ok=$?; check "quantize past ulimit -f leaves no temporary ($(ls "$tmp"))" $ok

# What a killed writer leaves: an unlocked OUT.tmp.PID.N. A live writer's (locked) temporary and
# names that are not OUT's temporaries stay.
stale="$out.tmp.4000000.0"
live="$out.tmp.1.7"
head -c 1000 /dev/zero >"$stale"
touch "$out.tmp.x.1" "$out.tmp.5." "$tmp/other.gguf.tmp.4000000.0"
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "w")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)' "$live" >"$tmp/holder" &
holder=$!
for _ in $(seq 100); do [[ -s "$tmp/holder" ]] && break; sleep 0.1; done
"$EDGELLM" quantize "$M" "$out" q8_0 >/dev/null 2>"$tmp/err"
ok=$?; check "quantize with temporaries about ($(tail -n 1 "$tmp/err"))" $ok
[[ ! -e "$stale" ]]
check "a dead writer's temporary is deleted by the next write" $?
[[ -e "$live" && -e "$out.tmp.x.1" && -e "$out.tmp.5." && -e "$tmp/other.gguf.tmp.4000000.0" ]]
ok=$?; check "a live writer's temporary and other names are kept ($(ls "$tmp"))" $ok
kill "$holder"
wait "$holder" 2>/dev/null
"$EDGELLM" info "$out" >/dev/null 2>&1
check "the output is a whole model" $?

# A file larger than the free space of its file system (tens of terabytes: a --dims with digits
# too many) is refused before a byte is written; it used to write until the disk was full.
timeout -k 2 20 "$EDGELLM" synth --dims 65536,1000,512,512,200000 --vocab "$M" \
  -o "$tmp/huge.gguf" >/dev/null 2>"$tmp/err"
rc=$?
written=$(du -sk "$tmp" | cut -f1)
rm -f "$tmp"/huge.gguf*
[[ $rc -eq 1 ]] && grep -q "'$tmp/huge.gguf' would hold .* GiB of tensors but its file system has .* GiB free; nothing was written" "$tmp/err"
ok=$?; check "synth past the free space: exit 1 before writing ($rc, ${written} KiB in the folder: $(tail -n 1 "$tmp/err"))" $ok

# eval --save-logits knows its size (positions x vocabulary x 4): past the free space of a small
# tmpfs it is refused before the evaluation, where it used to fill the disk and fail at the end
# (skipped where mount is not allowed).
mkdir -p "$tmp/small"
if mount -t tmpfs -o size=256k tmpfs "$tmp/small" 2>/dev/null; then
  seq 1 300 | tr '\n' ' ' > "$tmp/ids.txt" # 300 x 512 x 4 = 600 KiB
  "$EDGELLM" eval -m "$M" --ids "$tmp/ids.txt" --save-logits "$tmp/small/logits.bin" >/dev/null 2>"$tmp/err"
  rc=$?
  [[ $rc -eq 1 ]] && grep -q "the logits of 300 positions x 512 vocabulary x 4 bytes are 0.59 MiB but the file system of '$tmp/small/logits.bin' has 0.2[0-9] MiB free; nothing was evaluated" "$tmp/err" &&
    [[ -z "$(ls -A "$tmp/small")" ]]
  ok=$?; check "eval --save-logits past the free space: refused, nothing left ($rc: $(tail -n 1 "$tmp/err"))" $ok
  seq 1 30 | tr '\n' ' ' > "$tmp/ids.txt" # 60 KiB fit
  "$EDGELLM" eval -m "$M" --ids "$tmp/ids.txt" --save-logits "$tmp/small/logits.bin" >/dev/null 2>"$tmp/err" &&
    [[ $(stat -c %s "$tmp/small/logits.bin") -eq $((30 * 512 * 4)) ]]
  ok=$?; check "eval --save-logits within the free space ($(tail -n 1 "$tmp/err"))" $ok
  umount "$tmp/small"
else
  echo "skip: eval --save-logits on a small tmpfs (mount not permitted)"
fi

rm -rf "$tmp"
exit $fail
