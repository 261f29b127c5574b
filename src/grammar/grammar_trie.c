/* The byte trie of a vocabulary's token texts. Tokens are sorted by their bytes, so each trie
 * node covers a contiguous range of the sorted order ("slots"); nodes are numbered breadth-first,
 * so children are consecutive and always come after their parent. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "grammar/grammar.h"

typedef struct sort_key {
    const char *bytes;
    int32_t len, id;
} sort_key;

static int by_bytes(const void *a, const void *b)
{
    const sort_key *x = a, *y = b;
    int c = memcmp(x->bytes, y->bytes, (size_t)(x->len < y->len ? x->len : y->len));
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void ellm_token_trie_destroy(ellm_token_trie *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->slot_token);
    free(t->token_slot);
    free(t->slot_cps);
    free(t->token_eog);
    free(t->bytes);
    free(t->token_off);
    free(t->token_len);
    free(t);
}

static edgellm_status no_memory(ellm_token_trie *t)
{
    ellm_token_trie_destroy(t);
    return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the vocabulary trie");
}

edgellm_status ellm_token_trie_build(int32_t n_tokens, const char *const *pieces,
                                     const int32_t *lens, const uint8_t *eog, ellm_token_trie **out)
{
    *out = NULL;
    if (n_tokens <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "the vocabulary is empty");
    ellm_token_trie *t = calloc(1, sizeof *t);
    if (!t)
        return no_memory(t);
    t->n_tokens = n_tokens;
    t->token_off = malloc((size_t)n_tokens * sizeof *t->token_off);
    t->token_len = malloc((size_t)n_tokens * sizeof *t->token_len);
    t->token_eog = calloc((size_t)n_tokens, 1);
    t->token_slot = malloc((size_t)n_tokens * sizeof *t->token_slot);
    t->slot_token = malloc((size_t)n_tokens * sizeof *t->slot_token);
    t->slot_cps = malloc((size_t)n_tokens * sizeof *t->slot_cps);
    if (!t->token_off || !t->token_len || !t->token_eog || !t->token_slot || !t->slot_token ||
        !t->slot_cps)
        return no_memory(t);
    int64_t total = 0;
    for (int32_t i = 0; i < n_tokens; i++)
        total += lens[i] > 0 ? lens[i] : 0;
    t->bytes = malloc((size_t)total + 1);
    if (!t->bytes)
        return no_memory(t);
    int64_t off = 0;
    for (int32_t i = 0; i < n_tokens; i++) {
        int32_t len = lens[i] > 0 ? lens[i] : 0;
        t->token_off[i] = off;
        t->token_len[i] = len;
        if (len)
            memcpy(t->bytes + off, pieces[i], (size_t)len);
        off += len;
        t->token_eog[i] = eog ? eog[i] : 0;
        t->token_slot[i] = -1;
        /* End-of-generation tokens are decided by completeness, never by their text. */
        if (len > 0 && !t->token_eog[i])
            t->slot_token[t->n_slots++] = i;
    }
    sort_key *keys = malloc(((size_t)t->n_slots + 1) * sizeof *keys);
    if (!keys)
        return no_memory(t);
    for (int32_t s = 0; s < t->n_slots; s++) {
        int32_t id = t->slot_token[s];
        keys[s] = (sort_key){t->bytes + t->token_off[id], t->token_len[id], id};
    }
    qsort(keys, (size_t)t->n_slots, sizeof *keys, by_bytes);
    for (int32_t s = 0; s < t->n_slots; s++)
        t->slot_token[s] = keys[s].id;
    free(keys);
    for (int32_t s = 0; s < t->n_slots; s++)
        t->token_slot[t->slot_token[s]] = s;

    /* Breadth-first: node v covers slots [slot_lo, slot_hi) sharing its depth-byte prefix. */
    int32_t cap = 1024;
    t->nodes = malloc((size_t)cap * sizeof *t->nodes);
    int32_t *depth = malloc((size_t)cap * sizeof *depth);
    int32_t *need = malloc((size_t)cap * sizeof *need); /* partial character at the node */
    uint32_t *part = malloc((size_t)cap * sizeof *part);
    if (!t->nodes || !depth || !need || !part) {
        free(depth);
        free(need);
        free(part);
        return no_memory(t);
    }
    t->nodes[0] = (ellm_trie_node){.slot_lo = 0, .slot_hi = t->n_slots, .cp_in = 0};
    depth[0] = need[0] = 0;
    part[0] = 0;
    t->n_nodes = 1;
    for (int32_t v = 0; v < t->n_nodes; v++) {
        int32_t d = depth[v];
        int32_t s = t->nodes[v].slot_lo, hi = t->nodes[v].slot_hi;
        while (s < hi && t->token_len[t->slot_token[s]] == d)
            s++;
        t->nodes[v].term_hi = s;
        for (int32_t k = t->nodes[v].slot_lo; k < s; k++)
            t->slot_cps[k] = t->nodes[v].cp_depth;
        t->nodes[v].first_child = t->n_nodes;
        while (s < hi) {
            uint8_t b = (uint8_t)t->bytes[t->token_off[t->slot_token[s]] + d];
            int32_t e = s;
            while (e < hi && (uint8_t)t->bytes[t->token_off[t->slot_token[e]] + d] == b)
                e++;
            if (t->n_nodes == cap) {
                cap *= 2;
                void *a = realloc(t->nodes, (size_t)cap * sizeof *t->nodes);
                if (a)
                    t->nodes = a;
                void *b2 = a ? realloc(depth, (size_t)cap * sizeof *depth) : NULL;
                if (b2)
                    depth = b2;
                void *c2 = b2 ? realloc(need, (size_t)cap * sizeof *need) : NULL;
                if (c2)
                    need = c2;
                void *d2 = c2 ? realloc(part, (size_t)cap * sizeof *part) : NULL;
                if (d2)
                    part = d2;
                if (!d2) {
                    free(depth);
                    free(need);
                    free(part);
                    return no_memory(t);
                }
            }
            int32_t w = t->n_nodes++;
            /* The decoder state after this edge, for the "whole characters of one class" test. */
            int32_t cp_in;
            int32_t n2 = need[v];
            uint32_t p2 = part[v];
            if (t->nodes[v].cp_in == -2) {
                cp_in = -2;
            } else if (n2 == 0) {
                n2 = ellm_utf8_lead(b, &p2);
                cp_in = n2 == 0 ? b : n2 > 0 ? -1 : -2;
            } else if (!ellm_utf8_continuation_ok(n2, p2, b)) {
                cp_in = -2;
            } else {
                p2 = (p2 << 6) | (b & 0x3F);
                cp_in = --n2 == 0 ? (int32_t)p2 : -1;
            }
            t->nodes[w] = (ellm_trie_node){.slot_lo = s,
                                           .slot_hi = e,
                                           .cp_in = cp_in,
                                           .byte = b,
                                           .cp_depth = t->nodes[v].cp_depth + (cp_in >= 0)};
            depth[w] = d + 1;
            need[w] = cp_in == -2 ? 0 : n2;
            part[w] = p2;
            t->nodes[v].n_children++;
            s = e;
        }
    }
    free(depth);
    free(need);
    free(part);
    *out = t;
    return EDGELLM_OK;
}
