#!/usr/bin/env bash
# The PII detectors on the hand-written hostile set (bench/pii_hostile.txt): text as users paste
# it, with non-ASCII separators and digits, invisible characters, CJK and Arabic input, mail
# headers, JSON, logs and shell commands, and near-misses. Recall >= 97 % and precision >= 90 %
# for every type (the set is small: one miss of a type with 5 values is 80 %).
set -euo pipefail
work="$TEST_TMP/pii_hostile"
mkdir -p "$work"
python3 "$SOURCE_DIR/bench/pii_hostile_set.py" --out "$work/set.jsonl"
"$BUILD_DIR/tests/pii_eval" "$work/set.jsonl" --min-recall 0.97 --min-precision 0.90 --errors 20
