#define _POSIX_C_SOURCE 200809L
/* Continuous batching: a fixed set of slots (one context each) decoded together in one forward
 * pass per step. A request joins a free slot at any step — its prompt is fed in chunks alongside
 * the other slots' single decode tokens — and leaves the moment it finishes, is cancelled or
 * times out. A slot keeps its KV cache after a request, so a later request sharing a prefix
 * (system prompt, earlier turns) only evaluates what is new. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/status.h"
#include "generate/speculative.h"
#include "generate/step.h"
#include "server/server_internal.h"

typedef struct srv_slot {
    edgellm_context *ctx;
    srv_request *req;   /* NULL when free */
    ellm_step step;     /* the current request's sampler, text, grammar and proposer */
    int32_t n_fed;      /* prompt tokens in the cache for the current request */
    edgellm_token next; /* sampled, to be fed at the next step */
    bool decoding;
    uint64_t last_used;
    char failure[256]; /* why the last pass failed for this slot, "" when it did not */
    /* Speculative decoding: the slot's own draft context (NULL for prompt lookup), the current
     * request's proposer parameters, and the pass's tokens (next, then the proposals). */
    edgellm_context *draft_ctx;
    edgellm_generate_params spec_params;
    edgellm_token *verify;
    int32_t n_room; /* proposals this step's budget leaves room for */
    /* A lazy grammar waiting for its trigger: the last bytes of the output's token pieces. */
    bool lazy_waiting;
    char tail[64];
    size_t tail_len;
} srv_slot;

struct srv_scheduler {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t thread;
    bool thread_started;
    edgellm_model *model;
    edgellm_batch *batch;
    srv_metrics *metrics;
    srv_slot *slots;
    int n_slots;
    srv_request **queue; /* ring buffer */
    int q_head, q_len, q_cap;
    int queue_max; /* requests that may wait while every slot is busy */
    bool stopping;
    double grace_deadline;
    int32_t n_vocab, n_batch, n_ctx;
    uint64_t clock;
    uint64_t last_group;
    float *biased; /* n_vocab: the logits a request's logit_bias changed */
    bool busy_since_trim;
    bool speculative;
    edgellm_model *draft_model;
    edgellm_generate_params spec_template; /* draft_max, draft_min, lookup_ngram */
    /* per-step plan */
    edgellm_context **plan_ctx;
    const edgellm_token **plan_tokens;
    int32_t *plan_n;
    int *plan_slot;
};

double ellm_srv_now(void) { return ellm_generate_now(); }

srv_request *ellm_srv_request_new(void)
{
    srv_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &attr);
    pthread_condattr_destroy(&attr);
    r->refs = 1;
    r->max_tokens = -1;
    r->sampling = edgellm_sampler_default_params();
    atomic_init(&r->cancelled, false);
    return r;
}

void ellm_srv_events_free(srv_event *events, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(events[i].text);
    free(events);
}

static void request_free(srv_request *r)
{
    free(r->prompt);
    if (r->grammar_owner)
        ellm_srv_request_release(r->grammar_owner);
    else
        edgellm_grammar_free(r->grammar);
    for (int i = 0; i < r->n_stops; i++)
        free(r->stops[i]);
    free(r->stops);
    free(r->bias);
    free(r->prompt_lp);
    ellm_srv_events_free(r->events, r->n_events);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static void request_retain(srv_request *r);

srv_request *ellm_srv_request_derive(const srv_request *base, int choice)
{
    srv_request *r = ellm_srv_request_new();
    if (!r)
        return NULL;
    r->prompt = malloc((size_t)base->n_prompt * sizeof *r->prompt);
    r->stops = base->n_stops ? calloc((size_t)base->n_stops, sizeof *r->stops) : NULL;
    r->bias = base->n_bias ? malloc((size_t)base->n_bias * sizeof *r->bias) : NULL;
    bool ok = r->prompt && (r->stops || !base->n_stops) && (r->bias || !base->n_bias);
    for (int i = 0; ok && i < base->n_stops; i++, r->n_stops++)
        ok = (r->stops[i] = strdup(base->stops[i])) != NULL;
    if (!ok) {
        ellm_srv_request_release(r);
        return NULL;
    }
    memcpy(r->prompt, base->prompt, (size_t)base->n_prompt * sizeof *r->prompt);
    r->n_prompt = base->n_prompt;
    if (base->n_bias)
        memcpy(r->bias, base->bias, (size_t)base->n_bias * sizeof *r->bias);
    r->n_bias = base->n_bias;
    r->sampling = base->sampling;
    r->sampling.seed = base->sampling.seed + (uint64_t)choice;
    r->max_tokens = base->max_tokens;
    r->logprobs = base->logprobs;
    r->top_logprobs = base->top_logprobs;
    r->echo = base->echo;
    r->deadline = base->deadline;
    r->choice = choice;
    if (base->grammar) {
        srv_request *owner = base->grammar_owner ? base->grammar_owner : (srv_request *)base;
        request_retain(owner);
        r->grammar = base->grammar;
        r->grammar_owner = owner;
        r->grammar_trigger = base->grammar_trigger;
    }
    return r;
}

void ellm_srv_request_release(srv_request *r)
{
    if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
        request_free(r);
}

static void request_retain(srv_request *r) { __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL); }

