#!/bin/bash
# Kernel sets forced on CPUs that lack them, emulated by qemu-x86_64 (-cpu Nehalem: no AVX;
# -cpu Haswell: AVX2 without AVX-VNNI or AVX-512): --kernels and EDGELLM_KERNELS naming a set the
# CPU cannot run are usage errors that name the sets it can run (never SIGILL), and the default
# choice runs and writes exactly the greedy text of that set forced on this machine. Skipped (77)
# without qemu-x86_64 or off x86-64.
set -u
source "$(dirname "$0")/lib.sh"
command -v qemu-x86_64 >/dev/null && [[ $(uname -m) == x86_64 ]] || { echo "skipped: no qemu-x86_64"; exit 77; }
tmp="$TEST_TMP/attack_kernels_cpu"
rm -rf "$tmp" && mkdir -p "$tmp"
# 256-wide rows, so IQ4_XS (the type with an AVX-VNNI kernel) is used as such.
"$EDGELLM" synth --dims 256,1,4,4,768 --vocab "$SHARED/models/llama2-vocab-tiny-f16.gguf" \
  -o "$tmp/f32.gguf" --type f32 --ctx 64 2>/dev/null &&
  "$EDGELLM" quantize "$tmp/f32.gguf" "$tmp/m.gguf" iq4_xs 2>/dev/null
check "a 256-wide IQ4_XS model" $?
rm -f "$tmp/f32.gguf"
gen() { # gen LAUNCHER... -- RUN_OPTIONS...
  local launcher=()
  while [[ $1 != -- ]]; do launcher+=("$1"); shift; done
  shift
  "${launcher[@]}" run -m "$tmp/m.gguf" -p "I dreamed" -n 4 --temp 0 "$@"
}

for cpu_runs in Nehalem:scalar Haswell:avx2,scalar; do
  cpu=${cpu_runs%%:*} runs=${cpu_runs#*:}
  best=${runs%%,*}
  for set in avx2 avx2vnni avx512; do
    [[ ",$runs," == *",$set,"* ]] && continue
    qemu-x86_64 -cpu "$cpu" "$EDGELLM" run -m "$tmp/m.gguf" -p hi -n 1 --kernels "$set" \
      2>&1 >/dev/null | grep -v "^qemu-x86_64: warning" >"$tmp/err"
    rc=${PIPESTATUS[0]}
    [[ $rc -eq 2 ]] && grep -q "kernel set '$set' needs CPU features this machine lacks; it runs: ${runs//,/, }$" "$tmp/err"
    st=$?
    check "$cpu --kernels $set: exit $rc, '$(head -c 200 "$tmp/err")'" $st
  done
  EDGELLM_KERNELS=avx512 qemu-x86_64 -cpu "$cpu" "$EDGELLM" bench -m "$tmp/m.gguf" -p 4 -n 1 -r 1 \
    2>&1 >/dev/null | grep -v "^qemu-x86_64: warning" >"$tmp/err"
  rc=${PIPESTATUS[0]}
  [[ $rc -eq 2 ]] && grep -q "EDGELLM_KERNELS: kernel set 'avx512' needs CPU features" "$tmp/err"
  st=$?
  check "$cpu EDGELLM_KERNELS=avx512 bench: exit $rc, '$(head -c 200 "$tmp/err")'" $st
  gen qemu-x86_64 -cpu "$cpu" "$EDGELLM" -- >"$tmp/emulated.txt" 2>"$tmp/err" &&
    gen "$EDGELLM" -- --kernels "$best" >"$tmp/native.txt" 2>/dev/null &&
    [[ -s "$tmp/native.txt" ]] && cmp -s "$tmp/emulated.txt" "$tmp/native.txt"
  st=$?
  check "$cpu default set: the text of --kernels $best here ('$(cat "$tmp/emulated.txt")' $(tail -1 "$tmp/err"))" $st
done
exit $fail
