/* One generation step of one sequence (step.h): edgellm_generate and the server's scheduler
 * differ in how they run forward passes and where the text goes, never in what a step decides. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_internal.h"
#include "core/status.h"
#include "generate/step.h"
#include "grammar/grammar.h"

double ellm_generate_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int32_t ellm_cache_common_prefix(const edgellm_context *ctx, const edgellm_token *tokens, int32_t n)
{
    int32_t n_cached = 0;
    const edgellm_token *cached = edgellm_context_tokens(ctx, &n_cached);
    int32_t k = 0;
    while (k < n_cached && k < n && cached[k] == tokens[k])
        k++;
    return k;
}

int32_t ellm_cache_reuse_prefix(edgellm_context *ctx, const edgellm_token *tokens, int32_t n)
{
    int32_t keep = ellm_cache_common_prefix(ctx, tokens, n);
    if (keep == n)
        keep--;
    ellm_context_truncate(ctx, keep);
    return keep;
}

edgellm_status ellm_step_init(ellm_step *s, const edgellm_model *model,
                              const edgellm_sampler_params *sampling,
                              const char *const *stop_strings, int32_t n_stop_strings,
                              const edgellm_token *prompt, int32_t n_prompt)
{
    memset(s, 0, sizeof *s);
    s->model = model;
    s->n_vocab = edgellm_n_vocab(model);
    edgellm_status st = edgellm_sampler_create(sampling, s->n_vocab, &s->sampler);
    if (st == EDGELLM_OK)
        st = edgellm_text_stream_create(model, stop_strings, n_stop_strings, &s->text);
    if (st != EDGELLM_OK) {
        ellm_step_free(s);
        return st;
    }
    for (int32_t i = 0; i < n_prompt; i++)
        edgellm_sampler_accept(s->sampler, prompt[i]);
    return EDGELLM_OK;
}

edgellm_status ellm_step_start_grammar(ellm_step *s, const edgellm_grammar *grammar)
{
    /* Its masks are as long as its own vocabulary, not the model's logits. */
    if (ellm_grammar_n_vocab(grammar) != s->n_vocab)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the grammar was compiled for a vocabulary of %d tokens but the model has "
                         "%d; compile it with the model that generates",
                         (int)ellm_grammar_n_vocab(grammar), (int)s->n_vocab);
    if (!s->masked && !(s->masked = malloc((size_t)s->n_vocab * sizeof *s->masked)))
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for the grammar's logits");
    return edgellm_grammar_state_create(grammar, &s->grammar);
}

void ellm_step_free(ellm_step *s)
{
    edgellm_sampler_free(s->sampler);
    edgellm_text_stream_free(s->text);
    edgellm_grammar_state_free(s->grammar);
    free(s->masked);
    ellm_spec_free(s->spec);
    memset(s, 0, sizeof *s);
}

const float *ellm_step_scores(ellm_step *s, const float *logits, edgellm_status *st)
{
    *st = EDGELLM_OK;
    if (!s->grammar)
        return logits;
    double t0 = ellm_generate_now();
    const float *out = NULL;
    if (edgellm_grammar_state_must_end(s->grammar)) {
        s->stop = EDGELLM_STOP_GRAMMAR_DONE;
    } else {
        memcpy(s->masked, logits, (size_t)s->n_vocab * sizeof *s->masked);
        int32_t n_allowed = 0;
        *st = edgellm_grammar_state_mask(s->grammar, s->masked, &n_allowed);
        if (*st == EDGELLM_OK && n_allowed == 0)
            s->stop = edgellm_grammar_state_can_end(s->grammar) ? EDGELLM_STOP_GRAMMAR_DONE
                                                                : EDGELLM_STOP_GRAMMAR_STUCK;
        else if (*st == EDGELLM_OK)
            out = s->masked;
    }
    s->grammar_seconds += ellm_generate_now() - t0;
    return out;
}

