#!/usr/bin/env bash
# libedgellm as an application gets it: `cmake --install` into a temporary prefix, then the
# examples (examples/: stream, chat, step) built against the installed files both ways an application builds them,
# pkg-config with cc and a CMake project with find_package(edgellm), each linking the shared
# library and the static archive. All of them must print what `edgellm run --temp 0` prints.
# An application defining functions named like the library's internal ones must link and run
# with both libraries (tests/helpers/symbol_clash.c). The installed header compiles as C11 and C++11.
# Environment: EDGELLM, SHARED, TEST_TMP, SOURCE_DIR, BUILD_DIR (edgellm_sh_test), CC, LIBDIR
# (relative to the prefix), SONAME, EXAMPLE_CFLAGS (the sanitizer flags of a sanitizer build).
set -euo pipefail
work=$TEST_TMP/embed_examples
rm -rf "$work"
mkdir -p "$work"
model=$SHARED/models/aidreams260K-f32.gguf
prefix=$work/prefix
libdir=$prefix/$LIBDIR
read -r -a extra_cflags <<<"${EXAMPLE_CFLAGS:-}"
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$BUILD_DIR" --prefix "$prefix" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; fail "cmake --install failed"; }
for f in include/edgellm.h include/edgellm_version.h "$LIBDIR/libedgellm.a" "$LIBDIR/libedgellm.so" \
         "$LIBDIR/$SONAME" "$LIBDIR/pkgconfig/edgellm.pc" "$LIBDIR/pkgconfig/edgellm-static.pc" \
         "$LIBDIR/cmake/edgellm/edgellmConfig.cmake" "$LIBDIR/cmake/edgellm/edgellmConfigVersion.cmake"; do
    [[ -e $prefix/$f ]] || fail "cmake --install did not install $f"
done

# The installed header alone, as an application's C and C++ compilers read it: C11 and C++11,
# pedantic, warnings as errors (a C-only construct in edgellm.h, such as restrict, fails here).
printf '#include <edgellm.h>\nint main(void) { return edgellm_version()[0] == 0; }\n' >"$work/header.c"
cp "$work/header.c" "$work/header.cpp"
cxx=${CXX:-c++}
"$CC" -std=c11 -Wall -Wextra -Werror -pedantic -I"$prefix/include" -c "$work/header.c" \
    -o "$work/header_c.o" 2>"$work/header_c.log" ||
    { cat "$work/header_c.log" >&2; fail "the installed edgellm.h does not compile as C11 (-pedantic -Werror)"; }
"$cxx" -std=c++11 -Wall -Wextra -Werror -pedantic -I"$prefix/include" -c "$work/header.cpp" \
    -o "$work/header_cxx.o" 2>"$work/header_cxx.log" ||
    { cat "$work/header_cxx.log" >&2; fail "the installed edgellm.h does not compile as C++11 with $cxx (-pedantic -Werror)"; }

# The references: the command's own greedy output.
stream_prompt="Once upon a time"
"$EDGELLM" run -m "$model" -p "$stream_prompt" -n 40 --temp 0 >"$work/stream.expected" 2>/dev/null
chat_turns=("I dreamed" "The machine" "/reset" "Hello")
for turn in "${chat_turns[0]}" "${chat_turns[3]}"; do
    "$EDGELLM" run -m "$model" -p "User: $turn"$'\n'"Assistant:" -n 24 --stop $'\n' --temp 0 2>/dev/null
done >"$work/chat.expected"
printf '%s\n' "${chat_turns[@]}" >"$work/chat.in"

