/* Text generation over the public API: prompt evaluation with KV-prefix reuse, the sampling loop,
 * stop conditions, and streaming that only ever hands out whole UTF-8 characters and never text
 * that could still turn out to be part of a stop string. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/status.h"
#include "edgellm.h"
#include "generate/generation.h"
#include "generate/speculative.h"
#include "generate/step.h"
#include "grammar/grammar.h"

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

/* One generation around the shared step, run in slices (edgellm.h, "Step-by-step generation"). */
struct edgellm_generation {
    edgellm_context *ctx; /* NULL once the application freed it (ellm_generation_detach) */
    edgellm_generate_params params; /* the caller's; its stop strings are the step's copies */
    edgellm_generate_result result;
    ellm_step step;
    /* The prompt until it is evaluated: prompt[prompt_at .. n_prompt) are still to evaluate
     * (after the first slice of it, the cached prefix skipped and the token a keep_cache call
     * owes put first). */
    edgellm_token *prompt;
    int32_t n_prompt, prompt_at;
    bool prompt_planned;
    bool owed_first;          /* prompt[0] is the token the last keep_cache call owed */
    int32_t n_past_unplanned; /* cached before the prompt: the owed token stays owed until then */
    edgellm_token pending;    /* emitted, evaluated by the next pass */
    edgellm_token *batch;     /* speculative: the pending token, then the proposals */
    double t_start, t_first;
    bool first_sampled;
    bool ended;
    edgellm_status status; /* the failure that ended it */
    /* The generation holds a call open on ctx from begin until it ends, so that a cancel
     * between its slices is kept for the next one instead of dropped. */
    bool call_open;
    bool running;               /* inside one of its calls: its callback must not re-enter it */
    ellm_draft_hold draft_hold; /* in params.draft's list from begin to finish */
};

/* tok is the next token: accepted, handed to the callback, checked against the context and the
 * token budget. Returns false when generation ends (stop reason or *st set). */
static bool emit(edgellm_generation *g, edgellm_token tok, edgellm_status *st)
{
    const edgellm_generate_params *p = &g->params;
    ellm_step *s = &g->step;
    const char *text = NULL;
    size_t len = 0;
    *st = ellm_step_accept(s, tok, &text, &len);
    if (*st != EDGELLM_OK || s->stop == EDGELLM_STOP_EOS)
        return false;
    int stop = p->on_token ? p->on_token(p->user_data, tok, text, len) : 0;
    if (s->stop == EDGELLM_STOP_STRING)
        return false;
    if (stop) {
        s->stop = EDGELLM_STOP_CALLBACK;
        return false;
    }
    s->stop = ellm_step_limit(s, edgellm_context_n_ctx(g->ctx), p->max_tokens);
    g->pending = tok;
    return s->stop == EDGELLM_STOP_NONE;
}

static bool emit_speculative(void *user, edgellm_token tok, const float *logits, edgellm_status *st)
{
    (void)logits;
    edgellm_generation *g = user;
    return emit(g, tok, st);
}

static void *prepare_mask(void *grammar)
{
    ellm_grammar_state_prepare(grammar);
    return NULL;
}

/* The forward pass over the pending token. Under a grammar, the mask of the position it computes
 * depends only on the tokens accepted so far, so a helper thread computes it (the trie walk, the
 * costly part) meanwhile and the mask after the pass is one sweep over the vocabulary. Only the
 * wait for the helper counts as grammar time. */
static edgellm_status eval_next(edgellm_generation *g)
{
    edgellm_grammar_state *grammar = g->step.grammar;
    pthread_t helper;
    int helping = grammar && g->step.n_vocab >= PREFETCH_MIN_VOCAB &&
                  !edgellm_grammar_state_must_end(grammar) &&
                  pthread_create(&helper, NULL, prepare_mask, grammar) == 0;
    edgellm_status st = ellm_context_eval(g->ctx, &g->pending, 1, 0);
    if (helping) {
        double t0 = ellm_generate_now();
        pthread_join(helper, NULL);
        g->result.grammar_seconds += ellm_generate_now() - t0;
    }
    return st;
}

/* Which of the prompt's tokens are still to evaluate: keep_cache continues after what is
 * cached, and after the last call's unevaluated token (the prompt is new text); otherwise the
 * cached prefix the prompt shares is kept. */
