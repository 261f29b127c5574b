/* The text the built-in detectors read. Users paste what their keyboard, locale and the web
 * page gave them: a no-break space or a non-breaking hyphen between the groups of a number,
 * full-width digits and '＠' from a CJK input method, Arabic-Indic digits, zero-width and bidi
 * characters a page inserted to allow line breaks. The detectors are byte scanners of ASCII
 * formats, so the text is folded once into ASCII equivalents of those characters, and what
 * they find is mapped back to byte offsets of the original: redaction replaces the original
 * bytes, invisible ones inside a value included, and restoration stays byte-exact.
 *
 * Scripts written without spaces (CJK, kana, Hangul, Thai) fold to a space, so that a number
 * or an address glued to them ("携帯は090-1234-5678です") has the boundary an ASCII sentence
 * would give it. Text without a non-ASCII byte is not copied. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/pii_internal.h"

/* One folded code point: what it becomes (0: removed), or -1 when it is kept as it is. */
static int fold_code_point(unsigned cp)
{
    /* Invisible: soft hyphen, Mongolian vowel separator, zero-width space/non-joiner/joiner,
     * direction marks and embeddings, word joiner, invisible operators, isolates, BOM. */
    if (cp == 0xAD || cp == 0x180E || (cp >= 0x200B && cp <= 0x200F) ||
        (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) ||
        (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF)
        return 0;
    /* Spaces: no-break, the typographic ones (thin, narrow no-break, ...), ideographic. */
    if (cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x202F ||
        cp == 0x205F || cp == 0x3000)
        return ' ';
    /* Hyphens and dashes, minus signs, and the katakana prolonged sound mark a Japanese input
     * method types for '-' in a phone number. */
    if ((cp >= 0x2010 && cp <= 0x2015) || cp == 0x2212 || cp == 0xFE58 || cp == 0xFE63 ||
        cp == 0x30FC || cp == 0xFF70)
        return '-';
    if (cp >= 0xFF01 && cp <= 0xFF5E) /* full-width ASCII */
        return (int)(cp - 0xFF01 + '!');
    if (cp >= 0x0660 && cp <= 0x0669) /* Arabic-Indic digits */
        return (int)(cp - 0x0660 + '0');
    if (cp >= 0x06F0 && cp <= 0x06F9) /* extended Arabic-Indic (Persian, Urdu) */
        return (int)(cp - 0x06F0 + '0');
    /* Scripts without spaces between words: CJK punctuation, kana, ideographs, Hangul, Thai,
     * half-width katakana. */
    if ((cp >= 0x3001 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
        (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
        (cp >= 0x0E00 && cp <= 0x0E7F) || (cp >= 0xFF61 && cp <= 0xFF9F))
        return ' ';
    return -1;
}

/* The code point of the UTF-8 sequence at s (2 to 4 bytes): its length, or 0 when invalid. */
static size_t decode(const unsigned char *s, size_t avail, unsigned *cp)
{
    size_t n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || n > avail || s[0] > 0xF4)
        return 0;
    unsigned v = s[0] & (0x7F >> n);
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[k] & 0x3F);
    }
    /* Overlong forms and surrogates are invalid: kept as bytes, never folded. */
    static const unsigned smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < smallest[n] || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

static bool add_mark(pii_folded *f, size_t folded, size_t original)
{
    if (f->n_marks && f->marks[f->n_marks - 1].folded == folded) {
        f->marks[f->n_marks - 1].original = original;
        return true;
    }
    if (f->n_marks == f->cap_marks) {
        size_t cap = f->cap_marks ? f->cap_marks * 2 : 64;
        pii_fold_mark *bigger = realloc(f->marks, cap * sizeof *bigger);
        if (!bigger)
            return false;
        f->marks = bigger;
        f->cap_marks = cap;
    }
    f->marks[f->n_marks++] = (pii_fold_mark){folded, original};
    return true;
}

/* How many bytes at s are ASCII: eight at a time, as most text is. */
static size_t ascii_run(const unsigned char *s, size_t n)
{
    size_t k = 0;
    for (uint64_t word; k + 8 <= n; k += 8) {
        memcpy(&word, s + k, 8);
        if (word & 0x8080808080808080u)
            break;
    }
    while (k < n && s[k] < 0x80)
        k++;
    return k;
}

bool ellm_pii_fold(const char *text, size_t len, pii_folded *f)
{
    memset(f, 0, sizeof *f);
    f->original = text;
    f->text = text;
    f->len = len;
    const unsigned char *t = (const unsigned char *)text;
    char *out = NULL;
    size_t i = 0, o = 0; /* read and written; equal until the first fold */
    for (;;) {
        size_t run = ascii_run(t + i, len - i);
        if (out)
            memcpy(out + o, t + i, run);
        i += run;
        o += run;
        if (i >= len)
            break;
        unsigned cp = 0;
        size_t n = decode(t + i, len - i, &cp);
        int to = n ? fold_code_point(cp) : -1;
        if (to < 0) { /* kept: a character of another script, or a byte of invalid UTF-8 */
            size_t keep = n ? n : 1;
            if (out)
                memcpy(out + o, t + i, keep);
            i += keep;
            o += keep;
            continue;
        }
        if (!out) {
            out = malloc(len + 1); /* folding never makes the text longer */
            if (!out)
                return false;
            memcpy(out, text, i);
        }
        if (to > 0)
            out[o++] = (char)to;
        i += n;
        if (!add_mark(f, o, i)) {
            free(out);
            ellm_pii_fold_free(f);
            return false;
        }
    }
    if (out) {
        out[o] = '\0';
        f->owned = out;
        f->text = out;
        f->len = o;
    }
    return true;
}

/* The original offset of the folded byte at pos: the last mark at or before it, then byte for
 * byte, since everything after a mark up to the next one was copied unchanged. */
size_t ellm_pii_fold_start(const pii_folded *f, size_t pos)
{
    size_t lo = 0, hi = f->n_marks; /* first mark after pos */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->marks[mid].folded <= pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return pos;
    const pii_fold_mark *m = &f->marks[lo - 1];
    return m->original + (pos - m->folded);
}

size_t ellm_pii_fold_end(const pii_folded *f, size_t pos)
{
    if (pos == 0 || !f->owned)
        return pos;
    size_t last = ellm_pii_fold_start(f, pos - 1);
    unsigned char was = (unsigned char)f->original[last];
    /* A byte that differs from the original came from a folded sequence: the end is after the
     * whole sequence, never inside it. */
    if ((unsigned char)f->text[pos - 1] == was)
        return last + 1;
    return last + (was >= 0xF0 ? 4 : was >= 0xE0 ? 3 : 2);
}

void ellm_pii_fold_free(pii_folded *f)
{
    free(f->owned);
    free(f->marks);
    memset(f, 0, sizeof *f);
}