pthread_mutex_t *ellm_srv_scheduler_lock(srv_scheduler *s) { return &s->mu; }

/* Under the lock. */
static bool push_event(srv_request *r, const char *text, size_t len, edgellm_token token,
                       float logprob, const srv_logprob *top, int n_top)
{
    if (r->n_events == r->cap_events) {
        size_t cap = r->cap_events ? r->cap_events * 2 : 64;
        srv_event *e = realloc(r->events, cap * sizeof *e);
        if (!e)
            return false;
        r->events = e;
        r->cap_events = cap;
    }
    srv_event *e = &r->events[r->n_events];
    memset(e, 0, sizeof *e);
    e->text = malloc(len + 1);
    if (!e->text)
        return false;
    memcpy(e->text, text, len);
    e->text[len] = '\0';
    e->len = len;
    e->token = token;
    e->logprob = logprob;
    e->n_top = n_top;
    if (n_top > 0)
        memcpy(e->top, top, (size_t)n_top * sizeof *top);
    r->n_events++;
    pthread_cond_broadcast(&r->cv);
    return true;
}

/* Under the lock: marks the request finished and frees its slot. */
static void finish_slot(srv_scheduler *s, srv_slot *slot, srv_finish finish, const char *error)
{
    srv_request *r = slot->req;
    if (finish == SRV_FINISH_STOP || finish == SRV_FINISH_LENGTH) {
        /* Text held back for a possible stop string or an unfinished character is final now. */
        const char *text = NULL;
        size_t len = 0;
        if (edgellm_text_stream_finish(slot->step.text, &text, &len) == EDGELLM_OK && len > 0)
            push_event(r, text, len, -1, 0, NULL, 0);
    }
    r->finish = finish;
    if (error)
        snprintf(r->error, sizeof r->error, "%s", error);
    r->done = true;
    r->t_done = ellm_srv_now();
    ellm_srv_metrics_tokens(s->metrics, r->n_prompt, r->n_cached, r->n_generated);
    pthread_cond_broadcast(&r->cv);
    ellm_step_free(&slot->step);
    slot->req = NULL;
    slot->decoding = false;
    slot->last_used = ++s->clock;
    ellm_srv_request_release(r);
}

static void finish_unadmitted(srv_request *r, srv_finish finish, const char *error)
{
    r->finish = finish;
    snprintf(r->error, sizeof r->error, "%s", error);
    r->done = true;
    r->t_done = ellm_srv_now();
    pthread_cond_broadcast(&r->cv);
    ellm_srv_request_release(r);
}

/* Under the lock: the step ended the request (its stop reason says why) or failed (st). */
static void finish_step(srv_scheduler *s, srv_slot *slot, edgellm_status st)
{
    switch (st != EDGELLM_OK ? EDGELLM_STOP_NONE : slot->step.stop) {
    case EDGELLM_STOP_EOS:
    case EDGELLM_STOP_STRING:
    case EDGELLM_STOP_GRAMMAR_DONE: finish_slot(s, slot, SRV_FINISH_STOP, NULL); break;
    case EDGELLM_STOP_MAX_TOKENS:
    case EDGELLM_STOP_CONTEXT_FULL: finish_slot(s, slot, SRV_FINISH_LENGTH, NULL); break;
    case EDGELLM_STOP_GRAMMAR_STUCK:
        finish_slot(s, slot, SRV_FINISH_ERROR,
                    "no token of the model's vocabulary can continue the grammar's output");
        break;
    default: finish_slot(s, slot, SRV_FINISH_ERROR, edgellm_last_error());
    }
}

/* The request's proposer: its sampling parameters, the server's draft settings. */
static edgellm_status start_speculation(srv_slot *slot, const srv_request *r)
{
    edgellm_generate_params *p = &slot->spec_params;
    p->sampling = r->sampling;
    p->draft = slot->draft_ctx;
    return ellm_spec_create(slot->ctx, p, &slot->step.spec);
}

/* Under the lock: moves queued requests into free slots, preferring the slot whose cache shares
 * the longest prefix with the prompt, then the least recently used. */
