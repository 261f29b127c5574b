#!/usr/bin/env bash
# Runs train_torch.py with a python3 that has PyTorch (python3-torch from
# scripts/install-deps.sh --test, or a python3 that has it). Usage: train_torch.sh TRAIN_DUMP TMP
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import torch' 2>/dev/null; then
    exec "$candidate" "$here/train_torch.py" "$@"
  fi
done
echo "FAIL: no python3 with torch for the gradient reference; run scripts/install-deps.sh --test" >&2
exit 1