/* t, or the best token of scores when the grammar forbids t. */
static edgellm_token allowed_token(const ellm_step *s, const float *scores, edgellm_token t)
{
    if (!s->grammar)
        return t;
    /* Penalties cannot lift a masked logit, but rounding in a draw over near-zero probabilities
     * could in principle land on one: never let it through. */
    if (t < 0 || t >= s->n_vocab || scores[t] == -INFINITY) {
        t = -1;
        for (int32_t i = 0; i < s->n_vocab; i++)
            if (scores[i] != -INFINITY && (t < 0 || scores[i] > scores[t]))
                t = i;
    }
    return t;
}

edgellm_token ellm_step_sample(ellm_step *s, const float *scores)
{
    return allowed_token(s, scores, edgellm_sampler_sample(s->sampler, scores));
}

edgellm_status ellm_step_accept(ellm_step *s, edgellm_token tok, const char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (tok < 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "no token can be sampled: after the penalties every logit is -inf or "
                         "NaN; lower the repetition, presence or frequency penalty");
    if (edgellm_token_is_eog(s->model, tok)) {
        s->stop = EDGELLM_STOP_EOS;
        return EDGELLM_OK;
    }
    s->n_generated++;
    edgellm_sampler_accept(s->sampler, tok);
    if (s->grammar) {
        double t0 = ellm_generate_now();
        edgellm_status st = edgellm_grammar_state_accept(s->grammar, tok);
        s->grammar_seconds += ellm_generate_now() - t0;
        if (st != EDGELLM_OK)
            return st;
    }
    int stopped = 0;
    edgellm_status st = edgellm_text_stream_push(s->text, tok, text, len, &stopped);
    if (st == EDGELLM_OK && stopped)
        s->stop = EDGELLM_STOP_STRING;
    return st;
}

edgellm_stop_reason ellm_step_limit(const ellm_step *s, int32_t n_ctx, int32_t max_tokens)
{
    /* The newest token is evaluated by the next pass, after the ones cached before it. */
    if (s->base + s->n_generated - 1 >= n_ctx)
        return EDGELLM_STOP_CONTEXT_FULL;
    if (max_tokens > 0 && s->n_generated >= max_tokens)
        return EDGELLM_STOP_MAX_TOKENS;
    return EDGELLM_STOP_NONE;
}

static const float *step_scores_at(ellm_step *s, const ellm_step_sink *sink, const float *logits,
                                   edgellm_status *st)
{
    return ellm_step_scores(s, sink->adjust ? sink->adjust(sink->user, logits) : logits, st);
}

bool ellm_step_verify(ellm_step *s, edgellm_context *ctx, const edgellm_token *proposals,
                      int32_t n_proposed, const ellm_step_sink *sink, int32_t *n_accepted,
                      edgellm_status *st)
{
    *st = EDGELLM_OK;
    *n_accepted = 0;
    int32_t n_kept = edgellm_context_n_past(ctx) - n_proposed; /* through the pending token */
    int32_t n_stand = 0; /* accepted proposals the sequence went on after */
    edgellm_token next = -1;
    const float *logits = NULL, *scores = NULL;
    bool going = true, rejected = false;
    /* Under a grammar every position's logits are masked by the state after the proposals
     * accepted before it, exactly as plain decoding would mask them there. */
    while (n_stand < n_proposed) {
        logits = edgellm_get_logits(ctx, n_stand);
        if (!(scores = step_scores_at(s, sink, logits, st))) {
            going = false;
            break;
        }
        edgellm_token x = proposals[n_stand];
        if (!ellm_spec_accept(s->spec, s->sampler, scores, n_stand, x, &next)) {
            next = allowed_token(s, scores, next);
            rejected = true;
            break;
        }
        (*n_accepted)++;
        if (!(going = sink->emit(sink->user, x, logits, st)))
            break;
        n_stand++;
    }
    if (going && !rejected) {
        logits = edgellm_get_logits(ctx, n_proposed);
        if ((scores = step_scores_at(s, sink, logits, st)))
            next = ellm_step_sample(s, scores);
        else
            going = false;
    }
    if (going)
        going = sink->emit(sink->user, next, logits, st);
    ellm_context_truncate(ctx, n_kept + n_stand);
    return going && *st == EDGELLM_OK;
}
