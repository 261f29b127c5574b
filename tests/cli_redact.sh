#!/usr/bin/env bash
# `edgellm redact`: redacted text, --json with byte offsets into the input, --block naming types
# only, policies from files, and a one-line error with exit 2 for every bad invocation or policy.
set -euo pipefail
work="$TEST_TMP/cli_redact"
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$EDGELLM" redact -p "Mail a@example.com or b@example.com, again a@example.com; card 4111 1111 1111 1111")
[[ "$out" == "Mail [EMAIL_1] or [EMAIL_2], again [EMAIL_1]; card [CARD_1]" ]] || fail "redacted text: $out"

# --json: offsets are bytes of the original input (multi-byte text before the entities).
printf 'Grüße von José: jose@example.com, IBAN DE89 3704 0044 0532 0130 00\n' >"$work/in.txt"
"$EDGELLM" redact -f "$work/in.txt" --json >"$work/out.json"
python3 - "$work/in.txt" "$work/out.json" <<'PY'
import json, sys
raw = open(sys.argv[1], "rb").read()
r = json.load(open(sys.argv[2]))
ents = r["entities"]
assert [e["type"] for e in ents] == ["EMAIL", "IBAN"], ents
for e in ents:
    assert raw[e["start"]:e["end"]].decode() == e["value"], e
assert [e["placeholder"] for e in ents] == ["[EMAIL_1]", "[IBAN_1]"], ents
assert r["text"] == "Grüße von José: [EMAIL_1], IBAN [IBAN_1]\n", r["text"]
PY

# --block: the types, never the values; exit 1. Clean text passes through.
if "$EDGELLM" redact --block -p "ssn 123-45-6789, mail x@example.com" >"$work/o" 2>"$work/e"; then
  fail "--block passed text with PII"
fi
grep -q "EMAIL, SSN" "$work/e" || fail "--block did not name the types: $(cat "$work/e")"
if grep -q -e "123-45" -e "x@example" "$work/e" "$work/o"; then fail "--block printed a value"; fi
[[ "$("$EDGELLM" redact --block -p "nothing personal here")" == "nothing personal here" ]] || fail "clean text"

# Policies: terms, patterns, disabled detectors.
cat >"$work/policy.json" <<'JSON'
{"complexity_threshold": 0.6,
 "pii": {"terms": {"CONTACT": ["Alice Smith"]}, "patterns": {"EMPLOYEE_ID": "EMP-[0-9]{6}"},
         "disable": ["IP_ADDRESS"]}}
JSON
out=$("$EDGELLM" redact --policy "$work/policy.json" -p "alice smith (EMP-004211) at 10.1.2.3")
[[ "$out" == "[CONTACT_1] ([EMPLOYEE_ID_1]) at 10.1.2.3" ]] || fail "policy: $out"

# Every bad invocation: exit 2 and one line naming the problem.
expect_usage() {
  local want=$1; shift
  set +e
  "$EDGELLM" redact "$@" >"$work/o" 2>"$work/e"
  local rc=$?
  set -e
  [[ $rc -eq 2 ]] || fail "redact $*: exit $rc, wanted 2"
  [[ $(wc -l <"$work/e") -eq 1 ]] || fail "redact $*: not one line: $(cat "$work/e")"
  grep -q -- "$want" "$work/e" || fail "redact $*: '$(cat "$work/e")' does not say '$want'"
}
echo '{"pii": {"patterns": {"EMP": "EMP-("}}}' >"$work/bad-regex.json"
echo '{"pii": {"terms": ' >"$work/bad-json.json"
echo '{"pii": {"detectors": []}}' >"$work/bad-key.json"
expect_usage "exactly one of -p TEXT or -f FILE"
expect_usage "exactly one of -p TEXT or -f FILE" -p x -f "$work/in.txt"
expect_usage "unknown option '--nope'" -p x --nope
expect_usage "pattern for EMP: missing closing parenthesis" --policy "$work/bad-regex.json" -p x
expect_usage "bad-json.json: not valid JSON" --policy "$work/bad-json.json" -p x
expect_usage "unknown key pii.detectors" --policy "$work/bad-key.json" -p x
expect_usage "cannot open the policy file" --policy "$work/missing.json" -p x
expect_usage "option --policy needs a value" -p x --policy
set +e
"$EDGELLM" redact -f "$work/missing.txt" 2>"$work/e"; rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "cannot read" "$work/e" || fail "missing input file: exit $rc"
echo "cli_redact: all checks passed"