static edgellm_status plan_prompt(edgellm_generation *g)
{
    edgellm_context *ctx = g->ctx;
    edgellm_token owed;
    bool continued = g->params.keep_cache && ellm_context_take_pending(ctx, &owed);
    int32_t reuse = g->params.keep_cache ? 0 : ellm_cache_reuse_prefix(ctx, g->prompt, g->n_prompt);
    int32_t n_past = edgellm_context_n_past(ctx);
    if (g->n_prompt - reuse + continued > edgellm_context_n_ctx(ctx) - n_past) {
        if (continued) /* still owed to the conversation: a shorter prompt may follow */
            ellm_context_set_pending(ctx, owed);
        return ellm_fail(EDGELLM_ERR_CONTEXT_FULL,
                         "the prompt is %d tokens but the context holds %d (%d already used); "
                         "shorten the prompt or raise --ctx",
                         g->n_prompt + continued, edgellm_context_n_ctx(ctx), n_past);
    }
    g->result.n_cached_tokens = reuse;
    g->prompt_at = reuse;
    g->n_past_unplanned = n_past;
    g->prompt_planned = true;
    if (!continued)
        return EDGELLM_OK;
    edgellm_token *tokens = malloc(((size_t)g->n_prompt + 1) * sizeof *tokens);
    if (!tokens) {
        ellm_context_set_pending(ctx, owed);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d prompt tokens",
                         g->n_prompt + 1);
    }
    tokens[0] = owed;
    memcpy(tokens + 1, g->prompt, (size_t)g->n_prompt * sizeof *tokens);
    free(g->prompt);
    g->prompt = tokens;
    g->n_prompt++;
    g->owed_first = true;
    return EDGELLM_OK;
}

/* Evaluates up to n_tokens more of the prompt. Chunks of any size give the logits one pass over
 * the whole prompt gives (docs/performance.md, "Bit-identical results"). */
static edgellm_status evaluate_prompt(edgellm_generation *g, int32_t n_tokens)
{
    if (n_tokens <= 0) /* planning would take the owed token from the context */
        return EDGELLM_OK;
    edgellm_status st = g->prompt_planned ? EDGELLM_OK : plan_prompt(g);
    int32_t n = g->n_prompt - g->prompt_at;
    if (n > n_tokens)
        n = n_tokens;
    if (st != EDGELLM_OK || n <= 0)
        return st;
    st = ellm_context_eval(g->ctx, g->prompt + g->prompt_at, n, 0);
    if (st == EDGELLM_OK)
        g->prompt_at += n;
    /* A failed pass leaves the cache as it was (a cancelled one keeps whole chunks, the token
     * first among them): the token is owed only while the cache has not moved. */
    else if (g->owed_first && edgellm_context_n_past(g->ctx) == g->n_past_unplanned)
        ellm_context_set_pending(g->ctx, g->prompt[0]);
    return st;
}

/* The draft context for one pass, claimed from the other generations drafting with it; NULL
 * when one of them (on another thread) is drafting with it now, or when it was freed, after which
 * the generation goes on without a draft (params.draft NULL). */
static edgellm_context *claim_draft(edgellm_generation *g)
{
    bool freed = false;
    edgellm_context *draft = g->params.draft ? ellm_draft_claim(g->ctx, &g->draft_hold, &freed)
                                             : NULL;
    if (freed)
        g->params.draft = NULL;
    return draft;
}

/* One pass of the model over the pending token and its proposals; emits what it yields. With a
 * draft context but no claim on it (draft NULL) the pass checks no proposals: the same greedy
 * output, and each token still drawn from the model's distribution. Returns false when
 * generation ends. */
