/* Byte-level BPE ("gpt2" vocabularies: GPT-2, Llama 3, Qwen, SmolLM, ...).
 *
 * Text is split into pieces by the family's pre-tokenizer (pretokenize.c). Every byte of a piece
 * starts as the token of its byte-level character (GPT-2's byte-to-unicode map, which writes the
 * 256 bytes as printable characters), then adjacent tokens are merged, always the pair with the
 * lowest rank in tokenizer.ggml.merges (leftmost on ties), until no listed pair is left. A heap
 * of candidate pairs over a linked list of symbols keeps this O(n log n) per piece. */
#include <stdlib.h>
#include <string.h>

#include "core/heap.h"
#include "core/status.h"
#include "core/utf8.h"
#include "tokenizer/normalize.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_internal.h"

typedef struct ellm_bpe {
    ellm_pre_type pre;
    /* A piece that is itself a vocabulary token is taken whole, without merging (Llama 3's
     * tokenizer sets this; its merges do not always rebuild every long token). */
    bool ignore_merges;
    /* Text is NFC-normalized first (Qwen's tokenizer.json has an NFC normalizer; GGUF has no
     * key for normalizers, so it follows from the family like ignore_merges). */
    bool nfc;
    edgellm_token byte_token[256];
    /* Open-addressing table of merges: key (left id << 32 | right id), EMPTY if unused. */
    uint64_t *keys;
    int32_t *rank;
    int32_t *merged;
    uint64_t mask;
} ellm_bpe;

#define EMPTY_KEY UINT64_MAX

/* GPT-2 leaves the printable bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' as the characters with their
 * own code; the other 68 bytes, in increasing order, become U+0100.. U+0143. */
static bool byte_is_printable(uint32_t b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t ellm_bpe_byte_to_char(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0)
        return 0x100 + 33 + (b - 0x7F);
    return 0x100 + 67; /* 0xAD */
}

int ellm_bpe_char_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t k = cp - 0x100;
    if (k < 33)
        return (int)k;
    if (k < 67)
        return (int)(0x7F + k - 33);
    return k == 67 ? 0xAD : -1;
}

static uint64_t pair_key(edgellm_token l, edgellm_token r)
{
    return (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
}

static uint64_t pair_slot(const ellm_bpe *b, uint64_t key)
{
    return ((key * 0x9E3779B97F4A7C15ull) >> 20) & b->mask;
}

/* Rank and result of merging l and r, or -1. */
static int32_t find_merge(const ellm_bpe *b, edgellm_token l, edgellm_token r, edgellm_token *out)
{
    uint64_t key = pair_key(l, r);
    for (uint64_t s = pair_slot(b, key);; s = (s + 1) & b->mask) {
        if (b->keys[s] == EMPTY_KEY)
            return -1;
        if (b->keys[s] == key) {
            *out = b->merged[s];
            return b->rank[s];
        }
    }
}

static edgellm_status load_merges(ellm_bpe *b, const ellm_vocab *v, const gguf_file *f)
{
    const gguf_array *merges;
    edgellm_status st = ellm_gguf_get_array(f, "tokenizer.ggml.merges", &merges);
    if (st == EDGELLM_ERR_NOT_FOUND)
        return ellm_fail(EDGELLM_ERR_FORMAT,
                         "the BPE vocabulary has no merges (tokenizer.ggml.merges is missing)");
    if (st != EDGELLM_OK)
        return st;
    if (merges->elem_type != GGUF_TYPE_STRING || merges->n > INT32_MAX / 4)
        return ellm_fail(EDGELLM_ERR_FORMAT, "tokenizer.ggml.merges must be an array of strings");
    uint64_t cap = 64;
    while (cap < merges->n * 2)
        cap *= 2;
    b->keys = malloc(cap * sizeof *b->keys);
    b->rank = malloc(cap * sizeof *b->rank);
    b->merged = malloc(cap * sizeof *b->merged);
    if (!b->keys || !b->rank || !b->merged)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %llu merges",
                         (unsigned long long)merges->n);
    memset(b->keys, 0xFF, cap * sizeof *b->keys);
    b->mask = cap - 1;
    char *joined = NULL;
    size_t joined_cap = 0;
    for (uint64_t i = 0; i < merges->n; i++) {
        gguf_str m = merges->strings[i];
        /* "LEFT RIGHT": byte-level token texts never hold a real space (it is written 'Ġ'). */
        const char *sp = m.len > 1 ? memchr(m.data + 1, ' ', m.len - 1) : NULL;
        if (!sp) {
            free(joined);
            return ellm_fail(EDGELLM_ERR_FORMAT,
                             "tokenizer.ggml.merges[%llu] is not two tokens separated by a space",
                             (unsigned long long)i);
        }
        size_t ll = (size_t)(sp - m.data), rl = m.len - ll - 1;
        edgellm_token l = ellm_vocab_find(v, m.data, ll), r = ellm_vocab_find(v, sp + 1, rl);
        if (ll + rl > joined_cap) {
            joined_cap = (ll + rl) * 2;
            char *nj = realloc(joined, joined_cap);
            if (!nj) {
                free(joined);
                return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the merges");
            }
            joined = nj;
        }
        memcpy(joined, m.data, ll);
        memcpy(joined + ll, sp + 1, rl);
        edgellm_token res = ellm_vocab_find(v, joined, ll + rl);
        if (l < 0 || r < 0 || res < 0)
            continue; /* a merge of or into a text the vocabulary lacks can never apply */
        uint64_t key = pair_key(l, r), s = pair_slot(b, key);
        while (b->keys[s] != EMPTY_KEY && b->keys[s] != key)
            s = (s + 1) & b->mask;
        if (b->keys[s] == key)
            continue; /* listed twice: the first (lower) rank wins */
        b->keys[s] = key;
        b->rank[s] = (int32_t)i;
        b->merged[s] = res;
    }
    free(joined);
    return EDGELLM_OK;
}