static void admit(srv_scheduler *s)
{
    while (s->q_len > 0) {
        srv_request *r = s->queue[s->q_head];
        int best = -1;
        int32_t best_prefix = -1;
        for (int i = 0; i < s->n_slots; i++) {
            srv_slot *slot = &s->slots[i];
            if (slot->req)
                continue;
            int32_t p = ellm_cache_common_prefix(slot->ctx, r->prompt, r->n_prompt);
            if (p > best_prefix ||
                (p == best_prefix && slot->last_used < s->slots[best].last_used)) {
                best = i;
                best_prefix = p;
            }
        }
        if (best < 0)
            return;
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        if (atomic_load(&r->cancelled)) {
            finish_unadmitted(r, SRV_FINISH_CANCELLED, "the client disconnected");
            continue;
        }
        srv_slot *slot = &s->slots[best];
        bool score_prompt = r->echo && r->logprobs;
        int32_t keep = 0; /* every prompt position's logits are needed, cached ones have none */
        if (score_prompt)
            edgellm_context_truncate(slot->ctx, 0);
        else
            keep = ellm_cache_reuse_prefix(slot->ctx, r->prompt, r->n_prompt);
        edgellm_context_set_batch_all_logits(slot->ctx, score_prompt);
        edgellm_status st = ellm_step_init(&slot->step, s->model, &r->sampling,
                                           (const char *const *)r->stops, r->n_stops, r->prompt,
                                           r->n_prompt);
        slot->step.base = r->n_prompt;
        if (st == EDGELLM_OK && r->grammar && !r->grammar_trigger)
            st = ellm_step_start_grammar(&slot->step, r->grammar);
        slot->lazy_waiting = r->grammar && r->grammar_trigger;
        slot->tail_len = 0;
        if (st == EDGELLM_OK && s->speculative)
            st = start_speculation(slot, r);
        slot->req = r;
        slot->n_fed = keep;
        slot->decoding = false;
        r->n_cached = keep;
        if (st != EDGELLM_OK) {
            finish_slot(s, slot, SRV_FINISH_ERROR, edgellm_last_error());
            continue;
        }
        if (score_prompt && !r->prompt_lp &&
            !(r->prompt_lp = calloc((size_t)r->n_prompt, sizeof *r->prompt_lp))) {
            finish_slot(s, slot, SRV_FINISH_ERROR, "out of memory for the prompt's logprobs");
            continue;
        }
    }
}

static int32_t top_logprobs(const float *logits, int32_t n_vocab, float log_z, int k,
                            srv_logprob *top)
{
    int n = 0;
    for (int32_t t = 0; t < n_vocab; t++) {
        float lp = logits[t] - log_z;
        if (n < k || lp > top[n - 1].logprob) {
            int pos = n < k ? n++ : n - 1;
            while (pos > 0 && top[pos - 1].logprob < lp) {
                top[pos] = top[pos - 1];
                pos--;
            }
            top[pos] = (srv_logprob){t, lp};
        }
    }
    return n;
}

/* The log-probability of tok and the k most likely tokens under the model's own distribution:
 * log-softmax of the raw logits, before temperature, penalties, truncation and logit_bias. */
static float token_logprob(const float *logits, int32_t n_vocab, edgellm_token tok, int k,
                           srv_logprob *top, int *n_top)
{
    float max = logits[0];
    for (int32_t t = 1; t < n_vocab; t++)
        max = logits[t] > max ? logits[t] : max;
    double sum = 0;
    for (int32_t t = 0; t < n_vocab; t++)
        sum += exp((double)(logits[t] - max));
    float log_z = max + (float)log(sum);
    *n_top = k > 0 ? top_logprobs(logits, n_vocab, log_z, k, top) : 0;
    return logits[tok] - log_z;
}

/* The logits the sampler sees: the model's, plus the request's logit_bias. */
static const float *biased_logits(srv_scheduler *s, const srv_request *r, const float *logits)
{
    if (r->n_bias == 0)
        return logits;
    memcpy(s->biased, logits, (size_t)s->n_vocab * sizeof *logits);
    for (int i = 0; i < r->n_bias; i++)
        s->biased[r->bias[i].token] += r->bias[i].bias;
    return s->biased;
}

static bool emit_slot_token(srv_scheduler *s, srv_slot *slot, edgellm_token tok,
                            const float *logits);

/* Under the lock: picks the next token of a slot whose logits are ready. */
static void sample_slot(srv_scheduler *s, srv_slot *slot)
{
    const float *logits = edgellm_get_logits(slot->ctx, -1);
    edgellm_status st = EDGELLM_OK;
    const float *scores = ellm_step_scores(&slot->step, biased_logits(s, slot->req, logits), &st);
    if (!scores)
        finish_step(s, slot, st);
    else
        emit_slot_token(s, slot, ellm_step_sample(&slot->step, scores), logits);
}

/* A lazy grammar starts right after its trigger text, when a token's piece ends exactly there
 * (a trigger ending inside a token is not followed: the output stays unconstrained until the
 * next one). */
