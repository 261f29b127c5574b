#!/usr/bin/env bash
# Chat templates against a live Jinja reference: installs @huggingface/jinja (the Jinja
# implementation of transformers.js) with npm into the test scratch directory, renders every
# family's published template for fixed conversations and compares with
# `edgellm chat --format-only` byte for byte (tests/chat_reference/check.mjs); then the same with
# Python's Jinja2 as transformers runs it (check_jinja2.py).
set -uo pipefail
ref="$SOURCE_DIR/tests/chat_reference"
work="$TEST_TMP/chat_reference"
mkdir -p "$work"
cp "$ref/package.json" "$work/package.json"
if [[ ! -d "$work/node_modules/@huggingface/jinja" ]]; then
  if ! (cd "$work" && npm install --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1); then
    echo "FAIL: npm could not install @huggingface/jinja (the reference renderer); see below" >&2
    cat "$work/npm.log" >&2
    exit 1
  fi
fi
# The script must resolve the package from the scratch install, so it runs from there.
cp "$ref/check.mjs" "$work/check.mjs"
mkdir -p "$work/templates"
cp "$ref"/templates/*.jinja "$work/templates/"
cp "$ref/conversations.json" "$ref/templates.json" "$work/"
node "$work/check.mjs" "$EDGELLM" "$SHARED" "$work/scratch"
js=$?

# The same against Python's Jinja2 set up as transformers sets it up (the Debian package
# python3-jinja2, installed by scripts/install-deps.sh --test, or a python3 that has it).
py=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c "import jinja2" 2>/dev/null; then
    py="$candidate"
    break
  fi
done
if [[ -z "$py" ]]; then
  echo "FAIL: no python3 with jinja2 for the second reference; run scripts/install-deps.sh --test" >&2
  exit 1
fi
"$py" "$ref/check_jinja2.py" "$EDGELLM" "$SHARED"
pyrc=$?
[[ $js -eq 0 && $pyrc -eq 0 ]]
