#!/usr/bin/env bash
# A model file truncated while a command has it loaded (mapped): the next read of a weight whose
# page is gone must end the command with a message saying what happened and what to do, not a bare
# "Bus error" from the shell. `chat` waits for its input after loading, which places the truncation
# between the load and the first forward pass every time.
set -u
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/cli_shrunk_model"
rm -rf "$tmp" && mkdir -p "$tmp"
cp "$SHARED/models/aidreams260K-f32.gguf" "$tmp/m.gguf" && chmod u+w "$tmp/m.gguf"
mkfifo "$tmp/in"
"$EDGELLM" chat -m "$tmp/m.gguf" -n 4 -t 1 <"$tmp/in" >"$tmp/out" 2>"$tmp/err" &
pid=$!
exec 7>"$tmp/in"
# Loaded once it has said which chat format it uses (the model has none: a warning).
for _ in $(seq 200); do grep -q "chat template" "$tmp/err" && break; sleep 0.05; done
grep -q "chat template" "$tmp/err"; check "chat loaded the model" $?
truncate -s 300000 "$tmp/m.gguf"
echo "hello there" >&7
exec 7>&-
wait $pid
rc=$?
[[ $rc -eq 1 ]]; check "exit status 1, not a signal ($rc)" $?
grep -q "a model file shrank while it was in use.*renaming it over the old" "$tmp/err"
rc=$?; check "the message says what happened and what to do ($(tail -c 200 "$tmp/err"))" $rc
[[ $fail -eq 0 ]] && echo "cli_shrunk_model: all passed"
exit $fail