static edgellm_status watch_trigger(srv_scheduler *s, srv_slot *slot, edgellm_token tok)
{
    char piece[128];
    size_t len = 0;
    if (edgellm_token_to_piece(s->model, tok, piece, sizeof piece, &len) != EDGELLM_OK)
        len = 0; /* a longer piece cannot end a trigger that fits the tail anyway */
    /* Control tokens write no text; their own text is the trigger ([TOOL_CALLS], <|python_tag|>). */
    if (len == 0 && edgellm_token_text(s->model, tok, piece, sizeof piece, &len) != EDGELLM_OK)
        len = 0;
    size_t cap = sizeof slot->tail;
    if (len >= cap) {
        memcpy(slot->tail, piece + len - cap, cap);
        slot->tail_len = cap;
    } else {
        size_t keep = slot->tail_len + len > cap ? cap - len : slot->tail_len;
        memmove(slot->tail, slot->tail + slot->tail_len - keep, keep);
        memcpy(slot->tail + keep, piece, len);
        slot->tail_len = keep + len;
    }
    const char *trigger = slot->req->grammar_trigger;
    size_t n = strlen(trigger);
    if (len == 0 || n > slot->tail_len || memcmp(slot->tail + slot->tail_len - n, trigger, n) != 0)
        return EDGELLM_OK;
    slot->lazy_waiting = false;
    return ellm_step_start_grammar(&slot->step, slot->req->grammar);
}

/* Under the lock: tok, chosen from logits, is the slot's next token or ends its request; returns
 * whether the slot goes on decoding. */
static bool emit_slot_token(srv_scheduler *s, srv_slot *slot, edgellm_token tok,
                            const float *logits)
{
    srv_request *r = slot->req;
    if (tok >= 0 && r->n_generated == 0) {
        r->t_first = ellm_srv_now();
        ellm_srv_metrics_ttft(s->metrics, r->t_first - r->t_submit);
    }
    const char *text = NULL;
    size_t len = 0;
    edgellm_status st = ellm_step_accept(&slot->step, tok, &text, &len);
    r->n_generated = slot->step.n_generated;
    if (st == EDGELLM_OK && slot->lazy_waiting && slot->step.stop == EDGELLM_STOP_NONE)
        st = watch_trigger(s, slot, tok);
    if (st != EDGELLM_OK || slot->step.stop == EDGELLM_STOP_EOS) {
        finish_step(s, slot, st);
        return false;
    }
    float logprob = 0;
    srv_logprob top[SRV_MAX_TOP_LOGPROBS];
    int n_top = 0;
    if (r->logprobs)
        logprob = token_logprob(logits, s->n_vocab, tok, r->top_logprobs, top, &n_top);
    if (!push_event(r, text, len, tok, logprob, top, n_top)) {
        finish_slot(s, slot, SRV_FINISH_ERROR, "out of memory");
        return false;
    }
    if (slot->step.stop == EDGELLM_STOP_NONE)
        slot->step.stop = ellm_step_limit(&slot->step, s->n_ctx, r->max_tokens);
    if (slot->step.stop != EDGELLM_STOP_NONE) {
        finish_step(s, slot, EDGELLM_OK);
        return false;
    }
    slot->next = tok;
    slot->decoding = true;
    return true;
}

/* Under the lock: requests that must end before the next step. */
static void reap(srv_scheduler *s, double now)
{
    bool cut = s->stopping && now >= s->grace_deadline;
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *slot = &s->slots[i];
        if (!slot->req)
            continue;
        if (atomic_load(&slot->req->cancelled))
            finish_slot(s, slot, SRV_FINISH_CANCELLED, "the client disconnected");
        else if (now >= slot->req->deadline)
            finish_slot(s, slot, SRV_FINISH_TIMEOUT, "the request's deadline passed");
        else if (cut)
            finish_slot(s, slot, SRV_FINISH_SHUTDOWN, "the server is shutting down");
    }
}

/* ---- prompts: scores for echo, one evaluation for the choices of a request ---- */

/* Under the lock: the prompt tokens a just-evaluated chunk (from position first, n tokens, all
 * logits kept) predicts; row j scores the token after it. */
static void score_prompt_chunk(srv_scheduler *s, srv_slot *slot, int32_t first, int32_t n)
{
    srv_request *r = slot->req;
    for (int32_t j = 0; j < n && first + j + 1 < r->n_prompt; j++) {
        const float *logits = edgellm_get_logits(slot->ctx, j);
        srv_event *e = &r->prompt_lp[first + j + 1];
        e->token = r->prompt[first + j + 1];
        if (logits)
            e->logprob = token_logprob(logits, s->n_vocab, e->token, r->top_logprobs, e->top,
                                       &e->n_top);
    }
}

/* Under the lock: an echo's prompt tokens become the request's first events, each with its text
 * (the SentencePiece dummy space dropped, as detokenizing the prompt does) and its scores from
 * lp, NULL when no logprobs were asked for. */
static bool push_prompt_events(srv_scheduler *s, srv_request *r, const srv_event *lp)
{
    size_t cap = 64, len = 0;
    char *text = malloc(cap);
    bool at_start = true, ok = text != NULL;
    for (int32_t i = 0; ok && i < r->n_prompt; i++) {
        edgellm_status st = edgellm_detokenize(s->model, &r->prompt[i], 1, at_start, text, cap,
                                               &len);
        if (st == EDGELLM_ERR_BUFFER_TOO_SMALL) {
            char *grown = realloc(text, len + 1);
            ok = grown != NULL;
            if (ok) {
                text = grown;
                cap = len + 1;
                st = edgellm_detokenize(s->model, &r->prompt[i], 1, at_start, text, cap, &len);
            }
        }
        if (st != EDGELLM_OK)
            len = 0;
        at_start = at_start && len == 0;
        ok = ok && push_event(r, text, len, r->prompt[i], lp ? lp[i].logprob : 0,
                              lp ? lp[i].top : NULL, lp ? lp[i].n_top : 0);
        if (ok)
            r->events[r->n_events - 1].no_logprob = i == 0;
    }
    free(text);
    return ok;
}

