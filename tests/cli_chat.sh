#!/usr/bin/env bash
# `edgellm chat` as a user drives it: turns piped on stdin with the shared aidreams model (which has
# no chat template, so ChatML with a warning). The second turn must reuse the first turn's KV cache
# and still produce exactly what `edgellm run` produces from the whole rendered conversation
# evaluated from scratch; /reset, /exit, end of input and a full context behave as documented.
set -uo pipefail
fail=0
source "$(dirname "$0")/lib.sh"
tmp="$TEST_TMP/cli_chat"
rm -rf "$tmp" && mkdir -p "$tmp"
model="$SHARED/models/aidreams260K-f32.gguf"
# Seeded sampling: every turn restarts the sampler from the seed, as `run` does, and the replies
# are real text (greedy decoding of this model after a ChatML prompt is only newlines).
opts=(-m "$model" --temp 0.9 --seed 2 -n 10 -t 2)

# Two turns, then end of input (no /exit).
printf 'Tell me a dream\nWhat happened next?\n' |
  "$EDGELLM" chat "${opts[@]}" --verbose >"$tmp/chat.out" 2>"$tmp/chat.err"
check "two piped turns exit 0 at end of input" $?
grep -q "warning: the model has no chat template; using the ChatML format" "$tmp/chat.err"
check "ChatML fallback warning on stderr" $?
# turn N FILE: "prompt-tokens cached-tokens reply-tokens" from the --verbose line of turn N.
turn() { sed -n "s/^\[chat\] turn $1: prompt \([0-9]*\) tokens, \([0-9]*\) cached.*reply \([0-9]*\) tokens.*/\1 \2 \3/p" "$2"; }
read -r p1 c1 r1 <<<"$(turn 1 "$tmp/chat.err")"
read -r p2 c2 r2 <<<"$(turn 2 "$tmp/chat.err")"
[[ -n "${p1:-}" && -n "${p2:-}" && "$c1" -eq 0 ]]
check "a --verbose stat line per turn" $?
# Everything turn 1 left in the cache (its prompt and reply) is a prefix of turn 2's prompt.
[[ -n "${c2:-}" && "$c2" -ge "$p1" && "$c2" -le $((p1 + r1)) ]]
check "turn 2 reuses the cached turn 1 ($c2 of $p2 prompt tokens cached; turn 1 was $p1 + $r1)" $?

# The same conversation from scratch with `run`: same replies byte for byte.
turn1="<|im_start|>user
Tell me a dream<|im_end|>
<|im_start|>assistant
"
printf '%s' "$turn1" >"$tmp/prompt1.txt"
"$EDGELLM" run "${opts[@]}" -f "$tmp/prompt1.txt" >"$tmp/run1.out" 2>/dev/null
head -c -1 "$tmp/run1.out" >"$tmp/reply1.txt" # run ends its output with a newline
{
  printf '%s' "$turn1"
  cat "$tmp/reply1.txt"
  printf '<|im_end|>\n<|im_start|>user\nWhat happened next?<|im_end|>\n<|im_start|>assistant\n'
} >"$tmp/prompt2.txt"
"$EDGELLM" run "${opts[@]}" -f "$tmp/prompt2.txt" >"$tmp/run2.out" 2>/dev/null
cat "$tmp/run1.out" "$tmp/run2.out" >"$tmp/expected.out"
cmp -s "$tmp/expected.out" "$tmp/chat.out"
check "chat replies equal run on the rendered conversation (cache reuse changes nothing)" $?

# /reset forgets the conversation and the cache; /exit ends the session and ignores the rest.
printf 'Tell me a dream\n/reset\nTell me a dream\n/exit\nnot read\n' |
  "$EDGELLM" chat "${opts[@]}" --verbose >"$tmp/reset.out" 2>"$tmp/reset.err"
