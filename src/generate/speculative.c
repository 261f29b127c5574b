/* Speculative decoding: a draft model or prompt lookup proposes the next few tokens, the model
 * checks all of them in one batched pass, and the KV caches are cut back past the first rejected
 * one. Each pass emits the accepted proposals plus one token of the model's own.
 *
 * Greedy: a proposal is accepted when it is the token greedy decoding picks at its position. The
 * batched pass gives bit-identical logits to one-token passes, so the output is exactly the
 * non-speculative one.
 * Sampling: proposal x, drawn from q, is accepted with probability min(1, p(x) / q(x)); on
 * rejection the token is drawn from max(0, p - q) renormalised. Every emitted token is then
 * distributed as p (Leviathan et al. 2023; Chen et al. 2023). p and q are the distributions the
 * sampler draws from at that position — penalties over the same history, top-k, temperature,
 * top-p and min-p — for the model's and the draft's logits. A prompt-lookup proposal has q = 1 at
 * x, so it is accepted with probability p(x) and a rejection draws from p without x. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/status.h"
#include "edgellm.h"
#include "generate/speculative.h"
#include "generate/step.h"
#include "grammar/grammar.h"
#include "sample/sampler.h"

#define LOOKUP_NGRAM_LIMIT 64
#define DRAFT_MAX_LIMIT 64

int ellm_speculative_wanted(const edgellm_generate_params *p)
{
    return p->draft != NULL || p->lookup_ngram > 0;
}

edgellm_status ellm_speculative_check(const edgellm_context *ctx, const edgellm_generate_params *p)
{
    if (p->lookup_ngram < 0 || p->lookup_ngram > LOOKUP_NGRAM_LIMIT)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "prompt lookup needs an n-gram length of 1..%d tokens, got %d",
                         LOOKUP_NGRAM_LIMIT, (int)p->lookup_ngram);
    if (!ellm_speculative_wanted(p))
        return EDGELLM_OK;
    if (p->draft && p->lookup_ngram > 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "give either a draft model or prompt lookup, not both");
    if (p->draft_max < 1 || p->draft_max > DRAFT_MAX_LIMIT)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the most proposals per pass (draft_max) must be 1..%d, got %d",
                         DRAFT_MAX_LIMIT, (int)p->draft_max);
    if (p->draft_min < 0 || p->draft_min > p->draft_max)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "draft_min must be 0..draft_max (%d), got %d", (int)p->draft_max,
                         (int)p->draft_min);
    if (p->benchmark_force_acceptance &&
        !(p->benchmark_acceptance_rate >= 0 && p->benchmark_acceptance_rate <= 1))
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the forced acceptance rate must be in [0, 1], got %g",
                         (double)p->benchmark_acceptance_rate);
    if (p->draft == ctx)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "the draft needs a context of its own, not the one being generated in");
    if (p->draft)
        return edgellm_model_check_draft(edgellm_context_model(ctx),
                                         edgellm_context_model(p->draft));
    return EDGELLM_OK;
}

struct ellm_spec {
    const edgellm_generate_params *params;
    edgellm_context *draft;         /* NULL for prompt lookup */
    edgellm_sampler *draft_sampler; /* the draft model's; NULL for prompt lookup */
    int32_t n_vocab;
    edgellm_token *seq; /* the cached tokens and the pending one (n_ctx + 1) */
    float *p;           /* the model's distribution at one position (n_vocab) */
    float *q;           /* the draft's distribution at each proposal, when sampling with a
                           draft model (draft_max * n_vocab); NULL otherwise */
    float *masked;      /* the draft's logits under the grammar (n_vocab), on first use */
};

edgellm_status ellm_spec_create(const edgellm_context *ctx, const edgellm_generate_params *p,
                                ellm_spec **out)
{
    *out = NULL;
    ellm_spec *sp = calloc(1, sizeof *sp);
    if (!sp)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for speculative decoding");
    sp->params = p;
    sp->draft = p->draft;
    sp->n_vocab = edgellm_n_vocab(edgellm_context_model(ctx));
    edgellm_status st = EDGELLM_OK;
    if (p->draft) {
        edgellm_sampler_params dp = p->sampling;
        dp.seed ^= 0x5851F42D4C957F2Dull; /* the draft's stream must not mirror the model's */
        st = edgellm_sampler_create(&dp, sp->n_vocab, &sp->draft_sampler);
    }
    bool need_q = p->draft && p->sampling.temperature > 0 && !p->benchmark_force_acceptance;
    sp->seq = malloc(((size_t)edgellm_context_n_ctx(ctx) + 1) * sizeof *sp->seq);
    sp->p = malloc((size_t)sp->n_vocab * sizeof *sp->p);
    if (need_q)
        sp->q = malloc((size_t)p->draft_max * (size_t)sp->n_vocab * sizeof *sp->q);
    if (st == EDGELLM_OK && (!sp->seq || !sp->p || (need_q && !sp->q)))
        st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for speculative decoding");
    if (st != EDGELLM_OK) {
        ellm_spec_free(sp);
        return st;
    }
    *out = sp;
    return EDGELLM_OK;
}