/* Under the lock: the slot's prompt is in its cache and its last logits are ready; source is the
 * choice whose cache it copied, if any. */
static void prompt_done(srv_scheduler *s, srv_slot *slot, const srv_request *source)
{
    srv_request *r = slot->req;
    edgellm_context_set_batch_all_logits(slot->ctx, 0);
    if (r->echo && !push_prompt_events(s, r, source ? source->prompt_lp : r->prompt_lp)) {
        finish_slot(s, slot, SRV_FINISH_ERROR, "out of memory");
        return;
    }
    if (r->max_tokens == 0) {
        finish_slot(s, slot, SRV_FINISH_LENGTH, NULL); /* echo only: the prompt's scores */
        return;
    }
    sample_slot(s, slot);
}

/* Whether the slot's request is a later choice whose first choice is still evaluating the
 * prompt: it waits for a copy of that cache instead of evaluating the same tokens again. */
static bool waits_for_prompt(const srv_scheduler *s, const srv_slot *slot)
{
    const srv_request *r = slot->req;
    if (r->group == 0 || r->choice == 0)
        return false;
    for (int i = 0; i < s->n_slots; i++) {
        const srv_request *o = s->slots[i].req;
        if (o && o->group == r->group && o->choice == 0 && !s->slots[i].decoding)
            return true;
    }
    return false;
}

/* Under the lock: first's prompt is evaluated; the waiting choices of its request copy it. */
static void share_prompt(srv_scheduler *s, srv_slot *first)
{
    const srv_request *r = first->req;
    if (r->group == 0 || r->choice != 0)
        return;
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *o = &s->slots[i];
        if (o == first || !o->req || o->req->group != r->group || o->decoding)
            continue;
        if (edgellm_context_copy_cache(o->ctx, first->ctx) != EDGELLM_OK)
            continue; /* it evaluates the prompt itself */
        o->n_fed = o->req->n_prompt;
        o->req->n_cached = o->req->n_prompt;
        prompt_done(s, o, r);
    }
}

/* ---- speculative decoding: proposals checked inside the batched pass ---- */

/* Under the lock: shares the budget left after every decoding slot's own token among the first
 * n_planned plan entries' proposals (a proposal never runs past the request's token budget or
 * the context); returns the tokens reserved. */
static int32_t reserve_proposals(srv_scheduler *s, int n_planned, int32_t budget)
{
    int32_t reserved = 0;
    for (int k = 0; k < n_planned && s->speculative; k++) {
        srv_slot *slot = &s->slots[s->plan_slot[k]];
        const srv_request *r = slot->req;
        if (!slot->step.spec) { /* no proposer: the request could not start one */
            slot->n_room = 0;
            continue;
        }
        int32_t room = slot->spec_params.draft_max;
        /* The pass must leave a free position after its last token, as plain decoding does. */
        int32_t left_in_ctx = s->n_ctx - edgellm_context_n_past(slot->ctx) - 2;
        room = room < left_in_ctx ? room : left_in_ctx;
        room = room < r->max_tokens - r->n_generated - 1 ? room
                                                         : r->max_tokens - r->n_generated - 1;
        room = room < budget - reserved ? room : budget - reserved;
        slot->n_room = room > 0 ? room : 0;
        reserved += slot->n_room;
    }
    return reserved;
}

/* Outside the lock (only this thread touches slots): the decoding slots among the first
 * n_planned entries get their proposals, and the pass keeps the logits of each one's tokens. */
static void propose_for_slots(srv_scheduler *s, int n_planned)
{
    for (int k = 0; k < n_planned && s->speculative; k++) {
        srv_slot *slot = &s->slots[s->plan_slot[k]];
        if (!slot->step.spec) {
            edgellm_context_set_batch_all_logits(slot->ctx, 0);
            continue;
        }
        int32_t n_proposed = 0;
        slot->verify[0] = slot->next;
        /* A draft that fails to propose costs this step its proposals, nothing else: the model's
         * own pass still decides every token. */
        if (ellm_spec_propose(slot->step.spec, slot->ctx, slot->next, slot->step.sampler,
                              slot->step.grammar, slot->n_room, slot->verify + 1,
                              &n_proposed) != EDGELLM_OK)
            n_proposed = 0;
        edgellm_context_set_batch_all_logits(slot->ctx, n_proposed > 0);
        s->plan_tokens[k] = slot->verify;
        s->plan_n[k] = 1 + n_proposed;
    }
}

