#!/usr/bin/env bash
# Renames the internal functions and globals whose names another library could also use (gguf_*,
# chat_*, srv_*, store_*, st_*, gw_*, pii_*, structured_*) to ellm_<name>, in every tracked C
# source and header. libedgellm already keeps them local (docs/embedding.md); this makes the
# internal static libraries, which the command and the tests link, as safe to link next to
# another library. Written to be run once by hand after the branches are merged, never by CI:
#   cmake --build build && scripts/prefix-internal.sh build [--apply]
# Without --apply it prints the sed program and the number of lines it would change.
#
# Only names that a module's archive defines as global symbols are renamed (read with nm), so
# types, macros, static functions, file names ("chat/chat.h") and metadata keys
# ("tokenizer.chat_template") stay as they are. A string that quotes a function's name (an error
# message "gguf_open: ...") changes with it: check the diff and the tests after applying.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-}
[[ -n $build && -d $build ]] || { echo "usage: scripts/prefix-internal.sh BUILD_DIR [--apply]" >&2; exit 2; }
apply=${2:-}
[[ -z $apply || $apply == --apply ]] || { echo "prefix-internal: unknown option '$apply' (only --apply)" >&2; exit 2; }
nm=${NM:-nm}

shopt -s nullglob
archives=("$build"/libedgellm_*.a)
[[ ${#archives[@]} -gt 0 ]] || { echo "prefix-internal: no libedgellm_*.a in $build: build it first" >&2; exit 1; }

families='gguf|chat|srv|store|st|gw|pii|structured'
names=$("$nm" -g --defined-only "${archives[@]}" 2>/dev/null | awk 'NF == 3 {print $3}' |
        { grep -E "^($families)_[A-Za-z0-9_]+$" || true; } | sort -u)
[[ -n $names ]] || { echo "prefix-internal: no internal names to rename (already done?)" >&2; exit 0; }

mapfile -t sources < <(git ls-files '*.c' '*.h' '*.inc')
# A new name that some source already uses would merge two functions into one.
for name in $names; do
    if grep -qw "ellm_$name" "${sources[@]}"; then
        echo "prefix-internal: ellm_$name is already used in the sources; rename by hand" >&2
        exit 1
    fi
done

program=$(mktemp)
trap 'rm -f "$program"' EXIT
for name in $names; do
    printf 's/\\b%s\\b/ellm_%s/g\n' "$name" "$name"
done >"$program"

if [[ $apply != --apply ]]; then
    cat "$program"
    changed=$(for f in "${sources[@]}"; do sed -f "$program" "$f" | diff "$f" - | grep -c '^>' || true; done |
              awk '{n += $1} END {print n + 0}')
    echo "# $(wc -l <"$program") names; $changed lines would change in ${#sources[@]} files (--apply to do it)" >&2
    exit 0
fi
sed -i -f "$program" "${sources[@]}"
echo "renamed $(wc -l <"$program") names; rebuild and run the tests (ctest), then review git diff" >&2
