/* SentencePiece-style tokenization: spaces become "▁", then adjacent pieces are merged greedily,
 * always taking the pair whose merged text is the highest-scoring vocabulary token (leftmost on
 * ties). Pieces left that are not tokens fall back to byte tokens. */
#include <stdlib.h>
#include <string.h>

#include "core/heap.h"
#include "core/status.h"
#include "core/utf8.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_internal.h"

static const char SPACE_MARK[] = "\xE2\x96\x81"; /* U+2581 */

typedef struct symbol {
    const char *text;
    uint32_t len;
    int32_t prev, next;
} symbol;

typedef struct bigram {
    int32_t left, right;
    float score;
    uint32_t len; /* merged length, to detect stale entries */
} bigram;

/* Higher score first; on ties the leftmost pair. */
static bool before(const bigram *a, const bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

ELLM_HEAP_DEFINE(heap, bigram, before)

typedef struct token_out {
    edgellm_token *tokens;
    int32_t max;
    int32_t n;
} token_out;

static void emit(token_out *o, edgellm_token t)
{
    if (o->n < o->max)
        o->tokens[o->n] = t;
    o->n++;
}

static void try_bigram(const ellm_vocab *v, symbol *syms, heap *h, int32_t left, int32_t right,
                       bool *oom)
{
    if (left < 0 || right < 0)
        return;
    uint32_t len = syms[left].len + syms[right].len;
    /* Symbols are always contiguous in the buffer, so the merged text is in place. */
    edgellm_token id = ellm_vocab_find(v, syms[left].text, len);
    if (id < 0)
        return;
    bigram b = {left, right, v->tokens[id].score, len};
    if (!heap_push(h, b))
        *oom = true;
}

static edgellm_status emit_piece(const ellm_vocab *v, const char *text, uint32_t len, token_out *o)
{
    edgellm_token id = ellm_vocab_find(v, text, len);
    if (id >= 0) {
        emit(o, id);
        return EDGELLM_OK;
    }
    for (uint32_t i = 0; i < len; i++) {
        edgellm_status st = ellm_vocab_byte_fallback(v, v->byte_tokens[(unsigned char)text[i]],
                                                     (uint8_t)text[i], &id);
        if (st != EDGELLM_OK)
            return st;
        emit(o, id);
    }
    return EDGELLM_OK;
}

/* Tokenizes one fragment of plain text (already escaped) into o. */
static edgellm_status tokenize_escaped(const ellm_vocab *v, const char *text, size_t len,
                                       token_out *o)
{
    if (len == 0)
        return EDGELLM_OK;
    symbol *syms = malloc(len * sizeof *syms);
    heap h = {0};
    if (!syms)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to tokenize %zu bytes", len);
    int32_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cl = (uint32_t)ellm_utf8_sequence_length((unsigned char)text[i]);
        if (cl > len - i)
            cl = (uint32_t)(len - i);
        syms[n] = (symbol){text + i, cl, n - 1, -1};
        if (n > 0)
            syms[n - 1].next = n;
        n++;
        i += cl;
    }
    bool oom = false;
    for (int32_t i = 0; i + 1 < n; i++)
        try_bigram(v, syms, &h, i, i + 1, &oom);
    while (h.n > 0 && !oom) {
        bigram b = heap_pop(&h);
        symbol *l = &syms[b.left], *r = &syms[b.right];
        if (l->len == 0 || r->len == 0 || l->next != b.right || l->len + r->len != b.len)
            continue; /* stale: one side was merged since this pair was queued */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = b.left;
        try_bigram(v, syms, &h, l->prev, b.left, &oom);
        try_bigram(v, syms, &h, b.left, l->next, &oom);
    }
    edgellm_status st = EDGELLM_OK;
    for (int32_t i = 0; !oom && st == EDGELLM_OK && i >= 0; i = syms[i].next)
        st = emit_piece(v, syms[i].text, syms[i].len, o);
    free(h.items);
    free(syms);
    return oom ? ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to tokenize") : st;
}

/* Escapes spaces as U+2581 (and adds the dummy prefix) then tokenizes. */
static edgellm_status tokenize_text(const ellm_vocab *v, const char *text, size_t len, bool prefix,
                                    token_out *o)
{
    size_t spaces = prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        spaces += text[i] == ' ';
    size_t cap = len + 2 * spaces + 1;
    char *buf = malloc(cap);
    if (!buf)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to tokenize %zu bytes", len);
    size_t n = 0;
    if (prefix) {
        memcpy(buf, SPACE_MARK, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n, SPACE_MARK, 3);
            n += 3;
        } else {
            buf[n++] = text[i];
        }
    }
    edgellm_status st = tokenize_escaped(v, buf, n, o);
    free(buf);
    return st;
}

edgellm_status ellm_tokenize(const ellm_vocab *v, const char *text, size_t len, bool add_bos,
                             bool parse_special, edgellm_token *tokens, int32_t max_tokens,
                             int32_t *n_tokens)
{
    if (!v || (!text && len > 0) || !n_tokens || max_tokens < 0 || (!tokens && max_tokens > 0))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "ellm_tokenize: invalid arguments");
    if (v->bpe)
        return ellm_bpe_tokenize(v, text, len, add_bos, parse_special, tokens, max_tokens,
                                 n_tokens);
    token_out o = {tokens, max_tokens, 0};
    if (add_bos && v->bos >= 0)
        emit(&o, v->bos);
    edgellm_status st = EDGELLM_OK;
    /* The dummy prefix goes before the first text and before text that follows a control
     * token, as SentencePiece-based GGUF runtimes do. */
    bool after_special = true;
    size_t start = 0;
    for (size_t i = 0; i <= len && st == EDGELLM_OK;) {
        edgellm_token special = -1;
        if (parse_special && i < len && v->n_specials > 0)
            special = ellm_vocab_match_special(v, text + i, len - i);
        if (special < 0 && i < len) {
            i++;
            continue;
        }
        if (i > start) {
            st = tokenize_text(v, text + start, i - start, after_special && v->add_space_prefix,
                               &o);
            after_special = false;
        }
        if (special >= 0) {
            emit(&o, special);
            after_special = true;
            i += v->tokens[special].len;
            start = i;
        } else {
            break;
        }
    }
    if (st != EDGELLM_OK)
        return st;
    *n_tokens = o.n;
    if (o.n > max_tokens)
        return ellm_fail(EDGELLM_ERR_BUFFER_TOO_SMALL, "%d tokens do not fit in a buffer of %d",
                         o.n, max_tokens);
    return EDGELLM_OK;
}