/* The slot a verification emits into. */
typedef struct verified_slot {
    srv_scheduler *s;
    srv_slot *slot;
} verified_slot;

static const float *verified_scores(void *user, const float *logits)
{
    verified_slot *v = user;
    return biased_logits(v->s, v->slot->req, logits);
}

static bool verified_token(void *user, edgellm_token tok, const float *logits, edgellm_status *st)
{
    verified_slot *v = user;
    *st = EDGELLM_OK;
    return emit_slot_token(v->s, v->slot, tok, logits);
}

/* Under the lock: the pass over the slot's next token and its n_proposed proposals is done;
 * emits the proposals that stand and one token of the model's own, and cuts the cache back past
 * the first rejected proposal. The pass left a free position after its last token
 * (reserve_proposals), so every emitted token meets the limits plain decoding meets. */
static void verify_slot(srv_scheduler *s, srv_slot *slot, int32_t n_proposed)
{
    verified_slot v = {s, slot};
    ellm_step_sink sink = {.adjust = verified_scores, .emit = verified_token, .user = &v};
    int32_t n_accepted = 0;
    edgellm_status st = EDGELLM_OK;
    bool going = ellm_step_verify(&slot->step, slot->ctx, slot->verify + 1, n_proposed, &sink,
                                  &n_accepted, &st);
    ellm_srv_metrics_speculative(s->metrics, n_proposed, n_accepted);
    if (!going && slot->req) /* not finished by emit_slot_token: the grammar ended it, or st */
        finish_step(s, slot, st);
}