static bool speculative_pass(edgellm_generation *g, edgellm_context *draft, edgellm_status *st)
{
    const edgellm_generate_params *p = &g->params;
    edgellm_generate_result *res = &g->result;
    edgellm_context *ctx = g->ctx;
    int32_t n_seq = edgellm_context_n_past(ctx) + 1;

    /* Proposals beyond the context or the token budget would be wasted. */
    int32_t k = p->draft_max;
    if (k > edgellm_context_n_ctx(ctx) - n_seq)
        k = edgellm_context_n_ctx(ctx) - n_seq;
    if (p->max_tokens > 0 && k > p->max_tokens - g->step.n_generated - 1)
        k = p->max_tokens - g->step.n_generated - 1;
    if (k > edgellm_context_n_batch(ctx) - 1) /* the pass keeps the logits of every position */
        k = edgellm_context_n_batch(ctx) - 1;
    if (p->draft && !draft)
        k = 0;
    int32_t n_proposed = 0;
    *st = ellm_spec_propose(g->step.spec, ctx, g->pending, g->step.sampler, g->step.grammar, k,
                            g->batch + 1, &n_proposed);
    /* Before on_token runs: it may free the draft, which waits for the claim to end. */
    if (draft)
        ellm_draft_unclaim(draft);
    if (*st != EDGELLM_OK)
        return false;
    g->batch[0] = g->pending;
    *st = ellm_context_eval(ctx, g->batch, n_proposed + 1, 1);
    if (*st != EDGELLM_OK)
        return false;
    res->n_target_passes++;
    res->n_draft_proposed += n_proposed;
    ellm_step_sink sink = {.emit = emit_speculative, .user = g};
    int32_t n_accepted = 0;
    bool going = ellm_step_verify(&g->step, ctx, g->batch + 1, n_proposed, &sink, &n_accepted, st);
    res->n_draft_accepted += n_accepted;
    return going;
}

/* The next token drawn at the position of the logits ctx holds; -1 with *scored false when the
 * sequence ends there (the grammar's stop reason, or *st). */
static edgellm_token sample_next(edgellm_generation *g, bool *scored, edgellm_status *st)
{
    const float *scores = ellm_step_scores(&g->step, edgellm_get_logits(g->ctx, -1), st);
    *scored = scores != NULL;
    if (!scores)
        return -1;
    edgellm_token tok = ellm_step_sample(&g->step, scores);
    if (!g->first_sampled) {
        g->first_sampled = true;
        g->t_first = ellm_generate_now();
        g->result.ttft_seconds = g->t_first - g->t_start;
    }
    return tok;
}

static bool plain_tokens(edgellm_generation *g, int32_t n_tokens, edgellm_status *st);

/* Decoding with proposals: the model's own first token, then passes until n_tokens more are
 * generated. Returns false when generation ends. */
static bool speculative_tokens(edgellm_generation *g, int32_t n_tokens, edgellm_status *st)
{
    int32_t n_before = g->step.n_generated;
    bool scored = true;
    if (!g->first_sampled) {
        edgellm_token tok = sample_next(g, &scored, st);
        if (!scored || !emit(g, tok, st))
            return false;
    }
    while (g->step.n_generated - n_before < n_tokens) {
        edgellm_context *draft = claim_draft(g);
        if (!ellm_speculative_wanted(&g->params)) {
            /* The draft context was freed (maybe by on_token during the last pass): plain
             * decoding goes on from the token that pass emitted, which no pass evaluated yet. */
            ellm_spec_free(g->step.spec);
            g->step.spec = NULL;
            *st = eval_next(g);
            g->result.n_target_passes++;
            return *st == EDGELLM_OK &&
                   plain_tokens(g, n_tokens - (g->step.n_generated - n_before), st);
        }
        if (!speculative_pass(g, draft, st))
            return false;
    }
    return true;
}

/* Plain decoding: n_tokens more tokens, each evaluated after it is handed out. The token that
 * meets the budget is not evaluated: nothing reads its logits unless a keep_cache call
 * continues, which evaluates it with its prompt. Returns false when generation ends. */
static bool plain_tokens(edgellm_generation *g, int32_t n_tokens, edgellm_status *st)
{
    for (int32_t i = 0; i < n_tokens; i++) {
        bool scored = true;
        edgellm_token tok = sample_next(g, &scored, st);
        if (!scored || !emit(g, tok, st))
            return false;
        *st = eval_next(g);
        g->result.n_target_passes++;
        if (*st != EDGELLM_OK)
            return false;
    }
    return true;
}

/* Up to n_tokens more of the prompt; once it is all evaluated, under speculative decoding the
 * draft reads it too, as part of the time to the first token. Returns false when generation
 * ends. */