export PKG_CONFIG_PATH=$libdir/pkgconfig
for kind in shared static; do
    pc=edgellm
    [[ $kind == static ]] && pc=edgellm-static
    out=$work/pkgconfig-$kind
    mkdir -p "$out"
    pc_out=$(pkg-config --cflags --libs "$pc") || fail "pkg-config does not know $pc"
    read -r -a pc_flags <<<"$pc_out"
    for program in "$SOURCE_DIR/examples/stream.c" "$SOURCE_DIR/examples/chat.c" \
                   "$SOURCE_DIR/examples/step.c" "$SOURCE_DIR/tests/helpers/symbol_clash.c"; do
        name=$(basename "$program" .c)
        "$CC" -std=c11 -Wall -Wextra -Werror "${extra_cflags[@]}" "$program" "${pc_flags[@]}" \
            -Wl,-rpath,"$libdir" -o "$out/$name" 2>"$out/$name.log" ||
            { cat "$out/$name.log" >&2; fail "$name does not build with pkg-config $pc"; }
    done
    out=$work/cmake-$kind
    use_static=OFF
    [[ $kind == static ]] && use_static=ON
    { cmake -S "$SOURCE_DIR/examples" -B "$out" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$CC" \
          -DCMAKE_C_FLAGS="-Werror ${EXAMPLE_CFLAGS:-}" -DCMAKE_PREFIX_PATH="$prefix" \
          -DEDGELLM_USE_STATIC_LIBS=$use_static && cmake --build "$out"; } >"$out.log" 2>&1 ||
        { cat "$out.log" >&2; fail "the examples' CMake project does not build ($kind)"; }
done

for build in pkgconfig-shared pkgconfig-static cmake-shared cmake-static; do
    dir=$work/$build
    needs=$(readelf -d "$dir/stream" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    if [[ $build == *-shared ]]; then
        grep -qx "$SONAME" <<<"$needs" || fail "$build/stream does not load $SONAME (needs: $needs)"
    else
        ! grep -q libedgellm <<<"$needs" || fail "$build/stream loads libedgellm although linked statically"
    fi
    "$dir/stream" "$model" "$stream_prompt" 40 >"$dir/stream.out" 2>"$dir/stream.err" ||
        { cat "$dir/stream.err" >&2; fail "$build/stream failed"; }
    cmp -s "$work/stream.expected" "$dir/stream.out" ||
        { diff "$work/stream.expected" "$dir/stream.out" >&2 || true; fail "$build/stream differs from edgellm run"; }
    # The same continuation pulled a token at a time (stdin at its end: nobody types stop).
    "$dir/step" "$model" "$stream_prompt" 40 </dev/null >"$dir/step.out" 2>"$dir/step.err" ||
        { cat "$dir/step.err" >&2; fail "$build/step failed"; }
    cmp -s "$work/stream.expected" "$dir/step.out" ||
        { diff "$work/stream.expected" "$dir/step.out" >&2 || true; fail "$build/step differs from edgellm run"; }
    "$dir/chat" "$model" 24 <"$work/chat.in" >"$dir/chat.out" 2>"$dir/chat.err" ||
        { cat "$dir/chat.err" >&2; fail "$build/chat failed"; }
    [[ $(wc -l <"$dir/chat.out") -eq 3 ]] || fail "$build/chat printed $(wc -l <"$dir/chat.out") lines for 3 turns"
    # Turns 1 and 3 (after /reset) start from an empty context: exactly edgellm run's replies.
    sed -n '1p;3p' "$dir/chat.out" | cmp -s "$work/chat.expected" - ||
        { sed -n '1p;3p' "$dir/chat.out" | diff "$work/chat.expected" - >&2 || true; fail "$build/chat differs from edgellm run"; }
    # Turn 2 continues turn 1's context: whatever it says, every build says the same.
    cmp -s "$work/pkgconfig-shared/chat.out" "$dir/chat.out" || fail "$build/chat differs from pkgconfig-shared/chat"
done

# A turn longer than the whole context (128 tokens) is refused as such, not answered with advice
# to /reset, and the next turn is answered as if it had not been typed.
long_turn=$(printf 'word %.0s' {1..300})
printf '%s\n%s\n' "$long_turn" "${chat_turns[3]}" >"$work/chat_long.in"
dir=$work/pkgconfig-shared
"$dir/chat" "$model" 24 <"$work/chat_long.in" >"$dir/chat_long.out" 2>"$dir/chat_long.err" ||
    { cat "$dir/chat_long.err" >&2; fail "chat failed on a turn longer than the context"; }
grep -q "longer than the whole context" "$dir/chat_long.err" && ! grep -q /reset "$dir/chat_long.err" ||
    { cat "$dir/chat_long.err" >&2; fail "chat's message for a turn longer than the context"; }
sed -n 2p "$dir/chat_long.out" | cmp -s <(sed -n 2p "$work/chat.expected") - ||
    fail "chat's reply after a turn longer than the context differs from edgellm run"

# A long prompt goes in slices with progress; "stop" typed before the first token stops it there
# (stdin is a file: the line is there at the first look, so the stop comes after the first slice).
long_prompt="Once upon a time, there was a little girl named Lily. She liked to play outside in the park with her friends."
"$EDGELLM" run -m "$model" -p "$long_prompt" -n 8 --temp 0 >"$work/step_long.expected" 2>/dev/null
"$dir/step" "$model" "$long_prompt" 8 </dev/null >"$dir/step_long.out" 2>"$dir/step_long.err" ||
    { cat "$dir/step_long.err" >&2; fail "step failed on a long prompt"; }
cmp -s "$work/step_long.expected" "$dir/step_long.out" || fail "step's long prompt differs from edgellm run"
[[ $(grep -c '^prompt: ' "$dir/step_long.err") -ge 2 ]] ||
    { cat "$dir/step_long.err" >&2; fail "step did not evaluate the long prompt in slices"; }
printf 'hello\nstop\n' >"$work/step_stop.in"
"$dir/step" "$model" "$long_prompt" 8 <"$work/step_stop.in" >"$dir/step_stop.out" 2>"$dir/step_stop.err" ||
    { cat "$dir/step_stop.err" >&2; fail "step failed when told to stop"; }
grep -q "stopped by the user during the prompt" "$dir/step_stop.err" && [[ $(cat "$dir/step_stop.out") == "" ]] ||
    { cat "$dir/step_stop.err" "$dir/step_stop.out" >&2; fail "step did not stop when stop was typed"; }

for kind in shared static; do
    clash=$work/pkgconfig-$kind/symbol_clash
    result=$("$clash" "$model" 2>&1) || fail "$result ($kind)"
    [[ $result == "ok 512" ]] || fail "symbol_clash ($kind) printed '$result', expected 'ok 512'"
done
echo "ok: installed libedgellm; stream, chat and step built 4 ways print edgellm run's output"