static void *scheduler_main(void *arg)
{
    srv_scheduler *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        double now = ellm_srv_now();
        reap(s, now);
        if (!s->stopping)
            admit(s);
        /* Plan: every decoding slot feeds its one token; prompts fill the remaining budget. */
        int n = 0;
        int32_t budget = s->n_batch;
        for (int i = 0; i < s->n_slots && budget > 0; i++) {
            srv_slot *slot = &s->slots[i];
            if (slot->req && slot->decoding) {
                s->plan_ctx[n] = slot->ctx;
                s->plan_tokens[n] = &slot->next;
                s->plan_n[n] = 1;
                s->plan_slot[n++] = i;
                budget--;
            }
        }
        int n_decoding = n;
        budget -= reserve_proposals(s, n_decoding, budget);
        for (int i = 0; i < s->n_slots && budget > 0; i++) {
            srv_slot *slot = &s->slots[i];
            if (slot->req && !slot->decoding && !waits_for_prompt(s, slot)) {
                int32_t left = slot->req->n_prompt - slot->n_fed;
                int32_t chunk = left < budget ? left : budget;
                s->plan_ctx[n] = slot->ctx;
                s->plan_tokens[n] = slot->req->prompt + slot->n_fed;
                s->plan_n[n] = chunk;
                s->plan_slot[n++] = i;
                budget -= chunk;
            }
        }
        if (n == 0) {
            if (s->stopping && s->q_len == 0)
                break;
            if (s->busy_since_trim) {
                /* Idle again: hand the memory of finished requests back to the system, so the
                 * process returns to its baseline between bursts. */
                s->busy_since_trim = false;
#if defined(__GLIBC__)
                malloc_trim(0);
#endif
            }
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 200 * 1000000L; /* deadlines and the grace period are checked here */
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->wake, &s->mu, &ts);
            continue;
        }
        s->busy_since_trim = true;
        pthread_mutex_unlock(&s->mu);
        propose_for_slots(s, n_decoding);
        edgellm_status st = edgellm_eval_batch(s->batch, s->plan_ctx, s->plan_tokens, s->plan_n, n);
        for (int k = 0; k < n; k++) {
            srv_slot *slot = &s->slots[s->plan_slot[k]];
            /* A failed pass changed no context. One request's failure (a model that computes NaN
             * for its text) must not end the others: each is tried again on its own. */
            edgellm_status own = st == EDGELLM_OK || n == 1
                                     ? st
                                     : edgellm_eval_batch(s->batch, &s->plan_ctx[k],
                                                          &s->plan_tokens[k], &s->plan_n[k], 1);
            const char *why = own == EDGELLM_OK ? "" : edgellm_last_error();
            snprintf(slot->failure, sizeof slot->failure, "%s",
                     own == EDGELLM_OK || why[0] ? why : "the forward pass failed");
        }
        pthread_mutex_lock(&s->mu);
        for (int k = 0; k < n; k++) {
            srv_slot *slot = &s->slots[s->plan_slot[k]];
            if (!slot->req)
                continue;
            if (slot->failure[0]) {
                finish_slot(s, slot, SRV_FINISH_ERROR, slot->failure);
                continue;
            }
            if (!slot->decoding) {
                if (slot->req->prompt_lp)
                    score_prompt_chunk(s, slot, slot->n_fed, s->plan_n[k]);
                slot->n_fed += s->plan_n[k];
                if (slot->n_fed < slot->req->n_prompt)
                    continue;
                share_prompt(s, slot);
                prompt_done(s, slot, NULL);
                continue;
            }
            if (slot->step.spec)
                verify_slot(s, slot, s->plan_n[k] - 1);
            else
                sample_slot(s, slot);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The draft model (checked against the model's vocabulary) and a draft context per slot, or
 * prompt lookup, as cfg asks. */
static edgellm_status create_speculation(srv_scheduler *s, const ellm_server_config *cfg,
                                         const edgellm_context_params *cp)
{
    edgellm_generate_params *t = &s->spec_template;
    *t = edgellm_generate_default_params();
    t->lookup_ngram = cfg->lookup_ngram;
    if (cfg->draft_max > 0) {
        t->draft_max = cfg->draft_max;
        t->draft_min = cfg->draft_min;
    }
    char why[512];
    edgellm_status st = EDGELLM_OK;
    if (cfg->draft_path) {
        edgellm_model_params mp = edgellm_model_default_params();
        mp.pages = cfg->pages;
        st = edgellm_model_load(cfg->draft_path, &mp, &s->draft_model);
        if (st == EDGELLM_OK)
            st = edgellm_model_check_draft(s->model, s->draft_model);
        if (st != EDGELLM_OK) {
            snprintf(why, sizeof why, "%s", edgellm_last_error());
            return ellm_fail(st, "--draft %s cannot be used: %s", cfg->draft_path, why);
        }
    }
    edgellm_context_params dcp = *cp;
    if (s->draft_model) {
        edgellm_model_info info;
        edgellm_model_get_info(s->draft_model, &info);
        dcp.n_ctx = s->n_ctx < info.n_ctx_train ? s->n_ctx : info.n_ctx_train;
    }
    for (int i = 0; i < s->n_slots && st == EDGELLM_OK; i++) {
        srv_slot *slot = &s->slots[i];
        slot->spec_params = *t;
        slot->verify = malloc(((size_t)t->draft_max + 1) * sizeof *slot->verify);
        if (!slot->verify)
            st = ellm_fail(EDGELLM_ERR_OUT_OF_MEMORY, "no memory for speculative decoding");
        if (st == EDGELLM_OK && s->draft_model)
            st = edgellm_context_create(s->draft_model, &dcp, &slot->draft_ctx);
    }
    if (st == EDGELLM_OK) {
        t->draft = s->slots[0].draft_ctx;
        st = ellm_speculative_check(s->slots[0].ctx, t);
        t->draft = NULL;
    }
    s->speculative = st == EDGELLM_OK;
    return st;
}

edgellm_status ellm_srv_scheduler_create(edgellm_model *model, const ellm_server_config *cfg,
                                         srv_metrics *metrics, srv_scheduler **out)
{
    *out = NULL;
    srv_scheduler *s = calloc(1, sizeof *s);
    if (!s)
        return EDGELLM_ERR_OUT_OF_MEMORY;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    s->model = model;
    s->metrics = metrics;
    s->n_slots = cfg->parallel > 0 ? cfg->parallel : 1;
    s->n_vocab = edgellm_n_vocab(model);
    s->queue_max = cfg->queue_max >= 0 ? cfg->queue_max : 4 * s->n_slots;
    /* Room for the waiting requests plus those about to take a free slot. */
    s->q_cap = s->queue_max + s->n_slots + SRV_MAX_CHOICES; /* a request's choices enter together */

    edgellm_context_params bp = edgellm_context_default_params();
    bp.n_ctx = cfg->n_ctx;
    if (bp.n_ctx < 0) {
        edgellm_model_info info;
        edgellm_model_get_info(model, &info);
        bp.n_ctx = info.n_ctx_train < -cfg->n_ctx ? info.n_ctx_train : -cfg->n_ctx;
    }
    bp.n_threads = cfg->n_threads;
    bp.kv_type = cfg->kv_type;
    bp.n_batch = cfg->n_batch > 0 ? cfg->n_batch : 256;
    if (bp.n_batch < s->n_slots)
        bp.n_batch = s->n_slots; /* every slot can always decode in the same pass */
    edgellm_status st = edgellm_batch_create(model, &bp, &s->batch);
    edgellm_context_params sp = bp;
    sp.n_threads = 1;
    sp.n_batch = 1;
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
    s->plan_ctx = calloc((size_t)s->n_slots, sizeof *s->plan_ctx);
    s->plan_tokens = calloc((size_t)s->n_slots, sizeof *s->plan_tokens);
    s->plan_n = calloc((size_t)s->n_slots, sizeof *s->plan_n);
    s->plan_slot = calloc((size_t)s->n_slots, sizeof *s->plan_slot);
    s->biased = malloc((size_t)s->n_vocab * sizeof *s->biased);
    if (st == EDGELLM_OK && (!s->slots || !s->queue || !s->plan_ctx || !s->plan_tokens ||
                             !s->plan_n || !s->plan_slot || !s->biased))
        st = EDGELLM_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < s->n_slots && st == EDGELLM_OK; i++)
        st = edgellm_context_create(model, &sp, &s->slots[i].ctx);
    if (st == EDGELLM_OK) {
        s->n_ctx = edgellm_context_n_ctx(s->slots[0].ctx);
        /* The batch's own n_batch may have been clamped to the context. */
        s->n_batch = bp.n_batch < s->n_ctx ? bp.n_batch : s->n_ctx;
        if (s->n_batch < s->n_slots)
            st = EDGELLM_ERR_INVALID_ARGUMENT;
    }
    if (st == EDGELLM_OK && (cfg->draft_path || cfg->lookup_ngram > 0))
        st = create_speculation(s, cfg, &bp);
    if (st == EDGELLM_OK && pthread_create(&s->thread, NULL, scheduler_main, s) != 0)
        st = EDGELLM_ERR_OUT_OF_MEMORY;
    if (st != EDGELLM_OK) {
        ellm_srv_scheduler_free(s);
        return st;
    }
    s->thread_started = true;
    *out = s;
    return EDGELLM_OK;
}

srv_submit_result ellm_srv_scheduler_submit(srv_scheduler *s, srv_request *r)
{
    return ellm_srv_scheduler_submit_choices(s, &r, 1);
}

srv_submit_result ellm_srv_scheduler_submit_choices(srv_scheduler *s, srv_request *const *reqs,
                                                    int n)
{
    pthread_mutex_lock(&s->mu);
    srv_submit_result res = SRV_SUBMITTED;
    int free_slots = 0;
    for (int i = 0; i < s->n_slots; i++)
        free_slots += s->slots[i].req == NULL;
    if (s->stopping)
        res = SRV_STOPPING;
    else if (s->q_len >= s->queue_max + free_slots || s->q_len + n > s->q_cap)
        res = SRV_QUEUE_FULL;
    if (res == SRV_SUBMITTED) {
        uint64_t group = n > 1 ? ++s->last_group : 0;
        for (int i = 0; i < n; i++) {
            srv_request *r = reqs[i];
            /* Clamp: a request never runs past its context. */
            if (r->max_tokens < 0 || r->max_tokens > s->n_ctx - r->n_prompt)
                r->max_tokens = s->n_ctx - r->n_prompt;
            r->group = group;
            r->t_submit = ellm_srv_now();
            request_retain(r);
            s->queue[(s->q_head + s->q_len) % s->q_cap] = r;
            s->q_len++;
        }
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->mu);
    return res;
}

int ellm_srv_scheduler_n_ctx(srv_scheduler *s) { return s->n_ctx; }

void ellm_srv_request_wait(srv_scheduler *s, srv_request *r, size_t seen, double timeout_s)
{
    pthread_mutex_lock(&s->mu);
    if (r->n_events <= seen && !r->done) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(timeout_s * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&r->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
}

size_t ellm_srv_request_take(srv_scheduler *s, srv_request *r, size_t from, srv_event **out,
                             bool *done)
{
    pthread_mutex_lock(&s->mu);
    size_t n = r->n_events > from ? r->n_events - from : 0;
    *out = NULL;
    if (n > 0) {
        srv_event *copy = calloc(n, sizeof *copy);
        size_t ok = 0;
        for (; copy && ok < n; ok++) {
            copy[ok] = r->events[from + ok];
            copy[ok].text = malloc(copy[ok].len + 1);
            if (!copy[ok].text)
                break;
            memcpy(copy[ok].text, r->events[from + ok].text, copy[ok].len + 1);
        }
        n = ok;
        *out = copy;
    }
    *done = r->done && r->n_events == from + n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int ellm_srv_scheduler_queue_depth(srv_scheduler *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->q_len;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int ellm_srv_scheduler_active(srv_scheduler *s)
{
    pthread_mutex_lock(&s->mu);
    int n = 0;
    for (int i = 0; i < s->n_slots; i++)
        n += s->slots[i].req != NULL;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void ellm_srv_scheduler_drain(srv_scheduler *s, double grace_deadline)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    s->grace_deadline = grace_deadline;
    while (s->q_len > 0) {
        srv_request *r = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        finish_unadmitted(r, SRV_FINISH_SHUTDOWN, "the server is shutting down");
    }
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    s->thread_started = false;
}

void ellm_srv_scheduler_free(srv_scheduler *s)
{
    if (!s)
        return;
    ellm_srv_scheduler_drain(s, 0);
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        if (s->slots[i].req) /* only when the thread never ran */
            finish_slot(s, &s->slots[i], SRV_FINISH_SHUTDOWN, "the server is shutting down");
        edgellm_context_free(s->slots[i].ctx);
        edgellm_context_free(s->slots[i].draft_ctx);
        free(s->slots[i].verify);
    }
    edgellm_model_free(s->draft_model);
    edgellm_batch_free(s->batch);
    free(s->slots);
    free(s->queue);
    free(s->plan_ctx);
    free(s->plan_tokens);
    free(s->plan_n);
    free(s->plan_slot);
    free(s->biased);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