static bool prefill(edgellm_generation *g, int32_t n_tokens, edgellm_status *st)
{
    *st = evaluate_prompt(g, n_tokens);
    if (*st != EDGELLM_OK || g->prompt_at < g->n_prompt)
        return *st == EDGELLM_OK;
    g->result.prefill_seconds = ellm_generate_now() - g->t_start;
    free(g->prompt);
    g->prompt = NULL;
    g->step.base = edgellm_context_n_past(g->ctx);
    edgellm_context *draft = claim_draft(g);
    if (!ellm_speculative_wanted(&g->params))
        return true;
    *st = ellm_spec_create(g->ctx, &g->params, &g->step.spec);
    if (*st == EDGELLM_OK &&
        !(g->batch = malloc(((size_t)g->params.draft_max + 1) * sizeof *g->batch)))
        *st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for speculative decoding");
    /* A draft busy on another thread reads the prompt at this generation's first pass with it. */
    if (*st == EDGELLM_OK && draft)
        *st = ellm_spec_prefill(g->step.spec, g->ctx);
    if (draft)
        ellm_draft_unclaim(draft);
    /* A cancel that stopped the draft reading the prompt stops the call before the first token,
     * as one in the prompt's last pass would. */
    if (*st == EDGELLM_OK && draft && ellm_context_cancel_requested(g->ctx))
        *st = ellm_fail(EDGELLM_ERR_CANCELLED,
                        "stopped by edgellm_context_cancel while the draft model read the prompt "
                        "(the prompt stays cached)");
    return *st == EDGELLM_OK;
}

static void generation_free(edgellm_generation *g)
{
    ellm_step_free(&g->step);
    free(g->batch);
    free(g->prompt);
    free(g);
}

/* The generation's hold on its context ends (when it ends, so a late cancel is dropped). */
static void release_call(edgellm_generation *g)
{
    if (g->call_open && g->ctx)
        ellm_context_end_call(g->ctx);
    g->call_open = false;
}

void ellm_generation_detach(edgellm_generation *g)
{
    g->ctx = NULL;
    g->call_open = false;
    if (!g->ended) {
        g->ended = true;
        g->status = EDGELLM_ERR_INVALID_ARGUMENT;
    }
}

static edgellm_status context_freed(const char *what)
{
    return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                     "%s: the generation's context was freed before it; finish the generation "
                     "(edgellm_generation_finish) before freeing its context",
                     what);
}

/* Before *out is reset: a refused second begin must not make the application lose the handle
 * of the open generation, the only way to finish it. */
static edgellm_status refuse_out_or_busy(const edgellm_context *ctx, const char *what,
                                         edgellm_generation **out)
{
    if (!out)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "%s: out_generation is NULL", what);
    return ellm_context_refuse_open(ctx, NULL, what);
}

/* what names the public function for the messages. */
static edgellm_status generation_begin(edgellm_context *ctx, const edgellm_token *prompt,
                                       int32_t n_prompt, const edgellm_generate_params *params,
                                       const char *what, edgellm_generation **out)
{
    edgellm_status st = refuse_out_or_busy(ctx, what, out);
    if (st != EDGELLM_OK)
        return st;
    *out = NULL;
    if (!ctx || !params || !prompt || n_prompt <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "%s: need a context, parameters and a non-empty prompt", what);
    double t_start = ellm_generate_now();
    if (params->draft)
        st = ellm_context_refuse_open(ctx, params->draft, what);
    if (st == EDGELLM_OK)
        st = ellm_speculative_check(ctx, params);
    if (st != EDGELLM_OK)
        return st;
    edgellm_generation *g = calloc(1, sizeof *g);
    if (!g || !(g->prompt = malloc((size_t)n_prompt * sizeof *g->prompt))) {
        free(g);
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY,
                         "no memory for a generation of %d prompt tokens", n_prompt);
    }
    g->ctx = ctx;
    g->params = *params;
    g->t_start = t_start;
    g->result.n_prompt_tokens = g->n_prompt = n_prompt;
    memcpy(g->prompt, prompt, (size_t)n_prompt * sizeof *prompt);
    st = ellm_step_init(&g->step, edgellm_context_model(ctx), &params->sampling,
                        params->stop_strings, params->n_stop_strings, prompt, n_prompt);
    if (st == EDGELLM_OK && params->grammar)
        st = ellm_step_start_grammar(&g->step, params->grammar);
    /* The text stream has its own copies; the caller's may go now. */
    g->params.stop_strings = NULL;
    g->params.n_stop_strings = 0;
    /* Checked again with the registration: another thread may have opened a generation on the
     * draft context since. */
    if (st == EDGELLM_OK)
        st = ellm_context_open_generation(ctx, g, params->draft, &g->draft_hold, what);
    if (st != EDGELLM_OK) {
        generation_free(g);
        return st;
    }
    ellm_context_begin_call(ctx);
    g->call_open = true;
    *out = g;
    return EDGELLM_OK;
}