void ellm_bpe_free(ellm_bpe *b)
{
    if (!b)
        return;
    free(b->keys);
    free(b->rank);
    free(b->merged);
    free(b);
}

edgellm_status ellm_bpe_load(ellm_vocab *v, const gguf_file *f)
{
    ellm_bpe *b = calloc(1, sizeof *b);
    if (!b)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the BPE tokenizer");
    v->bpe = b;
    gguf_str pre = {0, NULL};
    edgellm_status st = ellm_gguf_get_str(f, "tokenizer.ggml.pre", &pre);
    if (st == EDGELLM_ERR_NOT_FOUND)
        b->pre = ELLM_PRE_DEFAULT;
    else if (st != EDGELLM_OK)
        return st;
    else if (!ellm_pre_type_from_name(pre.data, pre.len, &b->pre))
        return ellm_fail(EDGELLM_ERR_UNSUPPORTED,
                         "pre-tokenizer '%.*s' (tokenizer.ggml.pre) is not supported yet "
                         "(supported: llama-bpe, qwen2, gpt2, smollm, default)",
                         (int)(pre.len > 40 ? 40 : pre.len), pre.data);
    b->ignore_merges = b->pre == ELLM_PRE_LLAMA3;
    b->nfc = b->pre == ELLM_PRE_QWEN2;
    for (int c = 0; c < 256; c++) {
        char text[2];
        size_t n = ellm_utf8_encode(ellm_bpe_byte_to_char((uint8_t)c), text);
        b->byte_token[c] = ellm_vocab_find(v, text, n);
    }
    return load_merges(b, v, f);
}

/* ---- Tokenization ---- */

typedef struct cand {
    int32_t rank;
    int32_t left;
    edgellm_token lid, rid; /* ids when queued; a changed id means the pair is stale */
    edgellm_token merged;
} cand;

