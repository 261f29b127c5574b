#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "gateway/classify.h"
#include "gateway/edge.h"

typedef struct token_list {
    edgellm_token *ids;
    int32_t n;
} token_list;

static bool tokenize(const edgellm_model *model, const char *text, size_t len, token_list *out)
{
    int flags = edgellm_add_bos_default(model) ? EDGELLM_TOKENIZE_ADD_BOS : 0;
    int32_t n = 0;
    edgellm_tokenize(model, text, len, flags, NULL, 0, &n);
    free(out->ids);
    out->ids = malloc(((size_t)n + 1) * sizeof *out->ids);
    out->n = 0;
    return out->ids &&
           edgellm_tokenize(model, text, len, flags, out->ids, n, &out->n) == EDGELLM_OK;
}

/* "Text: <input>\nCategory:" and, with a label, " <label>" after it. */
static char *prompt_text(const char *text, size_t len, const char *label, size_t *out_len)
{
    static const char head[] = "Text: ", tail[] = "\nCategory:";
    size_t ll = label ? strlen(label) + 1 : 0;
    size_t n = sizeof head - 1 + len + sizeof tail - 1 + ll;
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    snprintf(p, n + 1, "%s%.*s%s%s%s", head, (int)len, text, tail, label ? " " : "",
             label ? label : "");
    *out_len = n;
    return p;
}

/* Cuts len to fit about want of have tokens, at a UTF-8 character boundary. */
static size_t shorter(const char *text, size_t len, int32_t have, int32_t want)
{
    size_t cut = (size_t)((double)len * want / have * 0.9);
    if (cut >= len)
        cut = len ? len - 1 : 0;
    return ellm_utf8_char_start(text, cut);
}

static int32_t common_prefix(const edgellm_token *a, int32_t na, const edgellm_token *b, int32_t nb)
{
    int32_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

/* log p(full[start..n) | full[0..start)) on e's context, reusing what it holds. */
static bool score_tail(gw_edge *e, const token_list *full, int32_t start, double *out)
{
    int32_t held = 0;
    const edgellm_token *have = edgellm_context_tokens(e->ctx, &held);
    int32_t keep = common_prefix(have, held, full->ids, full->n);
    if (keep > start - 1)
        keep = start - 1;
    if (edgellm_context_truncate(e->ctx, keep) != EDGELLM_OK)
        return false;
    if (start - 1 > keep &&
        edgellm_eval(e->ctx, full->ids + keep, start - 1 - keep, 0) != EDGELLM_OK)
        return false;
    /* Position start-1 onwards with every position's logits: each predicts the next token. */
    int32_t n = full->n - (start - 1);
    if (n > edgellm_context_n_batch(e->ctx) ||
        edgellm_eval(e->ctx, full->ids + start - 1, n, 1) != EDGELLM_OK)
        return false;
    double sum = 0;
    for (int32_t i = 0; i + 1 < n; i++) {
        const float *lg = edgellm_get_logits(e->ctx, i);
        if (!lg)
            return false;
        sum += ellm_gw_logprob(lg, e->n_vocab, full->ids[start + i], 1);
    }
    *out = sum;
    return true;
}

bool ellm_gw_classify(srv_server *srv, const char *text, size_t len, const char *const *labels,
                      int n_labels, bool truncate, gw_classification *out, char *err,
                      size_t err_cap)
{
    memset(out, 0, sizeof *out);
    if (n_labels < 1 || n_labels > GW_CLASSIFY_MAX_LABELS) {
        snprintf(err, err_cap, "give 1 to %d labels", GW_CLASSIFY_MAX_LABELS);
        return false;
    }
    const edgellm_model *model = srv->model;
    int32_t n_ctx = ellm_srv_scheduler_n_ctx(srv->sched);
    /* Room for the longest label after the prompt. */
    token_list t = {0}, full = {0};
    int32_t longest = 0;
    for (int i = 0; i < n_labels; i++) {
        if (!tokenize(model, labels[i], strlen(labels[i]), &t)) {
            snprintf(err, err_cap, "cannot tokenize label %d", i + 1);
            free(t.ids);
            return false;
        }
        longest = t.n + 1 > longest ? t.n + 1 : longest;
    }
    int32_t budget = n_ctx - longest;
    size_t used = len;
    bool ok = true;
    for (;;) {
        size_t plen = 0;
        char *p = prompt_text(text, used, NULL, &plen);
        ok = p && tokenize(model, p, plen, &t);
        free(p);
        if (!ok || t.n <= budget)
            break;
        if (!truncate || used == 0) {
            snprintf(err, err_cap,
                     "the input is %d tokens with the classification prompt; the edge context "
                     "holds %d with the longest label",
                     t.n, budget);
            free(t.ids);
            return false;
        }
        used = shorter(text, used, t.n, budget);
        out->truncated = true;
    }
    gw_edge e;
    if (ok)
        ok = ellm_gw_edge_open(&e, srv, n_ctx) == EDGELLM_OK;
    else
        memset(&e, 0, sizeof e);
    out->n_prompt_tokens = t.n;
    for (int i = 0; ok && i < n_labels; i++) {
        size_t plen = 0;
        char *p = prompt_text(text, used, labels[i], &plen);
        ok = p && tokenize(model, p, plen, &full);
        free(p);
        int32_t start = ok ? common_prefix(t.ids, t.n, full.ids, full.n) : 0;
        if (ok && (start < 1 || start >= full.n || full.n > n_ctx))
            ok = false;
        ok = ok && score_tail(&e, &full, start, &out->logprob[i]);
    }
    ellm_gw_edge_close(&e);
    free(t.ids);
    free(full.ids);
    if (!ok) {
        snprintf(err, err_cap, "the edge model could not score the labels: %s",
                 edgellm_last_error());
        return false;
    }
    double m = out->logprob[0], z = 0;
    for (int i = 0; i < n_labels; i++)
        if (out->logprob[i] > m) {
            m = out->logprob[i];
            out->best = i;
        }
    for (int i = 0; i < n_labels; i++)
        z += out->probability[i] = exp(out->logprob[i] - m);
    for (int i = 0; i < n_labels; i++)
        out->probability[i] /= z;
    return true;
}