/* Runs one slice: up to n_tokens of the prompt (prompt_only), or what is left of the prompt and
 * then up to n_tokens tokens. */
static edgellm_status run_slice(edgellm_generation *g, int32_t n_tokens, bool prompt_only,
                                const char *what, int *ended)
{
    if (ended)
        *ended = 1; /* unless the generation says otherwise: a loop on it must end */
    if (!g)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT, "%s: the generation is NULL", what);
    if (!g->ctx)
        return context_freed(what);
    if (ended)
        *ended = g->ended;
    if (n_tokens <= 0)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "%s: n_tokens is %d; ask for 1 or more (INT32_MAX: to the end)", what,
                         n_tokens);
    if (g->running)
        return ellm_fail(EDGELLM_ERR_BUSY,
                         "%s: called from the generation's own on_token callback; return from "
                         "the callback first",
                         what);
    if (!g->ended) {
        edgellm_status st = EDGELLM_OK;
        bool going = false;
        g->running = true;
        ellm_context_begin_call(g->ctx);
        if (ellm_context_cancel_requested(g->ctx))
            st = ellm_fail(EDGELLM_ERR_CANCELLED,
                           "%s: stopped by edgellm_context_cancel before it evaluated anything",
                           what);
        else
            going = g->prompt ? prefill(g, prompt_only ? n_tokens : INT32_MAX, &st) : true;
        if (going && !g->prompt && !prompt_only)
            going = g->step.spec ? speculative_tokens(g, n_tokens, &st)
                                 : plain_tokens(g, n_tokens, &st);
        ellm_context_end_call(g->ctx);
        g->running = false;
        g->ended = !going;
        g->status = st;
        if (g->ended)
            release_call(g);
    }
    if (ended)
        *ended = g->ended;
    return g->status;
}

edgellm_status edgellm_generation_prefill(edgellm_generation *g, int32_t n_tokens, int *ended)
{
    return run_slice(g, n_tokens, true, "edgellm_generation_prefill", ended);
}

int32_t edgellm_generation_prompt_left(const edgellm_generation *g)
{
    if (!g)
        return -1;
    if (!g->prompt)
        return 0;
    /* The first slice puts the token a keep_cache generation owes before the prompt (nothing can
     * change the cache before it): counted from the start, a slice of n lowers the count by n. */
    bool owed = !g->prompt_planned && g->params.keep_cache && g->ctx &&
                ellm_context_owes_pending(g->ctx);
    return g->n_prompt - g->prompt_at + owed;
}

edgellm_status edgellm_generation_next(edgellm_generation *g, int32_t n_tokens, int *ended)
{
    return run_slice(g, n_tokens, false, "edgellm_generation_next", ended);
}

edgellm_status edgellm_generation_finish(edgellm_generation *g, edgellm_generate_result *out)
{
    if (!g) {
        if (out)
            memset(out, 0, sizeof *out);
        return EDGELLM_OK;
    }
    if (g->running)
        return ellm_fail(EDGELLM_ERR_BUSY,
                         "edgellm_generation_finish: called from the generation's own on_token "
                         "callback; finish it after the call that runs it returns");
    edgellm_generate_result *res = &g->result;
    edgellm_status st = g->ctx ? g->status : context_freed("edgellm_generation_finish");
    if (!g->ended)
        g->step.stop = EDGELLM_STOP_CALLBACK;
    res->n_generated = g->step.n_generated;
    res->stop_reason = st == EDGELLM_ERR_CANCELLED ? EDGELLM_STOP_CANCELLED : g->step.stop;
    if (st == EDGELLM_OK && res->stop_reason == EDGELLM_STOP_MAX_TOKENS &&
        edgellm_context_n_past(g->ctx) == g->step.base + g->step.n_generated - 1)
        ellm_context_set_pending(g->ctx, g->pending);
    res->grammar_seconds += g->step.grammar_seconds;
    /* Whatever is still held back is final now (unless a stop string or the callback ended it). */
    if (st == EDGELLM_OK && res->stop_reason != EDGELLM_STOP_STRING &&
        res->stop_reason != EDGELLM_STOP_CALLBACK) {
        const char *text = NULL;
        size_t text_len = 0;
        st = edgellm_text_stream_finish(g->step.text, &text, &text_len);
        g->running = true;
        if (st == EDGELLM_OK && text_len > 0 && g->params.on_token)
            g->params.on_token(g->params.user_data, -1, text, text_len);
        g->running = false;
    }
    if (res->n_generated > 0)
        res->decode_seconds = ellm_generate_now() - g->t_first;
    if (out)
        *out = *res;
    release_call(g);
    ellm_context_close_generation(g->ctx, &g->draft_hold);
    generation_free(g);
    return st;
}

