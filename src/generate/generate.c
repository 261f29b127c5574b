/* Text generation over the public API: prompt evaluation with KV-prefix reuse, the sampling loop,
 * stop conditions, and streaming that only ever hands out whole UTF-8 characters and never text
 * that could still turn out to be part of a stop string. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "edgellm.h"
#include "generate/generate_internal.h"
#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"

/* Vocabularies from this size up have tries whose walk takes milliseconds, far more than
 * starting a thread; below it masking is cheaper than the thread. */
#define PREFETCH_MIN_VOCAB 16384

edgellm_generate_params edgellm_generate_default_params(void)
{
    edgellm_generate_params p = {0};
    p.max_tokens = 256;
    p.add_bos = -1;
    p.sampling = edgellm_sampler_default_params();
    p.draft_max = 8;
    p.draft_min = 1;
    return p;
}

double ellm_generate_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

edgellm_status ellm_generate_no_token(void)
{
    return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                     "no token can be sampled: after the penalties every logit is -inf or NaN; "
                     "lower the repetition, presence or frequency penalty");
}

/* Hands the callback what became final with this token; returns non-zero to stop. */
int ellm_generate_deliver(ellm_generate_run *r, edgellm_token token, const char *text, size_t len)
{
    const edgellm_generate_params *p = r->params;
    int stop = p->on_token ? p->on_token(p->user_data, token, text, len) : 0;
    if (edgellm_text_stream_stopped(r->text)) {
        r->result->stop_reason = EDGELLM_STOP_STRING;
        return 1;
    }
    if (stop) {
        r->result->stop_reason = EDGELLM_STOP_CALLBACK;
        return 1;
    }
    return 0;
}

const float *ellm_generate_constrain(ellm_generate_run *r, const float *logits,
                                     edgellm_status *st)
{
    *st = EDGELLM_OK;
    if (!r->grammar)
        return logits;
    double t0 = ellm_generate_now();
    const float *out = NULL;
    if (edgellm_grammar_state_must_end(r->grammar)) {
        r->result->stop_reason = EDGELLM_STOP_GRAMMAR_DONE;
    } else {
        memcpy(r->masked, logits, (size_t)edgellm_n_vocab(r->model) * sizeof *r->masked);
        int32_t n_allowed = 0;
        *st = edgellm_grammar_state_mask(r->grammar, r->masked, &n_allowed);
        if (*st == EDGELLM_OK && n_allowed == 0)
            r->result->stop_reason = edgellm_grammar_state_can_end(r->grammar)
                                         ? EDGELLM_STOP_GRAMMAR_DONE
                                         : EDGELLM_STOP_GRAMMAR_STUCK;
        else if (*st == EDGELLM_OK)
            out = r->masked;
    }
    r->result->grammar_seconds += ellm_generate_now() - t0;
    return out;
}

edgellm_token ellm_generate_allowed(const ellm_generate_run *r, const float *scores,
                                    edgellm_token t)
{
    if (!r->grammar)
        return t;
    /* Penalties cannot lift a masked logit, but rounding in a draw over near-zero probabilities
     * could in principle land on one: never let it through. */
    int32_t n_vocab = edgellm_n_vocab(r->model);
    if (t < 0 || t >= n_vocab || scores[t] == -INFINITY) {
        t = -1;
        for (int32_t i = 0; i < n_vocab; i++)
            if (scores[i] != -INFINITY && (t < 0 || scores[i] > scores[t]))
                t = i;
    }
    return t;
}

edgellm_token ellm_generate_sample(const ellm_generate_run *r, edgellm_sampler *sampler,
                                   const float *scores)
{
    return ellm_generate_allowed(r, scores, edgellm_sampler_sample(sampler, scores));
}

edgellm_status ellm_generate_grammar_accept(ellm_generate_run *r, edgellm_token tok)
{
    if (!r->grammar)
        return EDGELLM_OK;
    double t0 = ellm_generate_now();
    edgellm_status st = edgellm_grammar_state_accept(r->grammar, tok);
    r->result->grammar_seconds += ellm_generate_now() - t0;
    return st;
}

static void *prepare_mask(void *grammar)
{
    ellm_grammar_state_prepare(grammar);
    return NULL;
}

/* The forward pass over tok. Under a grammar, the mask of the position it computes depends only
 * on the tokens accepted so far, so a helper thread computes it (the trie walk, the costly part)
 * meanwhile and the mask after the pass is one sweep over the vocabulary. Only the wait for the
 * helper counts as grammar time. */
