/* Text generation over the public API: prompt evaluation with KV-prefix reuse, the sampling loop,
 * stop conditions, and streaming that only ever hands out whole UTF-8 characters and never text
 * that could still turn out to be part of a stop string. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "edgellm.h"
#include "tokenizer/tokenizer.h"

edgellm_generate_params edgellm_generate_default_params(void)
{
    edgellm_generate_params p = {0};
    p.max_tokens = 256;
    p.add_bos = -1;
    p.sampling = edgellm_sampler_default_params();
    return p;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Text produced but not yet handed to the callback. */
typedef struct pending_text {
    char *buf;
    size_t len, cap;
} pending_text;

static bool pending_append(pending_text *p, const char *s, size_t n)
{
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + n + 1)
            cap *= 2;
        char *b = realloc(p->buf, cap);
        if (!b)
            return false;
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
    return true;
}

/* Length of the longest suffix of text that is a proper prefix of some stop string. */
static size_t stop_prefix_tail(const char *text, size_t len, const char *const *stops, int n_stops)
{
    size_t best = 0;
    for (int s = 0; s < n_stops; s++) {
        size_t sl = strlen(stops[s]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > best; k--)
            if (k <= len && memcmp(text + len - k, stops[s], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

/* Earliest position where a complete stop string occurs, or len. */
static size_t find_stop(const char *text, size_t len, const char *const *stops, int n_stops)
{
    size_t first = len;
    for (int s = 0; s < n_stops; s++) {
        size_t sl = strlen(stops[s]);
        if (sl == 0 || sl > len)
            continue;
        for (size_t i = 0; i + sl <= len && i < first; i++)
            if (memcmp(text + i, stops[s], sl) == 0) {
                first = i;
                break;
            }
    }
    return first;
}

typedef struct run {
    edgellm_context *ctx;
    const edgellm_model *model;
    const edgellm_generate_params *params;
    edgellm_generate_result *result;
    pending_text pending;
    size_t emitted_upto;
} run;

/* Hands the callback the part of pending text that is final; returns non-zero to stop. */
static int flush(run *r, edgellm_token token, bool final)
{
    const edgellm_generate_params *p = r->params;
    char *text = r->pending.buf ? r->pending.buf : "";
    size_t len = r->pending.len;
    size_t stop_at = find_stop(text, len, p->stop_strings, p->n_stop_strings);
    bool hit_stop = stop_at < len;
    size_t ready = hit_stop ? stop_at : len;
    if (!hit_stop && !final) {
        ready -= stop_prefix_tail(text, ready, p->stop_strings, p->n_stop_strings);
        ready -= ellm_utf8_incomplete_tail(text, ready);
    }
    int stop = 0;
    if (p->on_token)
        stop = p->on_token(p->user_data, token, text, ready);
    if (r->pending.buf)
        memmove(r->pending.buf, text + ready, len - ready);
    r->pending.len = len - ready;
    if (hit_stop) {
        r->result->stop_reason = EDGELLM_STOP_STRING;
        r->pending.len = 0;
        return 1;
    }
    if (stop) {
        r->result->stop_reason = EDGELLM_STOP_CALLBACK;
        return 1;
    }
    return 0;
}

static edgellm_status evaluate_prompt(run *r, const edgellm_token *prompt, int32_t n_prompt)
{
    edgellm_context *ctx = r->ctx;
    int32_t n_cached = 0;
    const edgellm_token *cached = edgellm_context_tokens(ctx, &n_cached);
    int32_t reuse = 0;
    if (r->params->keep_cache) {
        reuse = 0; /* continue after what is cached: the prompt is new text */
    } else {
        while (reuse < n_cached && reuse < n_prompt && cached[reuse] == prompt[reuse])
            reuse++;
        /* At least one prompt token must be evaluated to produce logits. */
        if (reuse == n_prompt)
            reuse--;
        edgellm_context_truncate(ctx, reuse);
    }
    int32_t n_past = edgellm_context_n_past(ctx);
    if (n_prompt - reuse > edgellm_context_n_ctx(ctx) - n_past)
        return ellm_fail(EDGELLM_ERR_CONTEXT_FULL,
                         "the prompt is %d tokens but the context holds %d (%d already used); "
                         "shorten the prompt or raise --ctx",
                         n_prompt, edgellm_context_n_ctx(ctx), n_past);
    r->result->n_cached_tokens = r->params->keep_cache ? 0 : reuse;
    return edgellm_eval(ctx, prompt + reuse, n_prompt - reuse, 0);
}

edgellm_status edgellm_generate_tokens(edgellm_context *ctx, const edgellm_token *prompt,
                                       int32_t n_prompt, const edgellm_generate_params *params,
                                       edgellm_generate_result *out)
{
    edgellm_generate_result local;
    edgellm_generate_result *res = out ? out : &local;
    memset(res, 0, sizeof *res);
    if (!ctx || !params || !prompt || n_prompt <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_generate: need a context, parameters and a non-empty prompt");
    if (params->n_stop_strings < 0 || (params->n_stop_strings > 0 && !params->stop_strings))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "edgellm_generate: bad stop strings");
    for (int i = 0; i < params->n_stop_strings; i++)
        if (!params->stop_strings[i])
            return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "stop string %d is NULL", i);
    const edgellm_model *model = edgellm_context_model(ctx);
    double t0 = now_seconds();
    run r = {.ctx = ctx, .model = model, .params = params, .result = res};
    res->n_prompt_tokens = n_prompt;

    edgellm_sampler *sampler = NULL;
    edgellm_status st = edgellm_sampler_create(&params->sampling, edgellm_n_vocab(model), &sampler);
    if (st != EDGELLM_OK)
        return st;
    for (int32_t i = 0; i < n_prompt; i++)
        edgellm_sampler_accept(sampler, prompt[i]);

    st = evaluate_prompt(&r, prompt, n_prompt);
    double t_prefill = now_seconds();
    res->prefill_seconds = t_prefill - t0;
    double t_first = 0;
    char piece[256];
    while (st == EDGELLM_OK) {
        if (params->max_tokens > 0 && res->n_generated >= params->max_tokens) {
            res->stop_reason = EDGELLM_STOP_MAX_TOKENS;
            break;
        }
        edgellm_token tok = edgellm_sampler_sample(sampler, edgellm_get_logits(ctx, -1));
        if (res->n_generated == 0) {
            t_first = now_seconds();
            res->ttft_seconds = t_first - t0;
        }
        if (edgellm_token_is_eog(model, tok)) {
            res->stop_reason = EDGELLM_STOP_EOS;
            break;
        }
        res->n_generated++;
        edgellm_sampler_accept(sampler, tok);
        size_t plen = 0;
        st = edgellm_token_to_piece(model, tok, piece, sizeof piece, &plen);
        if (st != EDGELLM_OK)
            break;
        if (!pending_append(&r.pending, piece, plen)) {
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for generated text");
            break;
        }
        if (flush(&r, tok, false))
            break;
        if (edgellm_context_n_past(ctx) >= edgellm_context_n_ctx(ctx)) {
            res->stop_reason = EDGELLM_STOP_CONTEXT_FULL;
            break;
        }
        st = edgellm_eval(ctx, &tok, 1, 0);
    }
    /* Whatever is still held back is final now (unless a stop string cut it). */
    if (st == EDGELLM_OK && r.pending.len > 0 && res->stop_reason != EDGELLM_STOP_STRING &&
        res->stop_reason != EDGELLM_STOP_CALLBACK)
        flush(&r, -1, true);
    if (res->n_generated > 0)
        res->decode_seconds = now_seconds() - t_first;
    free(r.pending.buf);
    edgellm_sampler_free(sampler);
    return st;
}

edgellm_status edgellm_generate(edgellm_context *ctx, const char *prompt,
                                const edgellm_generate_params *params,
                                edgellm_generate_result *out)
{
    if (!ctx || !prompt || !params)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "edgellm_generate: need a context, a prompt and parameters");
    const edgellm_model *model = edgellm_context_model(ctx);
    int flags = 0;
    bool bos = params->add_bos < 0 ? edgellm_add_bos_default(model) : params->add_bos != 0;
    if (params->keep_cache && edgellm_context_n_past(ctx) > 0)
        bos = false; /* continuing a conversation: BOS only starts a sequence */
    if (bos)
        flags |= EDGELLM_TOKENIZE_ADD_BOS;
    if (params->parse_special)
        flags |= EDGELLM_TOKENIZE_PARSE_SPECIAL;
    size_t len = strlen(prompt);
    int32_t n = 0;
    edgellm_status st = edgellm_tokenize(model, prompt, len, flags, NULL, 0, &n);
    if (st != EDGELLM_OK && st != EDGELLM_ERR_BUFFER_TOO_SMALL)
        return st;
    if (n == 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the prompt is empty and the model adds no BOS token: nothing to "
                         "continue from");
    edgellm_token *tokens = malloc((size_t)n * sizeof *tokens);
    if (!tokens)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d prompt tokens", n);
    st = edgellm_tokenize(model, prompt, len, flags, tokens, n, &n);
    if (st == EDGELLM_OK)
        st = edgellm_generate_tokens(ctx, tokens, n, params, out);
    free(tokens);
    return st;
}
