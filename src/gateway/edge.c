#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/edge.h"

edgellm_status ellm_gw_edge_open(gw_edge *e, srv_server *srv, int32_t n_ctx)
{
    memset(e, 0, sizeof *e);
    int32_t slot = ellm_srv_scheduler_n_ctx(srv->sched);
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = n_ctx < slot ? n_ctx : slot;
    cp.n_threads = srv->cfg->n_threads;
    cp.n_batch = srv->cfg->n_batch > 0 ? srv->cfg->n_batch : 256;
    e->model = srv->model;
    e->n_vocab = edgellm_n_vocab(srv->model);
    return edgellm_context_create(srv->model, &cp, &e->ctx);
}

void ellm_gw_edge_close(gw_edge *e)
{
    edgellm_context_free(e->ctx);
    memset(e, 0, sizeof *e);
}

const float *ellm_gw_edge_sync(gw_edge *e, const edgellm_token *seq, int32_t n)
{
    if (n < 1)
        return NULL;
    int32_t held = 0;
    const edgellm_token *have = edgellm_context_tokens(e->ctx, &held);
    /* The last token is always evaluated again: its logits are what the caller wants, and the
     * context keeps only the latest pass's. */
    int32_t keep = 0;
    while (keep < held && keep < n - 1 && have[keep] == seq[keep])
        keep++;
    if (edgellm_context_truncate(e->ctx, keep) != EDGELLM_OK ||
        edgellm_eval(e->ctx, seq + keep, n - keep, 0) != EDGELLM_OK)
        return NULL;
    return edgellm_get_logits(e->ctx, -1);
}

const float *ellm_gw_edge_push(gw_edge *e, edgellm_token token)
{
    if (edgellm_eval(e->ctx, &token, 1, 0) != EDGELLM_OK)
        return NULL;
    return edgellm_get_logits(e->ctx, -1);
}

edgellm_token ellm_gw_argmax(const float *logits, int32_t n_vocab)
{
    edgellm_token best = 0;
    for (int32_t v = 1; v < n_vocab; v++)
        if (logits[v] > logits[best])
            best = v;
    return best;
}

double ellm_gw_logprob(const float *logits, int32_t n_vocab, edgellm_token token,
                       double temperature)
{
    double t = temperature > 0 ? temperature : 1;
    double m = logits[ellm_gw_argmax(logits, n_vocab)] / t, z = 0;
    for (int32_t v = 0; v < n_vocab; v++)
        z += exp(logits[v] / t - m);
    return logits[token] / t - m - log(z);
}

edgellm_token ellm_gw_sample(const float *logits, int32_t n_vocab, double temperature, double u)
{
    double m = logits[ellm_gw_argmax(logits, n_vocab)] / temperature, z = 0;
    for (int32_t v = 0; v < n_vocab; v++)
        z += exp(logits[v] / temperature - m);
    double acc = 0, target = u * z;
    for (int32_t v = 0; v < n_vocab; v++) {
        acc += exp(logits[v] / temperature - m);
        if (target < acc)
            return v;
    }
    return ellm_gw_argmax(logits, n_vocab);
}

bool ellm_gw_events_push(srv_event **events, size_t *n, size_t *cap, edgellm_token token,
                         const char *text, size_t len)
{
    if (*n == *cap) {
        size_t grown = *cap ? *cap * 2 : 64;
        srv_event *e = realloc(*events, grown * sizeof *e);
        if (!e)
            return false;
        *events = e;
        *cap = grown;
    }
    srv_event *e = &(*events)[*n];
    memset(e, 0, sizeof *e);
    if (!(e->text = malloc(len + 1)))
        return false;
    memcpy(e->text, text, len);
    e->text[len] = '\0';
    e->len = len;
    e->token = token;
    (*n)++;
    return true;
}

/* ---- token texts ---- */

typedef struct vocab_entry {
    char *text;
    size_t len;
    edgellm_token id;
    int rank; /* 0 end of generation, 1 ordinary, 2 byte token: lower wins among equal texts */
} vocab_entry;

struct gw_vocab_map {
    vocab_entry *entries;
    int32_t n;
};

static int entry_cmp(const void *pa, const void *pb)
{
    const vocab_entry *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->text, b->text, n);
    if (c)
        return c;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    if (a->rank != b->rank)
        return a->rank - b->rank;
    return a->id - b->id;
}

static bool is_byte_token(const edgellm_model *model, edgellm_token id)
{
    char text[16];
    size_t len = 0;
    return edgellm_token_text(model, id, text, sizeof text, &len) == EDGELLM_OK && len == 6 &&
           !memcmp(text, "<0x", 3) && text[5] == '>';
}

gw_vocab_map *ellm_gw_vocab_map_build(const edgellm_model *model)
{
    gw_vocab_map *m = calloc(1, sizeof *m);
    int32_t n = edgellm_n_vocab(model);
    if (!m || n <= 0 || !(m->entries = calloc((size_t)n, sizeof *m->entries))) {
        free(m);
        return NULL;
    }
    for (int32_t id = 0; id < n; id++) {
        size_t len = 0;
        edgellm_token_to_piece(model, id, NULL, 0, &len);
        char *text = malloc(len + 1);
        if (!text ||
            (len && edgellm_token_to_piece(model, id, text, len + 1, &len) != EDGELLM_OK)) {
            free(text);
            m->n = id;
            ellm_gw_vocab_map_free(m);
            return NULL;
        }
        m->entries[id] = (vocab_entry){text, len, id,
                                       edgellm_token_is_eog(model, id) ? 0
                                       : is_byte_token(model, id)      ? 2
                                                                       : 1};
    }
    m->n = n;
    qsort(m->entries, (size_t)n, sizeof *m->entries, entry_cmp);
    return m;
}

void ellm_gw_vocab_map_free(gw_vocab_map *m)
{
    if (!m)
        return;
    for (int32_t i = 0; i < m->n; i++)
        free(m->entries[i].text);
    free(m->entries);
    free(m);
}

edgellm_token ellm_gw_vocab_map_find(const gw_vocab_map *m, const char *text, size_t len)
{
    /* The first entry not below (text, rank -1): the best-ranked token with that text. */
    vocab_entry key = {(char *)text, len, -1, -1};
    int32_t lo = 0, hi = m->n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (entry_cmp(&m->entries[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < m->n && m->entries[lo].len == len && !memcmp(m->entries[lo].text, text, len))
        return m->entries[lo].id;
    return -1;
}