check "/reset and /exit exit 0" $?
grep -q "conversation reset" "$tmp/reset.err"; check "/reset is acknowledged" $?
read -r p3 c3 r3 <<<"$(turn 2 "$tmp/reset.err")"
[[ "${p3:-}" == "$p1" && "${c3:-}" == 0 ]]
check "after /reset the prompt is the first turn again, nothing cached" $?
[[ $(grep -c "^\[chat\] turn" "$tmp/reset.err") -eq 2 ]]; check "nothing is read after /exit" $?
cat "$tmp/run1.out" "$tmp/run1.out" | cmp -s - "$tmp/reset.out"
check "the turn after /reset repeats the first reply" $?

# --system opens the conversation.
printf 'Hi\n' | "$EDGELLM" chat "${opts[@]}" --system "You dream." -v >/dev/null 2>"$tmp/sys.err"
read -r ps cs rs <<<"$(turn 1 "$tmp/sys.err")"
printf '<|im_start|>system\nYou dream.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' >"$tmp/prompt_sys.txt"
"$EDGELLM" run "${opts[@]}" -f "$tmp/prompt_sys.txt" 2>"$tmp/run_sys.err" >/dev/null
want=$(sed -n 's/^prompt: *\([0-9]*\) tokens.*/\1/p' "$tmp/run_sys.err")
[[ -n "${ps:-}" && "$ps" == "$want" ]]; check "--system is rendered as the first message ($ps tokens, run: $want)" $?

# A template that writes the BOS text (Llama 2's <s>) gets exactly one BOS token: the reply equals
# `run` on the same turn with the model's own BOS (the vocabulary model has the real Llama 2
# vocabulary and random weights, so any extra or missing token changes the output).
tiny="$SHARED/models/llama2-vocab-tiny-f16.gguf"
printf 'Hi there\n' | "$EDGELLM" chat -m "$tiny" --template-family llama2 --temp 0 -n 8 -t 2 \
  >"$tmp/l2chat.out" 2>/dev/null
"$EDGELLM" run -m "$tiny" -p "[INST] Hi there [/INST]" --special --temp 0 -n 8 -t 2 \
  >"$tmp/l2run.out" 2>/dev/null
[[ -s "$tmp/l2chat.out" ]] && cmp -s "$tmp/l2chat.out" "$tmp/l2run.out"
check "template BOS text becomes the one BOS token (llama2 vocabulary)" $?

# Real chat vocabularies and templates: the Qwen 3 and Llama 3 tokenizers imported from the shared
# Hugging Face files (with their chat templates) on small random-weight models. The template is
# recognised, its control tokens are single tokens, Llama 3's <|begin_of_text|> text is the one
# BOS, the reply equals `run` on the rendered prompt, and turn 2 reuses all of turn 1.
for fam in qwen3 llama3; do
  "$EDGELLM" convert --from hf "$SHARED/tokenizers/$fam" -o "$tmp/$fam-vocab.gguf" --vocab-only \
    >/dev/null 2>&1 &&
    "$EDGELLM" synth --dims 64,2,4,4,128 --vocab "$tmp/$fam-vocab.gguf" -o "$tmp/$fam.gguf" \
      --type q8_0 --seed 1 >/dev/null 2>&1
  check "$fam: random-weight model with the real vocabulary and template" $?
  printf 'Hello there\nAnd again?\n' |
    "$EDGELLM" chat -m "$tmp/$fam.gguf" --temp 0 -n 8 -t 2 -v >"$tmp/$fam.out" 2>"$tmp/$fam.err"
  ! grep -q warning "$tmp/$fam.err" && grep -q "chat format: $fam\$" "$tmp/$fam.err"
  check "$fam: template recognised" $?
  if [[ $fam == qwen3 ]]; then
    printf '<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n' >"$tmp/$fam.p1"
    want_tokens=10 # <|im_start|> user \n Hello ␣there <|im_end|> \n <|im_start|> assistant \n
  else
    # run adds the model's BOS itself; the chat template writes it as text.
    printf '<|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' >"$tmp/$fam.p1"
    want_tokens=12 # BOS, 3 header tokens, \n\n, Hello, ␣there, <|eot_id|>, 3 header tokens, \n\n
  fi
  read -r q1 k1 n1 <<<"$(turn 1 "$tmp/$fam.err")"
  read -r q2 k2 n2 <<<"$(turn 2 "$tmp/$fam.err")"
  [[ "${q1:-}" == "$want_tokens" ]]; check "$fam: control tokens are single tokens ($q1 prompt tokens)" $?
  "$EDGELLM" run -m "$tmp/$fam.gguf" -f "$tmp/$fam.p1" --special --temp 0 -n 8 -t 2 \
    >"$tmp/$fam.run" 2>/dev/null
  head -c "$(stat -c %s "$tmp/$fam.run")" "$tmp/$fam.out" | cmp -s - "$tmp/$fam.run"
  check "$fam: the first reply equals run on the rendered prompt" $?
  [[ -n "${k2:-}" && "$k2" -ge "$q1" ]]; check "$fam: turn 2 reuses turn 1 ($k2 cached, turn 1 $q1 + $n1)" $?
