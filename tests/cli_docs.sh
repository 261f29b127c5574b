#!/usr/bin/env bash
# What the docs and the help tell a user to type, as typed: every option a command's --help names
# is one the command accepts (and the options it accepts are in its --help: models install's
# --no-progress was not); `make demo` prints the command of each of its runs, and that command
# gives the text the demo showed (it left out --repeat-penalty 1.1). docs/server.md, "Session 27"
# has the table of the documented commands checked by hand.
set -uo pipefail
fail=0
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/cli_docs"
rm -rf "$tmp" && mkdir -p "$tmp"
E="$EDGELLM"

# Names in help texts that are not this command's options: spm_train's options in convert's
# help, and the other commands' options that imatrix's and convert's help point to.
not_options=" convert:--model convert:--normalization convert:--remove convert:--vocab imatrix:--imatrix "
for c in run chat serve info convert tokenize models plan recommend synth quantize eval bench \
  redact imatrix prune gateway train distill; do
  "$E" "$c" --help >"$tmp/help" 2>&1
  check "$c --help exits 0" $?
  for o in $(grep -oE -- '--[a-z][a-z0-9-]+' "$tmp/help" | sort -u); do
    [[ "$not_options" == *" $c:$o "* ]] && continue
    # models takes its options after an action.
    args=("$c" "$o" 1)
    [[ $c == models ]] && args=(models install m /nonexistent "$o" 1)
    timeout 10 "$E" "${args[@]}" </dev/null >/dev/null 2>"$tmp/err"
    ! grep -q "unknown \(option\|argument\) '$o'" "$tmp/err"
    ok=$?; check "$c: '$o' of its --help is accepted ($(head -c 120 "$tmp/err"))" $ok
  done
done
"$E" --help 2>&1 | grep -q -- "--version" && "$E" --version >/dev/null
check "edgellm --help names --version, which works" $?
# Options a command accepts that its --help must name (the ones a user meets in the docs).
while read -r c o; do
  "$E" "$c" --help 2>&1 | grep -q -- "$o"
  check "$c --help names $o" $?
done <<'LIST'
models --no-progress
models --no-activate
models --retries
info --no-tensors
convert --name
eval --save-logits
run --repeat-last-n
plan --ctx
recommend --ctx
LIST

# make demo: the commands it prints before its runs give the text it showed (the prompt, then
# each run's output and a blank line), run from the source tree as the paths in them are.
bash "$SOURCE_DIR/scripts/demo.sh" "$(dirname "$E")" >"$tmp/demo.out" 2>"$tmp/demo.err"
check "scripts/demo.sh runs" $?
: >"$tmp/demo.want"
n=0
while IFS= read -r line; do
  cmd=${line#== edgellm }
  prompt=$(sed -n "s/.* -p '\\([^']*\\)'.*/\\1/p" <<<"$cmd")
  eval "set -- $cmd"
  (cd "$SOURCE_DIR" && printf '%s' "$prompt" && "$E" "$@" 2>/dev/null && echo) >>"$tmp/demo.want"
  check "the demo's printed command runs: $cmd" $?
  n=$((n + 1))
done < <(grep '^== edgellm run' "$tmp/demo.err")
[[ $n -eq 3 ]]; check "the demo printed 3 commands" $?
cmp -s "$tmp/demo.want" "$tmp/demo.out"
ok=$?; check "the printed commands give the demo's text ($(cmp "$tmp/demo.want" "$tmp/demo.out" 2>&1))" $ok

[[ $fail -eq 0 ]] && echo "cli_docs: all passed"
exit $fail