static edgellm_status eval_next(ellm_generate_run *r, edgellm_token tok)
{
    pthread_t helper;
    int helping = r->grammar && edgellm_n_vocab(r->model) >= PREFETCH_MIN_VOCAB &&
                  !edgellm_grammar_state_must_end(r->grammar) &&
                  pthread_create(&helper, NULL, prepare_mask, r->grammar) == 0;
    edgellm_status st = edgellm_eval(r->ctx, &tok, 1, 0);
    if (helping) {
        double t0 = ellm_generate_now();
        pthread_join(helper, NULL);
        r->result->grammar_seconds += ellm_generate_now() - t0;
    }
    return st;
}

static edgellm_status evaluate_prompt(ellm_generate_run *r, const edgellm_token *prompt,
                                      int32_t n_prompt)
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
    const edgellm_model *model = edgellm_context_model(ctx);
    double t0 = ellm_generate_now();
    ellm_generate_run r = {.ctx = ctx, .model = model, .params = params, .result = res};
    res->n_prompt_tokens = n_prompt;

    edgellm_status st = ellm_speculative_check(ctx, params);
    if (st != EDGELLM_OK)
        return st;
    edgellm_sampler *sampler = NULL;
    st = edgellm_sampler_create(&params->sampling, edgellm_n_vocab(model), &sampler);
    if (st != EDGELLM_OK)
        return st;
    st = edgellm_text_stream_create(model, params->stop_strings, params->n_stop_strings, &r.text);
    if (st != EDGELLM_OK) {
        edgellm_sampler_free(sampler);
        return st;
    }
    if (params->grammar) {
        st = edgellm_grammar_state_create(params->grammar, &r.grammar);
        r.masked = st == EDGELLM_OK ? malloc((size_t)edgellm_n_vocab(model) * sizeof *r.masked)
                                    : NULL;
        if (st == EDGELLM_OK && !r.masked)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the grammar's logits");
        if (st != EDGELLM_OK) {
            edgellm_grammar_state_free(r.grammar);
            edgellm_text_stream_free(r.text);
            edgellm_sampler_free(sampler);
            return st;
        }
    }
    for (int32_t i = 0; i < n_prompt; i++)
        edgellm_sampler_accept(sampler, prompt[i]);

    st = evaluate_prompt(&r, prompt, n_prompt);
    double t_prefill = ellm_generate_now();
    res->prefill_seconds = t_prefill - t0;
    double t_first = 0;
    if (st == EDGELLM_OK && ellm_speculative_wanted(params)) {
        st = ellm_generate_speculative(&r, sampler, t0, &t_first);
        goto finish;
    }
    while (st == EDGELLM_OK) {
        if (params->max_tokens > 0 && res->n_generated >= params->max_tokens) {
            res->stop_reason = EDGELLM_STOP_MAX_TOKENS;
            break;
        }
        const float *scores = ellm_generate_constrain(&r, edgellm_get_logits(ctx, -1), &st);
        if (!scores)
            break;
        edgellm_token tok = ellm_generate_sample(&r, sampler, scores);
        if (tok < 0) {
            st = ellm_generate_no_token();
            break;
        }
        if (res->n_generated == 0) {
            t_first = ellm_generate_now();
            res->ttft_seconds = t_first - t0;
        }
        if (edgellm_token_is_eog(model, tok)) {
            res->stop_reason = EDGELLM_STOP_EOS;
            break;
        }
        res->n_generated++;
        edgellm_sampler_accept(sampler, tok);
        st = ellm_generate_grammar_accept(&r, tok);
        if (st != EDGELLM_OK)
            break;
        const char *text = NULL;
        size_t text_len = 0;
        int stopped = 0;
        st = edgellm_text_stream_push(r.text, tok, &text, &text_len, &stopped);
        if (st != EDGELLM_OK || ellm_generate_deliver(&r, tok, text, text_len))
            break;
        if (edgellm_context_n_past(ctx) >= edgellm_context_n_ctx(ctx)) {
            res->stop_reason = EDGELLM_STOP_CONTEXT_FULL;
            break;
        }
        st = eval_next(&r, tok);
        res->n_target_passes++;
    }
finish:
    /* Whatever is still held back is final now (unless a stop string or the callback ended it). */
    if (st == EDGELLM_OK && res->stop_reason != EDGELLM_STOP_STRING &&
        res->stop_reason != EDGELLM_STOP_CALLBACK) {
        const char *text = NULL;
        size_t text_len = 0;
        st = edgellm_text_stream_finish(r.text, &text, &text_len);
        if (st == EDGELLM_OK && text_len > 0 && params->on_token)
            params->on_token(params->user_data, -1, text, text_len);
    }
    if (res->n_generated > 0)
        res->decode_seconds = ellm_generate_now() - t_first;
    edgellm_text_stream_free(r.text);
    edgellm_grammar_state_free(r.grammar);
    free(r.masked);
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
