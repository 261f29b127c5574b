#!/usr/bin/env bash
# make demo: generate from edgellm's own default model (models/edgellm-default.gguf, trained on
# the King James Bible by scripts/train-default-model.sh; see models/README.md). Needs nothing
# outside the repository.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$build/edgellm"
model="$root/models/edgellm-default.gguf"
[[ -f "$model" ]] || { echo "demo: missing $model (scripts/train-default-model.sh makes it)" >&2; exit 1; }
# One list for the command printed and the command run, so the two cannot drift apart again.
options=(-n 48 --temp 0.7 --seed 7 --repeat-penalty 1.1)
for prompt in "In the beginning" "And the LORD spake unto Moses, saying," "Blessed are"; do
  echo "== edgellm run -m models/edgellm-default.gguf -p '$prompt' ${options[*]}" >&2
  printf '%s' "$prompt"
  "$bin" run -m "$model" -p "$prompt" "${options[@]}" 2> /dev/null
  echo
done