void ellm_spec_free(ellm_spec *sp)
{
    if (!sp)
        return;
    edgellm_sampler_free(sp->draft_sampler);
    free(sp->seq);
    free(sp->p);
    free(sp->q);
    free(sp->masked);
    free(sp);
}

/* What a failed evaluation of the draft context means for the sequence. A cancel of the draft
 * (edgellm_context_cancel on it, from any thread, or forwarded from the sequence's context while
 * this drafting runs) stops the drafting it lands in: several sequences may draft with one
 * context, and each is cancelled through its own, whose next pass then stops. Drafting ends with
 * the proposals made so far; the next one re-syncs the draft's cache. */
static bool drafting_stopped(edgellm_status *st)
{
    if (*st != EDGELLM_ERR_CANCELLED)
        return *st != EDGELLM_OK;
    *st = EDGELLM_OK;
    return true;
}

/* Brings the draft's cache to seq[0 .. n_seq), evaluating at least the last token, whose logits
 * the first proposal comes from. */
static edgellm_status draft_catch_up(ellm_spec *sp, int32_t n_seq)
{
    int32_t keep = ellm_cache_reuse_prefix(sp->draft, sp->seq, n_seq);
    return edgellm_eval(sp->draft, sp->seq + keep, n_seq - keep, 0);
}

edgellm_status ellm_spec_prefill(ellm_spec *sp, const edgellm_context *ctx)
{
    int32_t n_prompt = 0;
    const edgellm_token *prompt = edgellm_context_tokens(ctx, &n_prompt);
    if (!sp->draft || n_prompt == 0 || n_prompt > edgellm_context_n_ctx(sp->draft) ||
        ellm_context_cancel_requested(ctx))
        return EDGELLM_OK;
    memcpy(sp->seq, prompt, (size_t)n_prompt * sizeof *prompt);
    edgellm_status st = draft_catch_up(sp, n_prompt);
    drafting_stopped(&st);
    return st;
}

/* The draft's next token under the grammar, whose state is the text so far; -1 when the grammar
 * allows nothing more (or masking fails: the model then decides alone). Greedy drafts try the
 * unmasked pick first: the grammar accepting it means the masked pick is the same token, and a
 * proposal needs no more than that, so most steps skip the mask. */
static edgellm_token constrained_draft_token(ellm_spec *sp, edgellm_grammar_state *grammar,
                                             const float *logits, int32_t i)
{
    if (!sp->q) {
        edgellm_token t = edgellm_sampler_sample(sp->draft_sampler, logits);
        if (t >= 0 && edgellm_grammar_state_accept(grammar, t) == EDGELLM_OK)
            return t;
    }
    if (edgellm_grammar_state_must_end(grammar))
        return -1;
    if (!sp->masked && !(sp->masked = malloc((size_t)sp->n_vocab * sizeof *sp->masked)))
        return -1;
    memcpy(sp->masked, logits, (size_t)sp->n_vocab * sizeof *sp->masked);
    int32_t n_allowed = 0;
    if (edgellm_grammar_state_mask(grammar, sp->masked, &n_allowed) != EDGELLM_OK || n_allowed == 0)
        return -1;
    edgellm_token t;
    if (sp->q) {
        float *q = sp->q + (size_t)i * (size_t)sp->n_vocab;
        ellm_sampler_distribution(sp->draft_sampler, sp->masked, q);
        t = ellm_sampler_draw(sp->draft_sampler, q);
    } else {
        t = edgellm_sampler_sample(sp->draft_sampler, sp->masked);
    }
    if (t < 0 || sp->masked[t] == -INFINITY ||
        edgellm_grammar_state_accept(grammar, t) != EDGELLM_OK)
        return -1;
    return t;
}

/* Proposes up to k tokens after seq[0 .. n_seq) with the draft model into out; under a grammar
 * each proposal advances it (the caller rewinds it). None after a cancel of ctx's call (its next
 * pass stops). */
static edgellm_status propose_draft(ellm_spec *sp, const edgellm_context *ctx,
                                    const edgellm_sampler *sampler, edgellm_grammar_state *grammar,
                                    int32_t n_seq, int32_t k, edgellm_token *out,
                                    int32_t *n_proposed)
{
    edgellm_context *draft = sp->draft;
    const edgellm_model *model = edgellm_context_model(draft);
    *n_proposed = 0;
    /* The draft evaluates seq and every proposal but the last. */
    int32_t room = edgellm_context_n_ctx(draft) - n_seq + 1;
    if (k > room)
        k = room;
    if (k <= 0 || ellm_context_cancel_requested(ctx))
        return EDGELLM_OK;
    edgellm_status st = draft_catch_up(sp, n_seq);
    if (drafting_stopped(&st))
        return st;
    ellm_sampler_copy_history(sp->draft_sampler, sampler);
    for (int32_t i = 0; i < k; i++) {
        const float *logits = edgellm_get_logits(draft, -1);
        edgellm_token t;
        if (grammar) {
            t = constrained_draft_token(sp, grammar, logits, i);
        } else if (sp->q) {
            float *q = sp->q + (size_t)i * (size_t)sp->n_vocab;
            ellm_sampler_distribution(sp->draft_sampler, logits, q);
            t = ellm_sampler_draw(sp->draft_sampler, q);
        } else {
            t = edgellm_sampler_sample(sp->draft_sampler, logits);
        }
        if (t < 0) /* the draft has nothing to propose; the model decides alone */
            break;
        out[i] = t;
        (*n_proposed)++;
        edgellm_sampler_accept(sp->draft_sampler, t);
        if (i + 1 == k || edgellm_token_is_eog(model, t) || ellm_context_cancel_requested(ctx))
            break;
        st = edgellm_eval(draft, &t, 1, 0);
        if (drafting_stopped(&st))
            return st;
    }
    return EDGELLM_OK;
}

