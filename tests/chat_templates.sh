#!/usr/bin/env bash
# Chat templates against a live Jinja reference: installs @huggingface/jinja (the Jinja
# implementation of transformers.js) with npm into the test scratch directory, renders every
# family's published template for fixed conversations and compares with
# `edgellm chat --format-only` byte for byte (tests/chat_reference/check.mjs).
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
cp "$ref/conversations.json" "$work/conversations.json"
node "$work/check.mjs" "$EDGELLM" "$SHARED" "$work/scratch"
