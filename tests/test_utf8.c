/* The one UTF-8 module (core/utf8.c) against the standard's definition of well-formed UTF-8
 * (Unicode table 3-7): named cases (overlong forms, surrogates, cut-short sequences, values past
 * U+10FFFF, valid 4-byte characters), then every 1-, 2- and 3-byte sequence and every 4-byte one
 * with a possible lead byte, counted: a decoder that lets one ill-formed sequence through, or
 * refuses one well-formed character, changes a count. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/utf8.h"
#include "test_util.h"

/* Decodes bytes as a whole: the code point when they are exactly one well-formed character,
 * else -1. */
static int64_t one_char(const char *bytes, size_t n)
{
    uint32_t cp = 0;
    size_t k = ellm_utf8_next(bytes, n, &cp);
    return k == n && k > 0 ? (int64_t)cp : -1;
}

static void check_named_cases(void)
{
    static const struct {
        const char *bytes;
        int64_t cp; /* -1: ill-formed */
        const char *what;
    } cases[] = {
        {"A", 'A', "ASCII"},
        {"\xC2\x80", 0x80, "smallest 2-byte"},
        {"\xDF\xBF", 0x7FF, "largest 2-byte"},
        {"\xE0\xA0\x80", 0x800, "smallest 3-byte"},
        {"\xED\x9F\xBF", 0xD7FF, "just below the surrogates"},
        {"\xEE\x80\x80", 0xE000, "just above the surrogates"},
        {"\xEF\xBF\xBF", 0xFFFF, "largest 3-byte"},
        {"\xF0\x90\x80\x80", 0x10000, "smallest 4-byte"},
        {"\xF0\x9F\x98\x80", 0x1F600, "an emoji (4-byte)"},
        {"\xF4\x8F\xBF\xBF", 0x10FFFF, "U+10FFFF"},
        {"\xC0\x80", -1, "overlong NUL"},
        {"\xC1\xBF", -1, "overlong 2-byte"},
        {"\xE0\x80\xAF", -1, "overlong '/' in 3 bytes"},
        {"\xE0\x9F\xBF", -1, "overlong 3-byte below U+0800"},
        {"\xF0\x80\x80\xAF", -1, "overlong '/' in 4 bytes"},
        {"\xF0\x8F\xBF\xBF", -1, "overlong 4-byte below U+10000"},
        {"\xED\xA0\x80", -1, "high surrogate U+D800"},
        {"\xED\xBF\xBF", -1, "low surrogate U+DFFF"},
        {"\xF4\x90\x80\x80", -1, "U+110000"},
        {"\xF5\x80\x80\x80", -1, "lead F5"},
        {"\xFF", -1, "byte FF"},
        {"\x80", -1, "a stray continuation byte"},
        {"\xE2\x82", -1, "3-byte sequence cut short"},
        {"\xF0\x9F\x98", -1, "4-byte sequence cut short"},
        {"\xC3", -1, "lead byte alone"},
        {"\xC3(", -1, "lead byte then ASCII"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].bytes);
        int64_t got = one_char(cases[i].bytes, n);
        CHECK_MSG(got == cases[i].cp, "%s: decoded %lld, expected %lld", cases[i].what,
                  (long long)got, (long long)cases[i].cp);
        CHECK_MSG(ellm_utf8_valid(cases[i].bytes, n) == (cases[i].cp >= 0), "%s: validity",
                  cases[i].what);
        /* The tokenizers' decode: the character, or one byte of U+FFFD. */
        uint32_t len = 0;
        uint32_t cp = ellm_utf8_decode(cases[i].bytes, n, &len);
        CHECK_MSG(cases[i].cp >= 0 ? (cp == cases[i].cp && len == n) : (cp == 0xFFFD && len == 1),
                  "%s: lossy decode gave U+%04X over %u bytes", cases[i].what, (unsigned)cp,
                  (unsigned)len);
    }
    uint32_t cp;
    CHECK(ellm_utf8_next("", 0, &cp) == 0);
}

/* Counts the well-formed characters among every sequence of n bytes whose lead is in
 * [lead_lo, lead_hi] and whose other bytes are continuation bytes, and checks each one
 * re-encodes to itself. */
static uint64_t count_well_formed(int n, unsigned lead_lo, unsigned lead_hi, bool *roundtrip)
{
    uint64_t count = 0;
    unsigned char b[4];
    unsigned tails = 1u << (6 * (n - 1));
    for (unsigned lead = lead_lo; lead <= lead_hi; lead++)
        for (unsigned tail = 0; tail < tails; tail++) {
            b[0] = (unsigned char)lead;
            for (int k = 1; k < n; k++)
                b[k] = (unsigned char)(0x80 | ((tail >> (6 * (n - 1 - k))) & 0x3F));
            int64_t cp = one_char((const char *)b, (size_t)n);
            if (cp < 0)
                continue;
            count++;
            char again[4];
            if (ellm_utf8_encode((uint32_t)cp, again) != (size_t)n ||
                memcmp(again, b, (size_t)n) != 0)
                *roundtrip = false;
        }
    return count;
}

