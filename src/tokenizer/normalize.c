/* NFC as Unicode Standard Annex #15 defines it: full canonical decomposition (Hangul syllables
 * algorithmically), canonical ordering of combining marks, then canonical composition of each
 * starter with the following characters it is not blocked from. Tables: unicode_tables.c. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/utf8.h"
#include "tokenizer/normalize.h"
#include "tokenizer/unicode.h"

/* An undecodable byte b travels through the algorithm as RAW_BYTE | b: class 0, no mappings. */
#define RAW_BYTE 0x80000000u

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7 };
enum { L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT };
enum { S_COUNT = L_COUNT * N_COUNT };

static uint8_t ccc(uint32_t cp)
{
    if (cp < 0x300 || (cp & RAW_BYTE))
        return 0;
    uint32_t lo = 0, hi = ellm_unicode_n_ccc;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (ellm_unicode_ccc[mid].last < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ellm_unicode_n_ccc && ellm_unicode_ccc[lo].first <= cp ? ellm_unicode_ccc[lo].ccc
                                                                       : 0;
}

static const ellm_unicode_decomp *find_decomp(uint32_t cp)
{
    uint32_t lo = 0, hi = ellm_unicode_n_decomps;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (ellm_unicode_decomps[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ellm_unicode_n_decomps && ellm_unicode_decomps[lo].cp == cp
               ? &ellm_unicode_decomps[lo]
               : NULL;
}

/* Appends the full canonical decomposition of cp to out; returns the count written (<= 4). */
static size_t decompose(uint32_t cp, uint32_t *out)
{
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (s % T_COUNT == 0)
            return 2;
        out[2] = T_BASE + s % T_COUNT;
        return 3;
    }
    const ellm_unicode_decomp *d = cp >= 0xC0 && !(cp & RAW_BYTE) ? find_decomp(cp) : NULL;
    if (!d) {
        out[0] = cp;
        return 1;
    }
    size_t n = decompose(d->first, out);
    if (d->second)
        n += decompose(d->second, out + n);
    return n;
}

/* The primary composite of a and b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    uint32_t lo = 0, hi = ellm_unicode_n_comps;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const ellm_unicode_comp *c = &ellm_unicode_comps[mid];
        if (c->first < a || (c->first == a && c->second < b))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ellm_unicode_n_comps && ellm_unicode_comps[lo].first == a &&
                   ellm_unicode_comps[lo].second == b
               ? ellm_unicode_comps[lo].composite
               : 0;
}

static size_t encode(uint32_t cp, char *o)
{
    if (cp & RAW_BYTE) {
        o[0] = (char)(cp & 0xFF);
        return 1;
    }
    return ellm_utf8_encode(cp, o);
}

edgellm_status ellm_nfc(const char *text, size_t len, char **buf, size_t *cap, const char **out,
                        size_t *out_len)
{
    *out = text;
    *out_len = len;
    /* Every code point below U+0300 is stable under NFC (and ASCII bytes stay ASCII). */
    bool stable = true;
    for (size_t i = 0; i < len && stable; i++) {
        unsigned char c = (unsigned char)text[i];
        stable = c < 0xCC; /* lead bytes of U+0300 and above start at 0xCC */
    }
    if (stable)
        return EDGELLM_OK;

    uint32_t *seq = malloc((len * 4 + 4) * sizeof *seq);
    if (!seq)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to normalize %zu bytes", len);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t l;
        uint32_t cp = ellm_utf8_decode(text + i, len - i, &l);
        if (cp == 0xFFFD && l == 1)
            cp = RAW_BYTE | (unsigned char)text[i]; /* undecodable: keep the byte */
        n += decompose(cp, seq + n);
        i += l;
    }
    /* Canonical ordering: stable sort of each run of non-zero classes by class. */
    for (size_t i = 1; i < n; i++) {
        uint8_t c = ccc(seq[i]);
        if (c == 0)
            continue;
        size_t j = i;
        uint32_t cp = seq[i];
        while (j > 0 && ccc(seq[j - 1]) > c) {
            seq[j] = seq[j - 1];
            j--;
        }
        seq[j] = cp;
    }
    /* Composition: a character joins the last starter when it is adjacent to it or not blocked
     * (every character between has a non-zero class below its own; after canonical ordering
     * the last one kept has the highest). */
    size_t m = 0, starter = 0;
    bool have_starter = false;
    uint8_t last_class = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = seq[i];
        uint8_t c = ccc(cp);
        if (have_starter && (m == starter + 1 || last_class < c)) {
            uint32_t composite = compose(seq[starter], cp);
            if (composite) {
                seq[starter] = composite;
                continue;
            }
        }
        if (c == 0) {
            starter = m;
            have_starter = true;
        }
        last_class = c;
        seq[m++] = cp;
    }
    size_t need = m * 4;
    if (need > *cap) {
        char *g = realloc(*buf, need);
        if (!g) {
            free(seq);
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to normalize %zu bytes", len);
        }
        *buf = g;
        *cap = need;
    }
    size_t o = 0;
    for (size_t i = 0; i < m; i++)
        o += encode(seq[i], *buf + o);
    free(seq);
    *out = *buf;
    *out_len = o;
    return EDGELLM_OK;
}