done

# A conversation that outgrows the context says so and offers /reset, and the session goes on.
long="Tell me a long dream about the machine and the sea and the stars and the city at night"
printf '%s\n%s\n%s\n/reset\nHi\n' "$long" "$long" "$long" |
  "$EDGELLM" chat -m "$model" --temp 0 -n 30 -t 2 --ctx 64 >"$tmp/full.out" 2>"$tmp/full.err"
check "a full context is not fatal" $?
grep -q "/reset" "$tmp/full.err" && grep -Eq "context is full|no longer fits" "$tmp/full.err"
check "a full context is reported with /reset offered" $?

# Usage errors.
"$EDGELLM" chat </dev/null 2>"$tmp/e1"; [[ $? -eq 2 ]] && grep -q "no model" "$tmp/e1"
check "missing -m is a usage error" $?
"$EDGELLM" chat -m "$model" --template-family vicuna </dev/null 2>"$tmp/e2"
[[ $? -eq 2 ]] && grep -q "unknown --template-family" "$tmp/e2"; check "unknown family rejected" $?
"$EDGELLM" chat -m "$model" --bogus </dev/null 2>/dev/null; [[ $? -eq 2 ]]
check "unknown option rejected" $?
"$EDGELLM" chat -m "$tmp/missing.gguf" </dev/null 2>"$tmp/e3"; [[ $? -eq 1 ]] && [[ -s "$tmp/e3" ]]
check "missing model file fails with a message" $?
echo '{"messages": [{"role": "user"}]}' | "$EDGELLM" chat --format-only --template-family chatml 2>"$tmp/e4"
[[ $? -eq 1 ]] && grep -q "message 0" "$tmp/e4"; check "--format-only names a bad message" $?
# A chosen family replaces detection (and so the warning).
printf 'Hi\n' | "$EDGELLM" chat "${opts[@]}" --template-family llama2 -v >/dev/null 2>"$tmp/fam.err"
! grep -q warning "$tmp/fam.err" && grep -q "chat format: llama2" "$tmp/fam.err"
check "--template-family overrides detection" $?

# Typed text spelling a control token ("</s>", this vocabulary's EOS) stays text: the prompt has
# as many tokens as the rendered turn tokenized without special-token parsing (ChatML's markers
# are not in this vocabulary), not the fewer that parsing "</s>" as EOS would give.
printf 'Hi</s>there</s>\n' | "$EDGELLM" chat "${opts[@]}" -v >/dev/null 2>"$tmp/inj.err"
read -r pi ci ri <<<"$(turn 1 "$tmp/inj.err")"
text='<|im_start|>user
Hi</s>there</s><|im_end|>
<|im_start|>assistant
'
plain=$("$EDGELLM" tokenize -m "$model" -p "$text" | tr -cd ',' | wc -c)
parsed=$("$EDGELLM" tokenize -m "$model" --special -p "$text" | tr -cd ',' | wc -c)
[[ -n "${pi:-}" && "$pi" -eq $((plain + 1)) && "$parsed" -lt "$plain" ]]
ok=$?
check "typed </s> stays text (${pi:-?} prompt tokens; text $((plain + 1)), parsed $((parsed + 1)))" $ok

exit $fail
