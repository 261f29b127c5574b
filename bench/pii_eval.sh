#!/usr/bin/env bash
# Recall and precision of the PII detectors per type on the generated labelled set, and the
# redaction speed on typical mixed text (prose, code, logs, an entity every ~2 KB).
#   bench/pii_eval.sh [BUILD_DIR] [SEED] [PER_TYPE] [MIXED_MB]
# The speed is reported in CPU time of the one thread (what one core spends, whatever else runs
# on the machine) and by the wall clock.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build} seed=${2:-13} per_type=${3:-400} mixed_mb=${4:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$here/pii_eval_gen.py" --seed "$seed" --per-type "$per_type" --out "$work/set.jsonl"
python3 "$here/pii_eval_gen.py" --seed "$seed" --mixed "$mixed_mb" --out "$work/mixed.txt"
"$build/tests/pii_eval" "$work/set.jsonl" --speed "$work/mixed.txt" --seconds 3
