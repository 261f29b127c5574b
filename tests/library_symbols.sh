#!/usr/bin/env bash
# libedgellm exports exactly the functions edgellm.h declares: the .so's dynamic symbol table and
# the .a's global defined symbols are the edgellm_* functions of the header, nothing internal
# (gguf_*, ellm_*, ...) that could clash with another library an app links. The .so carries the
# versioned soname and needs only libc, libm and pthreads.
# Usage: library_symbols.sh HEADER SHARED_LIB STATIC_LIB SONAME NM READELF [SANITIZED]
set -euo pipefail
export LC_ALL=C
header=$1 shared=$2 static=$3 soname=$4 nm=$5 readelf=$6 sanitized=${7:-OFF}
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }

# Function declarations of the header: comments and preprocessor lines removed, every name
# followed by "(" (a callback typedef's name is followed by ")" instead).
declared=$(sed -e 's://.*$::' -e '/^[[:space:]]*#/d' "$header" |
           perl -0pe 's:/\*.*?\*/::gs' | grep -o '\bedgellm_[a-z0-9_]*[[:space:]]*(' |
           tr -d '( \t' | sort -u)
[[ $(wc -l <<<"$declared") -ge 40 ]] || err "found only $(wc -l <<<"$declared") functions in $header: the parsing is broken"

compare() { # what, symbols
    local what=$1 symbols=$2
    local extra missing
    extra=$(comm -13 <(echo "$declared") <(echo "$symbols"))
    missing=$(comm -23 <(echo "$declared") <(echo "$symbols"))
    [[ -z $extra ]] || err "$what exports symbols edgellm.h does not declare (make them static or hidden, or declare them EDGELLM_API):" $extra
    [[ -z $missing ]] || err "$what lacks functions edgellm.h declares (mark each EDGELLM_API and define it in the library's modules):" $missing
}

# nm -D: T/W/D/B/R/V/i... are defined; U undefined. The sanitizers' runtime hooks are theirs.
dynamic=$("$nm" -D --defined-only "$shared" | awk 'NF == 3 {print $3}' | sed 's/@.*//' |
          { if [[ $sanitized == ON ]]; then grep -v '^__\(asan\|ubsan\|sanitizer\|odr_asan\)' || true; else cat; fi } | sort -u)
compare "$shared (dynamic symbols)" "$dynamic"

archive=$("$nm" -g --defined-only "$static" | awk 'NF == 3 {print $3}' | sort -u)
compare "$static (global symbols)" "$archive"

actual_soname=$("$readelf" -d "$shared" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $actual_soname == "$soname" ]] || err "$shared has soname '$actual_soname', expected '$soname'"

needed=$("$readelf" -d "$shared" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
allowed='^(libc|libm|libpthread|ld-linux[-a-z0-9_]*)\.so'
[[ $sanitized == ON ]] && allowed='^(libc|libm|libpthread|ld-linux[-a-z0-9_]*|libasan|libubsan)\.so'
while read -r lib; do
    [[ -z $lib || $lib =~ $allowed ]] || err "$shared needs $lib: the core may use only libc, libm and pthreads"
done <<<"$needed"

[[ $fail -eq 0 ]] || exit 1
echo "ok: $(wc -l <<<"$declared") functions of edgellm.h, exactly the exported symbols of both libraries; soname $soname"