/* The prompt's tokens as edgellm_generate makes them (*tokens from malloc). */
static edgellm_status tokenize_prompt(edgellm_context *ctx, const char *prompt,
                                      const edgellm_generate_params *params, const char *what,
                                      edgellm_token **tokens, int32_t *n_tokens)
{
    *tokens = NULL;
    if (!ctx || !prompt || !params)
        return ellm_fail(EDGELLM_ERR_INVALID_ARGUMENT,
                         "%s: need a context, a prompt and parameters", what);
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
    edgellm_token *ids = malloc((size_t)n * sizeof *ids);
    if (!ids)
        return ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for %d prompt tokens", n);
    st = edgellm_tokenize(model, prompt, len, flags, ids, n, &n);
    if (st != EDGELLM_OK) {
        free(ids);
        return st;
    }
    *tokens = ids;
    *n_tokens = n;
    return EDGELLM_OK;
}

static edgellm_status generation_begin_text(edgellm_context *ctx, const char *prompt,
                                            const edgellm_generate_params *params, const char *what,
                                            edgellm_generation **out)
{
    edgellm_status st = refuse_out_or_busy(ctx, what, out);
    if (st != EDGELLM_OK)
        return st;
    *out = NULL;
    edgellm_token *tokens = NULL;
    int32_t n = 0;
    st = tokenize_prompt(ctx, prompt, params, what, &tokens, &n);
    if (st == EDGELLM_OK)
        st = generation_begin(ctx, tokens, n, params, what, out);
    free(tokens);
    return st;
}

edgellm_status edgellm_generation_begin(edgellm_context *ctx, const char *prompt,
                                        const edgellm_generate_params *params,
                                        edgellm_generation **out)
{
    return generation_begin_text(ctx, prompt, params, "edgellm_generation_begin", out);
}

edgellm_status edgellm_generation_begin_tokens(edgellm_context *ctx, const edgellm_token *prompt,
                                               int32_t n_prompt,
                                               const edgellm_generate_params *params,
                                               edgellm_generation **out)
{
    return generation_begin(ctx, prompt, n_prompt, params, "edgellm_generation_begin_tokens", out);
}

/* One generation, from text or from tokens, in one slice. Begun here, so that a cancel while the
 * prompt is tokenized is not dropped. */
static edgellm_status generate(edgellm_context *ctx, bool from_text, const char *text,
                               const edgellm_token *prompt, int32_t n_prompt,
                               const edgellm_generate_params *params, edgellm_generate_result *out)
{
    const char *what = from_text ? "edgellm_generate" : "edgellm_generate_tokens";
    if (ctx)
        ellm_context_begin_call(ctx);
    edgellm_generation *g = NULL;
    edgellm_status st = from_text ? generation_begin_text(ctx, text, params, what, &g)
                                  : generation_begin(ctx, prompt, n_prompt, params, what, &g);
    if (st == EDGELLM_OK) {
        run_slice(g, INT32_MAX, false, what, NULL);
        st = edgellm_generation_finish(g, out);
    } else if (out) {
        memset(out, 0, sizeof *out);
    }
    if (ctx)
        ellm_context_end_call(ctx);
    return st;
}

edgellm_status edgellm_generate_tokens(edgellm_context *ctx, const edgellm_token *prompt,
                                       int32_t n_prompt, const edgellm_generate_params *params,
                                       edgellm_generate_result *out)
{
    return generate(ctx, false, NULL, prompt, n_prompt, params, out);
}

edgellm_status edgellm_generate(edgellm_context *ctx, const char *prompt,
                                const edgellm_generate_params *params, edgellm_generate_result *out)
{
    return generate(ctx, true, prompt, NULL, 0, params, out);
}
