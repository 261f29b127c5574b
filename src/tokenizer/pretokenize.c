/* Hand-written matchers for the split regexes of byte-level BPE families (see pretokenize.h).
 * Text is decoded once into code points and category flags; every matcher then works on code
 * point indices and returns the length of the match at a position (0: no alternative matches
 * there). Lookahead never crosses the end of the piece being split, like a regex run on it. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/utf8.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

typedef struct chars {
    const uint32_t *cp;
    const uint8_t *fl;
} chars;

static bool is_letter(const chars *c, size_t i) { return c->fl[i] & ELLM_UC_LETTER; }
static bool is_number(const chars *c, size_t i) { return c->fl[i] & ELLM_UC_NUMBER; }
static bool is_space(const chars *c, size_t i) { return c->fl[i] & ELLM_UC_WHITESPACE; }
static bool is_crlf(const chars *c, size_t i) { return c->cp[i] == '\r' || c->cp[i] == '\n'; }
/* [^\s\p{L}\p{N}] */
static bool is_other(const chars *c, size_t i)
{
    return !(c->fl[i] & (ELLM_UC_WHITESPACE | ELLM_UC_LETTER | ELLM_UC_NUMBER));
}

static size_t run(const chars *c, size_t i, size_t end, bool (*pred)(const chars *, size_t))
{
    size_t j = i;
    while (j < end && pred(c, j))
        j++;
    return j - i;
}

static uint32_t lower_ascii(uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; }