static bool cand_before(const cand *a, const cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

ELLM_HEAP_DEFINE(cand_heap, cand, cand_before)

typedef struct work {
    ellm_pretok pre;
    edgellm_token *id;
    int32_t *prev, *next;
    size_t sym_cap;
    cand_heap heap;
    char *mapped;
    char *normalized;
    size_t normalized_cap;
    edgellm_token *out;
    int32_t out_max, out_n;
} work;

static void emit(work *w, edgellm_token t)
{
    if (w->out_n < w->out_max)
        w->out[w->out_n] = t;
    w->out_n++;
}

static bool queue_pair(work *w, const ellm_bpe *b, int32_t left)
{
    if (left < 0 || w->next[left] < 0)
        return true;
    edgellm_token lid = w->id[left], rid = w->id[w->next[left]], res;
    int32_t rank = find_merge(b, lid, rid, &res);
    if (rank < 0)
        return true;
    return cand_heap_push(&w->heap, (cand){rank, left, lid, rid, res});
}

static edgellm_status bpe_piece(work *w, const ellm_vocab *v, const char *text, size_t n)
{
    const ellm_bpe *b = v->bpe;
    if (b->ignore_merges && n > 1) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            m += ellm_utf8_encode(ellm_bpe_byte_to_char((uint8_t)text[i]), w->mapped + m);
        edgellm_token whole = ellm_vocab_find(v, w->mapped, m);
        if (whole >= 0) {
            emit(w, whole);
            return EDGELLM_OK;
        }
    }
    for (size_t i = 0; i < n; i++) {
        edgellm_token t;
        edgellm_status st = ellm_vocab_byte_fallback(v, b->byte_token[(uint8_t)text[i]],
                                                     (uint8_t)text[i], &t);
        if (st != EDGELLM_OK)
            return st;
        w->id[i] = t;
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->heap.n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (!queue_pair(w, b, (int32_t)i))
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to tokenize");
    while (w->heap.n > 0) {
        cand c = cand_heap_pop(&w->heap);
        int32_t l = c.left, r = w->next[l];
        if (w->id[l] != c.lid || r < 0 || w->id[r] != c.rid || w->prev[l] == -2)
            continue; /* stale: a side was merged since this pair was queued */
        w->id[l] = c.merged;
        w->next[l] = w->next[r];
        if (w->next[r] >= 0)
            w->prev[w->next[r]] = l;
        w->prev[r] = -2; /* dead */
        if (!queue_pair(w, b, w->prev[l]) || !queue_pair(w, b, l))
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to tokenize");
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        emit(w, w->id[i]);
    return EDGELLM_OK;
}

/* Tokenizes text that holds no special tokens. */
static edgellm_status bpe_text(work *w, const ellm_vocab *v, const char *text, size_t len)
{
    if (len == 0)
        return EDGELLM_OK;
    if (v->bpe->nfc) {
        edgellm_status st = ellm_nfc(text, len, &w->normalized, &w->normalized_cap, &text, &len);
        if (st != EDGELLM_OK)
            return st;
    }
    if (len > w->sym_cap) {
        free(w->id);
        free(w->prev);
        free(w->next);
        free(w->mapped);
        w->id = malloc(len * sizeof *w->id);
        w->prev = malloc(len * sizeof *w->prev);
        w->next = malloc(len * sizeof *w->next);
        w->mapped = malloc(len * 2);
        w->sym_cap = w->id && w->prev && w->next && w->mapped ? len : 0;
        if (!w->sym_cap)
            return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory to tokenize %zu bytes", len);
    }
    size_t n_pieces;
    edgellm_status st = ellm_pretokenize(&w->pre, v->bpe->pre, text, len, &n_pieces);
    for (size_t k = 0; st == EDGELLM_OK && k < n_pieces; k++) {
        size_t a = ellm_pretok_piece_start(&w->pre, k), e = ellm_pretok_piece_end(&w->pre, k);
        st = bpe_piece(w, v, text + a, e - a);
    }
    return st;
}

edgellm_status ellm_bpe_tokenize(const ellm_vocab *v, const char *text, size_t len, bool add_bos,
                                 bool parse_special, edgellm_token *tokens, int32_t max_tokens,
                                 int32_t *n_tokens)
{
    work w = {.out = tokens, .out_max = max_tokens};
    if (add_bos && v->bos >= 0)
        emit(&w, v->bos);
    edgellm_status st = EDGELLM_OK;
    size_t start = 0;
    if (parse_special && v->n_specials > 0) {
        for (size_t i = 0; i < len && st == EDGELLM_OK;) {
            edgellm_token special = ellm_vocab_match_special(v, text + i, len - i);
            if (special < 0) {
                i++;
                continue;
            }
            st = bpe_text(&w, v, text + start, i - start);
            emit(&w, special);
            i += v->tokens[special].len;
            start = i;
        }
    }
    if (st == EDGELLM_OK)
        st = bpe_text(&w, v, text + start, len - start);
    ellm_pretok_free(&w.pre);
    free(w.id);
    free(w.prev);
    free(w.next);
    free(w.mapped);
    free(w.normalized);
    free(w.heap.items);
    if (st != EDGELLM_OK)
        return st;
    *n_tokens = w.out_n;
    if (w.out_n > max_tokens)
        return ellm_fail(EDGELLM_ERR_BUFFER_TOO_SMALL, "%d tokens do not fit in a buffer of %d",
                         w.out_n, max_tokens);
    return EDGELLM_OK;
}
