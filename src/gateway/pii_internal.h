/* Shared by the PII detectors, the policy and the session: detections before overlaps are
 * resolved, and byte classes. */
#ifndef EDGELLM_GATEWAY_PII_INTERNAL_H
#define EDGELLM_GATEWAY_PII_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/pii.h"

/* A detection. A `shape` is something that looks like PII but failed its check (an IBAN with
 * a wrong checksum, a hex hash): it competes in overlap resolution so that the digits inside it
 * are not taken for something else, and is dropped afterwards. */
typedef struct pii_candidate {
    size_t start, end;
    const char *type;
    int builtin; /* pii_builtin, or -1 for policy types */
    bool shape;
} pii_candidate;

typedef struct pii_candidates {
    pii_candidate *items;
    size_t n, cap;
    bool out_of_memory;
} pii_candidates;

void ellm_pii_candidates_add(pii_candidates *c, size_t start, size_t end, pii_builtin type);
void ellm_pii_candidates_add_shape(pii_candidates *c, size_t start, size_t end, pii_builtin type);
void ellm_pii_candidates_add_custom(pii_candidates *c, size_t start, size_t end, const char *type);

/* The text folded for the built-in detectors (pii_fold.c): invisible characters removed, the
 * non-ASCII spaces, dashes and digits users type replaced by their ASCII equivalent. A mark
 * says that the folded byte at `folded` came from the original byte at `original`, and that
 * the bytes after it, up to the next mark, were copied unchanged. */
typedef struct pii_fold_mark {
    size_t folded, original;
} pii_fold_mark;

typedef struct pii_folded {
    const char *original;
    const char *text; /* the original itself when nothing folds */
    size_t len;
    char *owned;
    pii_fold_mark *marks;
    size_t n_marks, cap_marks;
} pii_folded;

/* False when out of memory. */
bool ellm_pii_fold(const char *text, size_t len, pii_folded *out);
/* Original byte offsets of a detection [start, end) in the folded text. */
size_t ellm_pii_fold_start(const pii_folded *f, size_t pos);
size_t ellm_pii_fold_end(const pii_folded *f, size_t pos);
void ellm_pii_fold_free(pii_folded *f);

/* The built-in detectors (pii_detect_*.c). Each appends what it finds in text[0, len). */
void ellm_pii_find_emails(const char *text, size_t len, pii_candidates *c);
void ellm_pii_find_url_credentials(const char *text, size_t len, pii_candidates *c);
void ellm_pii_find_private_keys(const char *text, size_t len, pii_candidates *c);
void ellm_pii_find_ipv6(const char *text, size_t len, pii_candidates *c);
/* Cards, phone numbers, SSNs and IPv4 addresses: runs of digits and separators. It reads the
 * folded text and looks for the phone labels the fold removed in the original. */
void ellm_pii_find_numbers(const pii_folded *fold, pii_candidates *c);
/* IBANs, secrets and labelled dates of birth: word-led detections. */
void ellm_pii_find_words(const char *text, size_t len, pii_candidates *c);

/* Checks, exposed for the unit tests. */
/* Dotted quad, each part 0-255 without leading zeros. */
bool ellm_pii_ipv4_valid(const char *s, size_t n);
bool ellm_pii_luhn_valid(const char *digits, size_t n);
/* An IBAN without spaces: known country, its length, mod-97 check. */
bool ellm_pii_iban_valid(const char *iban, size_t n);
/* Whether the `window` bytes before pos contain one of the words (lower case, NULL-ended),
 * case-insensitively, as a whole word. */
bool ellm_pii_label_before(const char *text, size_t pos, size_t window, const char *const *words);

static inline bool pii_is_digit(unsigned char c) { return (unsigned)(c - '0') < 10; }
static inline bool pii_is_upper(unsigned char c) { return (unsigned)(c - 'A') < 26; }
static inline bool pii_is_lower(unsigned char c) { return (unsigned)(c - 'a') < 26; }
static inline bool pii_is_alpha(unsigned char c) { return pii_is_upper(c) || pii_is_lower(c); }
static inline bool pii_is_alnum(unsigned char c) { return pii_is_alpha(c) || pii_is_digit(c); }
static inline bool pii_is_hex(unsigned char c)
{
    return pii_is_digit(c) || (unsigned)((c | 0x20) - 'a') < 6;
}
static inline unsigned char pii_lower(unsigned char c) { return pii_is_upper(c) ? c | 0x20 : c; }
/* Part of a word for boundary checks: ASCII letters and digits, '_', and any non-ASCII byte
 * (letters of other scripts). */
static inline bool pii_is_word(unsigned char c) { return pii_is_alnum(c) || c == '_' || c >= 0x80; }

/* Whether c is one of the bytes of set (never true for NUL, unlike strchr). Inline, so the
 * compiler unrolls it for the literal sets of the detectors' inner loops. */
static inline bool pii_in(unsigned char c, const char *set)
{
    for (; *set; set++)
        if ((unsigned char)*set == c)
            return true;
    return false;
}

#endif