/* 's|'t|'re|'ve|'m|'ll|'d, ASCII case-insensitive when fold is set. */
static size_t match_contraction(const chars *c, size_t i, size_t end, bool fold)
{
    if (c->cp[i] != '\'' || i + 1 >= end)
        return 0;
    uint32_t a = c->cp[i + 1], b = i + 2 < end ? c->cp[i + 2] : 0;
    if (fold) {
        a = lower_ascii(a);
        b = lower_ascii(b);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* \s+(?!\S) then \s+ (when plain_spaces): a whitespace run, leaving its last character for the
 * next piece when a non-space follows (so " word" keeps its space). */
static size_t match_spaces(const chars *c, size_t i, size_t end, bool plain_spaces)
{
    size_t n = run(c, i, end, is_space);
    if (n == 0)
        return 0;
    if (i + n == end || n > 1)
        return i + n == end ? n : n - 1;
    return plain_spaces ? n : 0;
}

/* The Llama 3 / Qwen 2 regex; max_digits is 3 or 1. */
static size_t match_llama3(const chars *c, size_t i, size_t end, size_t max_digits)
{
    size_t n = match_contraction(c, i, end, true);
    if (n)
        return n;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (!is_crlf(c, i) && !is_letter(c, i) && !is_number(c, i) && i + 1 < end &&
        is_letter(c, i + 1))
        return 1 + run(c, i + 1, end, is_letter);
    if (is_letter(c, i))
        return run(c, i, end, is_letter);
    /* \p{N}{1,max} */
    if (is_number(c, i)) {
        size_t limit = end - i < max_digits ? end - i : max_digits; /* never scan the whole run */
        return run(c, i, i + limit, is_number);
    }
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    size_t s = c->cp[i] == ' ' && i + 1 < end && is_other(c, i + 1) ? 1 : 0;
    if (is_other(c, i + s)) {
        n = s + run(c, i + s, end, is_other);
        return n + run(c, i + n, end, is_crlf);
    }
    /* \s*[\r\n]+ : the whitespace run up to and including its last \r or \n */
    size_t ws = run(c, i, end, is_space);
    for (size_t k = ws; k > 0; k--)
        if (is_crlf(c, i + k - 1))
            return k;
    /* \s+(?!\S)|\s+ */
    return match_spaces(c, i, end, true);
}

static size_t match_llama3_3(const chars *c, size_t i, size_t end)
{
    return match_llama3(c, i, end, 3);
}

static size_t match_qwen2(const chars *c, size_t i, size_t end)
{
    return match_llama3(c, i, end, 1);
}

/* ' ?X+' for a class X. */
static size_t space_then_run(const chars *c, size_t i, size_t end,
                             bool (*pred)(const chars *, size_t))
{
    size_t s = c->cp[i] == ' ' && i + 1 < end && pred(c, i + 1) ? 1 : 0;
    return pred(c, i + s) ? s + run(c, i + s, end, pred) : 0;
}

static size_t match_gpt2_common(const chars *c, size_t i, size_t end, bool plain_spaces)
{
    size_t n = match_contraction(c, i, end, false);
    if (!n)
        n = space_then_run(c, i, end, is_letter);
    if (!n)
        n = space_then_run(c, i, end, is_number);
    if (!n)
        n = space_then_run(c, i, end, is_other);
    if (!n)
        n = match_spaces(c, i, end, plain_spaces);
    return n;
}

static size_t match_gpt2(const chars *c, size_t i, size_t end)
{
    return match_gpt2_common(c, i, end, true);
}

static size_t match_gpt2_no_plain_spaces(const chars *c, size_t i, size_t end)
{
    return match_gpt2_common(c, i, end, false);
}

static size_t match_one_number(const chars *c, size_t i, size_t end)
{
    (void)end;
    return is_number(c, i) ? 1 : 0;
}

static size_t match_numbers(const chars *c, size_t i, size_t end)
{
    return run(c, i, end, is_number);
}

/* [\p{P}\$\+<=>\^~\|]+ */
static bool is_default_punct(const chars *c, size_t i)
{
    uint32_t cp = c->cp[i];
    return (c->fl[i] & ELLM_UC_PUNCTUATION) || cp == '$' || cp == '+' || cp == '<' || cp == '=' ||
           cp == '>' || cp == '^' || cp == '~' || cp == '|';
}

static size_t match_default_punct(const chars *c, size_t i, size_t end)
{
    return run(c, i, end, is_default_punct);
}

static bool is_ascii_digit(const chars *c, size_t i) { return c->cp[i] >= '0' && c->cp[i] <= '9'; }

static size_t match_three_digits(const chars *c, size_t i, size_t end)
{
    return i + 3 <= end && is_ascii_digit(c, i) && is_ascii_digit(c, i + 1) &&
                   is_ascii_digit(c, i + 2)
               ? 3
               : 0;
}

typedef size_t (*matcher)(const chars *c, size_t i, size_t end);

bool ellm_pre_type_from_name(const char *name, size_t len, ellm_pre_type *out)
{
    static const struct {
        const char *name;
        ellm_pre_type type;
    } names[] = {{"default", ELLM_PRE_DEFAULT}, {"llama-bpe", ELLM_PRE_LLAMA3},
                 {"llama3", ELLM_PRE_LLAMA3},   {"qwen2", ELLM_PRE_QWEN2},
                 {"gpt2", ELLM_PRE_GPT2},       {"smollm", ELLM_PRE_SMOLLM}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (strlen(names[k].name) == len && memcmp(names[k].name, name, len) == 0) {
            *out = names[k].type;
            return true;
        }
    }
    return false;
}

const char *ellm_pre_type_name(ellm_pre_type type)
{
    switch (type) {
    case ELLM_PRE_DEFAULT: return "default";
    case ELLM_PRE_LLAMA3: return "llama-bpe";
    case ELLM_PRE_QWEN2: return "qwen2";
    case ELLM_PRE_GPT2: return "gpt2";
    case ELLM_PRE_SMOLLM: return "smollm";
    }
    return "?";
}

void ellm_pretok_free(ellm_pretok *p)
{
    free(p->cp);
    free(p->flags);
    free(p->offset);
    free(p->ends[0]);
    free(p->ends[1]);
    memset(p, 0, sizeof *p);
}

static bool reserve(ellm_pretok *p, size_t n)
{
    if (n + 1 <= p->cap)
        return true;
    size_t cap = p->cap ? p->cap : 256;
    while (cap < n + 1)
        cap *= 2;
    uint32_t *cp = realloc(p->cp, cap * sizeof *cp);
    if (cp)
        p->cp = cp;
    uint8_t *fl = realloc(p->flags, cap);
    if (fl)
        p->flags = fl;
    uint32_t *off = realloc(p->offset, cap * sizeof *off);
    if (off)
        p->offset = off;
    uint32_t *e0 = realloc(p->ends[0], cap * sizeof *e0);
    if (e0)
        p->ends[0] = e0;
    uint32_t *e1 = realloc(p->ends[1], cap * sizeof *e1);
    if (e1)
        p->ends[1] = e1;
    if (!cp || !fl || !off || !e0 || !e1)
        return false;
    p->cap = cap;
    return true;
}

/* Splits every piece of stage `from` with m into stage 1 - from: matches and the text between
 * them become pieces. */
static void split_stage(ellm_pretok *p, const chars *c, int from, matcher m)
{
    const uint32_t *in = p->ends[from];
    uint32_t *out = p->ends[1 - from];
    size_t n_out = 0, start = 0;
    for (size_t k = 0; k < p->n_ends[from]; k++) {
        size_t end = in[k], gap = start, i = start;
        while (i < end) {
            size_t len = m(c, i, end);
            if (len == 0) {
                i++;
                continue;
            }
            if (i > gap)
                out[n_out++] = (uint32_t)i;
            i += len;
            out[n_out++] = (uint32_t)i;
            gap = i;
        }
        if (gap < end)
            out[n_out++] = (uint32_t)end;
        start = end;
    }
    p->n_ends[1 - from] = n_out;
    p->cur = 1 - from;
}

edgellm_status ellm_pretokenize(ellm_pretok *p, ellm_pre_type type, const char *text, size_t len,
                                size_t *n_pieces)
{
    *n_pieces = 0;
    if (len > UINT32_MAX - 1)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "text of %zu bytes is too long to tokenize",
                         len);
    if (!reserve(p, len))
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to pre-tokenize %zu bytes", len);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t l;
        uint32_t cp = ellm_utf8_decode(text + i, len - i, &l);
        p->cp[n] = cp;
        p->flags[n] = ellm_unicode_flags(cp);
        p->offset[n] = (uint32_t)i;
        n++;
        i += l;
    }
    p->offset[n] = (uint32_t)len;
    p->cur = 0;
    p->n_ends[0] = 0;
    if (n == 0)
        return EDGELLM_OK;
    p->ends[0][0] = (uint32_t)n;
    p->n_ends[0] = 1;
    chars c = {p->cp, p->flags};
    switch (type) {
    case ELLM_PRE_LLAMA3: split_stage(p, &c, 0, match_llama3_3); break;
    case ELLM_PRE_QWEN2: split_stage(p, &c, 0, match_qwen2); break;
    case ELLM_PRE_GPT2: split_stage(p, &c, 0, match_gpt2); break;
    case ELLM_PRE_SMOLLM:
        split_stage(p, &c, 0, match_one_number);
        split_stage(p, &c, 1, match_gpt2);
        break;
    case ELLM_PRE_DEFAULT:
        split_stage(p, &c, 0, match_default_punct);
        split_stage(p, &c, 1, match_gpt2_no_plain_spaces);
        split_stage(p, &c, 0, match_numbers);
        split_stage(p, &c, 1, match_three_digits);
        break;
    }
    *n_pieces = p->n_ends[p->cur];
    return EDGELLM_OK;
}

size_t ellm_pretok_piece_start(const ellm_pretok *p, size_t k)
{
    return k == 0 ? 0 : p->offset[p->ends[p->cur][k - 1]];
}

size_t ellm_pretok_piece_end(const ellm_pretok *p, size_t k)
{
    return p->offset[p->ends[p->cur][k]];
}