static void check_exhaustive(void)
{
    bool roundtrip = true;
    /* Well-formed characters by length: 128, 0x800 - 0x80, 0x10000 - 0x800 less 2048 surrogates,
     * 0x110000 - 0x10000. */
    CHECK(count_well_formed(1, 0x00, 0xFF, &roundtrip) == 128);
    CHECK(count_well_formed(2, 0xC0, 0xFF, &roundtrip) == 0x800 - 0x80);
    CHECK(count_well_formed(3, 0xC0, 0xFF, &roundtrip) == 0x10000 - 0x800 - 0x800);
    CHECK(count_well_formed(4, 0xF0, 0xFF, &roundtrip) == 0x110000 - 0x10000);
    CHECK(roundtrip);
    /* Every scalar value encodes and decodes back; surrogates and values past U+10FFFF do not
     * encode. */
    char out[4];
    bool all = true;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        size_t n = ellm_utf8_encode(cp, out);
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (surrogate ? n != 0 : one_char(out, n) != (int64_t)cp)
            all = false;
    }
    CHECK(all);
    CHECK(ellm_utf8_encode(0x110000, out) == 0);
}

static void check_incremental(void)
{
    /* Byte at a time, as the grammar matcher decodes: the same verdicts as the whole decoder. */
    static const char *const inputs[] = {"\xE0\xA0\x80",     "\xE0\x80\x80",     "\xED\x9F\xBF",
                                         "\xED\xA0\x80",     "\xF4\x8F\xBF\xBF", "\xF4\x90\x80\x80",
                                         "\xF0\x90\x80\x80", "\xF0\x80\x80\x80", "\xC2\xA9"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        const unsigned char *s = (const unsigned char *)inputs[i];
        size_t n = strlen(inputs[i]);
        uint32_t part = 0;
        int need = ellm_utf8_lead(s[0], &part);
        bool ok = need == (int)n - 1;
        for (size_t k = 1; ok && k < n; k++) {
            ok = ellm_utf8_continuation_ok(need, part, s[k]);
            part = part << 6 | (s[k] & 0x3F);
            need--;
        }
        CHECK_MSG(ok == (one_char(inputs[i], n) >= 0), "input %zu: incremental %d", i, ok);
    }
    uint32_t part;
    CHECK(ellm_utf8_lead(0xC1, &part) < 0 && ellm_utf8_lead(0xF5, &part) < 0);
    CHECK(ellm_utf8_lead(0x80, &part) < 0);
}

static void check_helpers(void)
{
    char out[64];
    const char bad[] = "a\xC0\x80"
                       "b\xE2\x82\xAC\xED\xA0\x80";
    size_t n = ellm_utf8_sanitize(bad, sizeof bad - 1, out);
    const char want[] = "a\xEF\xBF\xBD\xEF\xBF\xBD"
                        "b\xE2\x82\xAC\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD";
    CHECK(n == sizeof want - 1 && memcmp(out, want, n) == 0);
    CHECK(ellm_utf8_valid(out, n));

    CHECK(ellm_utf8_incomplete_tail("a\xE7\x8C", 3) == 2);
    CHECK(ellm_utf8_incomplete_tail("a\xE7\x8C\xAB", 4) == 0);
    CHECK(ellm_utf8_incomplete_tail("\xF0\x9F\xA6", 3) == 3);
    CHECK(ellm_utf8_incomplete_tail("ab", 2) == 0);
    CHECK(ellm_utf8_incomplete_tail("a\xC3", 2) == 1);

    CHECK(ellm_utf8_sequence_length('a') == 1 && ellm_utf8_sequence_length(0xC3) == 2 &&
          ellm_utf8_sequence_length(0xE2) == 3 && ellm_utf8_sequence_length(0xF0) == 4 &&
          ellm_utf8_sequence_length(0x80) == 1 && ellm_utf8_sequence_length(0xFF) == 1);

    const char *euro = "x\xE2\x82\xAC";
    CHECK(ellm_utf8_char_start(euro, 3) == 1 && ellm_utf8_char_start(euro, 1) == 1 &&
          ellm_utf8_char_start(euro, 0) == 0);
    const char *run = "\x80\x80\x80\x80\x80";
    CHECK(ellm_utf8_char_start(run, 4) == 1); /* at most 3 bytes back */
}

int main(void)
{
    check_named_cases();
    check_exhaustive();
    check_incremental();
    check_helpers();
    return test_finish("test_utf8");
}
