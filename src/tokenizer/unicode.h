/* Unicode character classes for the pre-tokenizers and NFC normalization (tables generated from
 * UnicodeData.txt by scripts/gen_unicode_tables.py), and UTF-8 decoding. */
#ifndef EDGELLM_TOKENIZER_UNICODE_H
#define EDGELLM_TOKENIZER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    ELLM_UC_LETTER = 1 << 0,      /* L* */
    ELLM_UC_MARK = 1 << 1,        /* M* */
    ELLM_UC_NUMBER = 1 << 2,      /* N* */
    ELLM_UC_PUNCTUATION = 1 << 3, /* P* */
    ELLM_UC_SYMBOL = 1 << 4,      /* S* */
    ELLM_UC_SEPARATOR = 1 << 5,   /* Z* */
    ELLM_UC_OTHER = 1 << 6,       /* C* (controls, format, unassigned, ...) */
    ELLM_UC_WHITESPACE = 1 << 7   /* matched by regex \s */
};

typedef struct ellm_unicode_range {
    uint32_t first, last;
    uint8_t flags;
} ellm_unicode_range;

typedef struct ellm_unicode_ccc_range {
    uint32_t first, last;
    uint8_t ccc;
} ellm_unicode_ccc_range;

typedef struct ellm_unicode_decomp {
    uint32_t cp, first, second; /* second = 0: decomposes to one character */
} ellm_unicode_decomp;

typedef struct ellm_unicode_comp {
    uint32_t first, second, composite;
} ellm_unicode_comp;

extern const ellm_unicode_ccc_range ellm_unicode_ccc[];
extern const uint32_t ellm_unicode_n_ccc;
extern const ellm_unicode_decomp ellm_unicode_decomps[];
extern const uint32_t ellm_unicode_n_decomps;
extern const ellm_unicode_comp ellm_unicode_comps[];
extern const uint32_t ellm_unicode_n_comps;

extern const uint8_t ellm_unicode_latin1_flags[256];
extern const ellm_unicode_range ellm_unicode_ranges[];
extern const uint32_t ellm_unicode_n_ranges;

/* The ELLM_UC_* flags of a code point (out of range: ELLM_UC_OTHER). */
static inline uint8_t ellm_unicode_flags(uint32_t cp)
{
    if (cp < 256)
        return ellm_unicode_latin1_flags[cp];
    uint32_t lo = 0, hi = ellm_unicode_n_ranges;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (ellm_unicode_ranges[mid].last < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ellm_unicode_n_ranges && ellm_unicode_ranges[lo].first <= cp
               ? ellm_unicode_ranges[lo].flags
               : ELLM_UC_OTHER;
}

#endif