/* Prompt lookup: up to k tokens that followed the latest earlier occurrence of the last n-gram
 * of seq[0 .. n_seq), into out; returns how many. */
static int32_t propose_lookup(const ellm_spec *sp, int32_t n_seq, int32_t k, edgellm_token *out)
{
    int32_t n = sp->params->lookup_ngram;
    if (n_seq <= n)
        return 0;
    const edgellm_token *tail = sp->seq + n_seq - n;
    for (int32_t start = n_seq - n - 1; start >= 0; start--) {
        if (memcmp(sp->seq + start, tail, (size_t)n * sizeof *tail) != 0)
            continue;
        int32_t following = n_seq - (start + n);
        int32_t m = following < k ? following : k;
        memcpy(out, sp->seq + start + n, (size_t)m * sizeof *out);
        return m;
    }
    return 0;
}

/* The leading proposals the grammar accepts one after another; the grammar is advanced over
 * them (the caller rewinds it). */
static int32_t grammar_prefix(edgellm_grammar_state *grammar, const edgellm_token *tokens,
                              int32_t n)
{
    int32_t ok = 0;
    while (ok < n && edgellm_grammar_state_accept(grammar, tokens[ok]) == EDGELLM_OK)
        ok++;
    return ok;
}

edgellm_status ellm_spec_propose(ellm_spec *sp, const edgellm_context *ctx, edgellm_token pending,
                                 const edgellm_sampler *sampler, edgellm_grammar_state *grammar,
                                 int32_t k, edgellm_token *out, int32_t *n_out)
{
    *n_out = 0;
    if (k > sp->params->draft_max)
        k = sp->params->draft_max;
    if (k <= 0)
        return EDGELLM_OK;
    int32_t n_past = 0;
    const edgellm_token *cached = edgellm_context_tokens(ctx, &n_past);
    memcpy(sp->seq, cached, (size_t)n_past * sizeof *cached);
    sp->seq[n_past] = pending;
    int32_t n_seq = n_past + 1;
    edgellm_status st = EDGELLM_OK;
    ellm_matcher_mark before = {0};
    if (grammar)
        before = ellm_grammar_state_get_mark(grammar);
    if (sp->draft) {
        st = propose_draft(sp, ctx, sampler, grammar, n_seq, k, out, n_out);
    } else {
        *n_out = propose_lookup(sp, n_seq, k, out);
        if (grammar)
            *n_out = grammar_prefix(grammar, out, *n_out);
    }
    if (grammar)
        ellm_grammar_state_rewind(grammar, before);
    if (st != EDGELLM_OK || *n_out < sp->params->draft_min)
        *n_out = 0;
    return st;
}

bool ellm_spec_accept(ellm_spec *sp, edgellm_sampler *sampler, const float *logits, int32_t i,
                      edgellm_token x, edgellm_token *instead)
{
    const edgellm_generate_params *p = sp->params;
    if (p->benchmark_force_acceptance) {
        if (ellm_sampler_uniform(sampler) < p->benchmark_acceptance_rate)
            return true;
        *instead = edgellm_sampler_sample(sampler, logits);
        return false;
    }
    if (ellm_sampler_is_greedy(sampler)) {
        *instead = edgellm_sampler_sample(sampler, logits);
        return *instead == x;
    }
    float *prob = sp->p;
    ellm_sampler_distribution(sampler, logits, prob);
    const float *q = sp->q ? sp->q + (size_t)i * (size_t)sp->n_vocab : NULL;
    float qx = q ? q[x] : 1.0f;
    if (ellm_sampler_uniform(sampler) * qx < prob[x])
        return true;
    if (q) {
        for (int32_t j = 0; j < sp->n_vocab; j++)
            prob[j] = prob[j] > q[j] ? prob[j] - q[j] : 0.0f;
    } else {
        prob[x] = 0.0f;
    }
    *instead = ellm_sampler_draw(sampler, prob);
    /* Nothing left means p == q up to rounding, where a rejection has probability ~0. */
    if (*instead < 0)
        *instead = edgellm_sampler_sample(sampler, logits);
    return false;
}
