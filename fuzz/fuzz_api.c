/* libFuzzer target: the public API (include/edgellm.h) called the way a careless or hostile
 * application calls it. The input is a sequence of calls on two contexts of the shared aidreams
 * model: step-by-step generations begun from random text or token ids (negative, out of the
 * vocabulary) with sampler parameters at their extremes, stop strings empty or huge and grammars
 * compiled from random bytes; slices of random sizes; finish at any point; eval, eval_batch,
 * embed, truncate, copy_cache and edgellm_generate on contexts whose generation is open; cancels;
 * tokenization of random bytes; a context freed under its generation or under the generation
 * drafting with it (between calls or from on_token), a grammar freed under the generations using
 * it, the model's handle freed under everything made from it; callbacks that stop or re-enter
 * at random tokens. Beyond "no crash, no leak, no UB" (ASan + UBSan, fatal), every call
 * is held to the contract the header documents: its status, BUSY while a generation is open, the
 * cache unchanged by a refused call, tokens handed out inside the vocabulary, the result's count
 * equal to the tokens the callback saw, a handle left alone by a refused begin.
 * The input is read as calls: one byte per call (bit 7 picks the context, the low four bits the
 * call, see LLVMFuzzerTestOneInput), then the call's arguments in the take_* encodings below;
 * zeros once the input runs out. fuzz/run.sh has two seeds spelled out. */
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgellm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the line, so that a crash file's report says which contract broke. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_api: %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond,   \
                    edgellm_last_error());                                                         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum { N_CTX = 48, N_BATCH = 16, MAX_IDS = 80, MAX_GRAMMARS = 4, HUGE_STOP = 5000 };

static edgellm_model *model;
static int32_t n_vocab, n_embd;

typedef struct input {
    const uint8_t *data;
    size_t size;
} input;

/* The next n bytes (zeros once the input runs out). */
static void take(input *in, void *out, size_t n)
{
    size_t k = n < in->size ? n : in->size;
    memset(out, 0, n);
    memcpy(out, in->data, k);
    in->data += k;
    in->size -= k;
}

static uint8_t take_u8(input *in)
{
    uint8_t v;
    take(in, &v, sizeof v);
    return v;
}

static int32_t take_i32(input *in)
{
    int32_t v;
    take(in, &v, sizeof v);
    return v;
}

/* Counts near the interesting edges more often than anywhere else. */
static int32_t take_count(input *in)
{
    static const int32_t edges[] = {INT32_MIN, -1, 0, 1, 2, 3, 7, 16, 47, 48, 49, INT32_MAX};
    uint8_t b = take_u8(in);
    if (b < 2 * (sizeof edges / sizeof *edges))
        return edges[b % (sizeof edges / sizeof *edges)];
    return b < 200 ? b % 24 : take_i32(in);
}

static float take_float(input *in)
{
    static const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 1e-30f, 1e30f, -1e30f};
    uint8_t b = take_u8(in);
    if (b < 8)
        return edges[b];
    if (b == 8)
        return NAN;
    if (b == 9)
        return INFINITY;
    if (b == 10)
        return -INFINITY;
    if (b < 200)
        return (float)b / 64.0f;
    float v;
    take(in, &v, sizeof v);
    return v;
}

/* Token ids: in the vocabulary mostly, sometimes negative or past its end. */
static edgellm_token take_token(input *in)
{
    uint8_t kind = take_u8(in);
    int16_t raw;
    take(in, &raw, sizeof raw);
    if (kind < 224)
        return (edgellm_token)((uint16_t)raw % (uint32_t)n_vocab);
    return kind & 1 ? -1 - (uint16_t)raw : n_vocab + (uint16_t)raw;
}

static bool all_in_vocab(const edgellm_token *ids, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab)
            return false;
    return true;
}

/* What a callback does at its token number stop_at: stop, or call back into the API. */
typedef enum callback_act {
    ACT_STOP,
    ACT_EVAL_OWN,
    ACT_NEXT_OWN,
    ACT_FINISH_OWN,
    ACT_TRUNCATE_OWN,
    ACT_CANCEL_OWN,
    ACT_FREE_DRAFT, /* the application frees the generation's draft context (and makes another) */
    ACT_COUNT
} callback_act;

struct fuzz_state;

/* One context and the generation open on it. */
typedef struct slot {
    struct fuzz_state *state;
    edgellm_context *ctx;
    edgellm_generation *gen;
    bool ended;        /* the generation said so (*ended of its last call) */
    bool cancel_owed;  /* a cancel landed and no call of the generation has run since */
    int32_t generated; /* tokens (>= 0) the callback saw */
    int32_t last_prompt_left;
    bool text_tail_seen; /* the token -1 call: only finish makes it, once */
    int32_t stop_at;
    callback_act act;
    bool one_shot;          /* inside edgellm_generate: no handle to re-enter */
    edgellm_context *draft; /* the draft context of its generation (NULL once freed) */
} slot;

typedef struct fuzz_state {
    slot slots[2];
    edgellm_grammar *grammars[MAX_GRAMMARS];
    int n_grammars;
    edgellm_batch *batch;
} fuzz_state;

static void free_context(struct fuzz_state *fs, slot *s);

static int on_token(void *user, edgellm_token token, const char *text, size_t len)
{
    slot *s = user;
    REQUIRE(len == 0 || text != NULL);
    if (token < 0) {
        REQUIRE(token == -1 && len > 0 && !s->text_tail_seen);
        s->text_tail_seen = true;
        return 0;
    }
    REQUIRE(token < n_vocab);
    REQUIRE(!s->text_tail_seen);
    s->generated++;
    if (s->generated != s->stop_at)
        return 0;
    int32_t n_past = edgellm_context_n_past(s->ctx);
    edgellm_token t = 1;
    int ended = -1;
    switch (s->act) {
    case ACT_STOP: return 1;
    case ACT_EVAL_OWN: REQUIRE(edgellm_eval(s->ctx, &t, 1, 0) == EDGELLM_ERR_BUSY); break;
    case ACT_NEXT_OWN:
        if (s->one_shot)
            break;
        REQUIRE(edgellm_generation_next(s->gen, 1, &ended) == EDGELLM_ERR_BUSY);
        REQUIRE(ended == 0);
        break;
    case ACT_FINISH_OWN:
        if (s->one_shot)
            break;
        REQUIRE(edgellm_generation_finish(s->gen, NULL) == EDGELLM_ERR_BUSY);
        break;
    case ACT_TRUNCATE_OWN: REQUIRE(edgellm_context_truncate(s->ctx, 0) == EDGELLM_ERR_BUSY); break;
    case ACT_CANCEL_OWN:
        /* A call of the generation runs: the cancel lands and stops it. */
        REQUIRE(edgellm_context_cancel(s->ctx) == 1);
        s->cancel_owed = true;
        break;
    case ACT_FREE_DRAFT:
        /* The generation goes on without proposals: nothing it handed out or cached changes. */
        for (int i = 0; i < 2; i++)
            if (s->draft && s->draft == s->state->slots[i].ctx)
                free_context(s->state, &s->state->slots[i]);
        break;
    case ACT_COUNT: break;
    }
    REQUIRE(edgellm_context_n_past(s->ctx) == n_past);
    return 0;
}

static void check_cache(const slot *s)
{
    int32_t n = -1;
    const edgellm_token *ids = edgellm_context_tokens(s->ctx, &n);
    REQUIRE(n >= 0 && n <= N_CTX && n == edgellm_context_n_past(s->ctx));
    REQUIRE(n == 0 || (ids && all_in_vocab(ids, n)));
}

static edgellm_context *new_context(void)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = N_CTX;
    cp.n_batch = N_BATCH;
    cp.n_threads = 1;
    edgellm_context *ctx = NULL;
    REQUIRE(edgellm_context_create(model, &cp, &ctx) == EDGELLM_OK && ctx);
    return ctx;
}

/* Stop strings that live as long as the input's run (begin copies them anyway). */
typedef struct stop_strings {
    char *texts[3];
    const char *list[3];
} stop_strings;

static void take_stop_strings(input *in, stop_strings *ss, edgellm_generate_params *p)
{
    uint8_t how = take_u8(in);
    int n = how % 4;
    for (int i = 0; i < 3; i++) {
        size_t len = i < n ? take_u8(in) % 8 : 0;
        if (i < n && (how & 0x40) && i == 0)
            len = HUGE_STOP;
        ss->texts[i] = malloc(len + 1);
        REQUIRE(ss->texts[i]);
        for (size_t k = 0; k < len; k++)
            ss->texts[i][k] = len == HUGE_STOP ? 'a' : (char)(take_u8(in) | 1);
        ss->texts[i][len] = '\0';
        ss->list[i] = ss->texts[i];
    }
    p->stop_strings = how & 0x80 ? NULL : ss->list;
    p->n_stop_strings = how & 0x20 ? -n : n;
}

static void free_stop_strings(stop_strings *ss)
{
    for (int i = 0; i < 3; i++)
        free(ss->texts[i]);
}

static edgellm_generate_params take_params(input *in, fuzz_state *fs, slot *s, stop_strings *ss)
{
    edgellm_generate_params p = edgellm_generate_default_params();
    uint8_t flags = take_u8(in);
    p.max_tokens = take_count(in);
    p.add_bos = (int)(take_u8(in) % 4) - 1;
    p.parse_special = flags & 1;
    p.keep_cache = (flags >> 1) & 1;
    if (flags & 4) {
        p.sampling.temperature = take_float(in);
        p.sampling.top_k = take_count(in);
        p.sampling.top_p = take_float(in);
        p.sampling.min_p = take_float(in);
        p.sampling.repeat_penalty = take_float(in);
        p.sampling.repeat_last_n = take_count(in);
        p.sampling.presence_penalty = take_float(in);
        p.sampling.frequency_penalty = take_float(in);
        p.sampling.seed = (uint64_t)take_i32(in);
    } else {
        p.sampling.temperature = 0;
    }
    take_stop_strings(in, ss, &p);
    if (flags & 8)
        p.lookup_ngram = take_count(in);
    if (flags & 16) {
        /* The other context, or (careless) the generation's own. */
        p.draft = flags & 64 ? s->ctx : fs->slots[s == &fs->slots[0]].ctx;
        p.draft_max = take_count(in);
        p.draft_min = take_count(in);
    }
    if ((flags & 32) && fs->n_grammars > 0)
        p.grammar = fs->grammars[take_u8(in) % fs->n_grammars];
    p.on_token = on_token;
    p.user_data = s;
    s->stop_at = take_count(in);
    s->act = (callback_act)(take_u8(in) % ACT_COUNT);
    return p;
}

/* After a begin: the handle and the slot's bookkeeping. */
/* Whether params' draft context has a generation of its own open (begin refuses it). */
static bool draft_busy(const fuzz_state *fs, const edgellm_generate_params *p)
{
    for (int i = 0; i < 2; i++)
        if (p->draft && p->draft == fs->slots[i].ctx && fs->slots[i].gen)
            return true;
    return false;
}

/* Whether the other slot's open generation drafts with s's context: s may not open one then. */
static bool drafting_for_other(const slot *s)
{
    const slot *other = &s->state->slots[s == &s->state->slots[0]];
    return other->gen && other->draft == s->ctx;
}

static void begun(slot *s, edgellm_status st, edgellm_generation *g, edgellm_generation *before,
                  bool busy_draft, const edgellm_context *draft)
{
    if (drafting_for_other(s)) {
        REQUIRE(st == EDGELLM_ERR_BUSY && g == before);
        return;
    }
    if (before) {
        /* The context was busy: the open generation's handle stays where it was. */
        REQUIRE(st == EDGELLM_ERR_BUSY && g == before);
        return;
    }
    REQUIRE(st != EDGELLM_ERR_BUSY || busy_draft);
    REQUIRE((st == EDGELLM_OK) == (g != NULL));
    if (st != EDGELLM_OK)
        return;
    s->gen = g;
    s->draft = (edgellm_context *)draft;
    s->ended = false;
    s->cancel_owed = false;
    s->generated = 0;
    s->text_tail_seen = false;
    s->last_prompt_left = edgellm_generation_prompt_left(g);
    REQUIRE(s->last_prompt_left > 0);
}

static void op_begin_text(input *in, fuzz_state *fs, slot *s)
{
    stop_strings ss;
    edgellm_generate_params p = take_params(in, fs, s, &ss);
    char text[64];
    size_t len = take_u8(in) % sizeof text;
    take(in, text, len);
    text[len] = '\0';
    edgellm_generation *g = s->gen;
    int32_t n_past = edgellm_context_n_past(s->ctx);
    edgellm_status st = edgellm_generation_begin(s->ctx, text, &p, &g);
    REQUIRE(edgellm_context_n_past(s->ctx) == n_past); /* nothing evaluated yet */
    begun(s, st, g, s->gen, draft_busy(s->state, &p), p.draft);
    free_stop_strings(&ss);
}

static void op_begin_tokens(input *in, fuzz_state *fs, slot *s)
{
    stop_strings ss;
    edgellm_generate_params p = take_params(in, fs, s, &ss);
    edgellm_token ids[MAX_IDS];
    int32_t n = take_count(in);
    int32_t n_given = n > 0 ? (n < MAX_IDS ? n : MAX_IDS) : 0;
    for (int32_t i = 0; i < n_given; i++)
        ids[i] = take_token(in);
    edgellm_generation *g = s->gen;
    int32_t n_past = edgellm_context_n_past(s->ctx);
    edgellm_status st = edgellm_generation_begin_tokens(s->ctx, n_given ? ids : NULL, n_given, &p,
                                                        &g);
    REQUIRE(edgellm_context_n_past(s->ctx) == n_past);
    if (!s->gen && !drafting_for_other(s) && n_given == 0)
        REQUIRE(st == EDGELLM_ERR_INVALID_ARGUMENT);
    begun(s, st, g, s->gen, draft_busy(s->state, &p), p.draft);
    free_stop_strings(&ss);
}

/* prefill (prompt_only) or next with a random count. */
static void op_slice(input *in, slot *s, bool prompt_only)
{
    int32_t n = take_count(in);
    int ended = -1;
    int32_t generated = s->generated;
    bool cancel_owed = s->cancel_owed;
    s->cancel_owed = false; /* set again when the callback cancels */
    edgellm_status st = prompt_only ? edgellm_generation_prefill(s->gen, n, &ended)
                                    : edgellm_generation_next(s->gen, n, &ended);
    REQUIRE(ended == 0 || ended == 1);
    if (!s->gen) {
        REQUIRE(st == EDGELLM_ERR_INVALID_ARGUMENT && ended == 1);
        return;
    }
    if (!s->ctx) {
        /* Its context was freed under it. */
        REQUIRE(st == EDGELLM_ERR_INVALID_ARGUMENT);
        return;
    }
    if (n <= 0) {
        REQUIRE(st == EDGELLM_ERR_INVALID_ARGUMENT && ended == (int)s->ended);
        s->cancel_owed = cancel_owed;
        return;
    }
    REQUIRE(st != EDGELLM_ERR_BUSY);
    if (s->ended) {
        /* Nothing runs after the end. */
        REQUIRE(ended == 1 && s->generated == generated);
        return;
    }
    if (st != EDGELLM_OK)
        REQUIRE(ended == 1);
    if (cancel_owed)
        REQUIRE(st == EDGELLM_ERR_CANCELLED && ended == 1);
    /* A cancel the callback made is kept for the next call when this one did not end. */
    s->cancel_owed = s->cancel_owed && !ended;
    s->ended = ended;
    int32_t left = edgellm_generation_prompt_left(s->gen);
    REQUIRE(left >= 0 && left <= s->last_prompt_left);
    if (prompt_only) {
        REQUIRE(s->generated == generated);
        if (st == EDGELLM_OK)
            REQUIRE(left == 0 || s->last_prompt_left - left >= (n < left ? n : 1));
    } else if (st == EDGELLM_OK && !ended) {
        REQUIRE(left == 0 && s->generated - generated >= n);
    }
    s->last_prompt_left = left;
    check_cache(s);
}

static void op_finish(input *in, slot *s)
{
    edgellm_generate_result r;
    memset(&r, 0xA5, sizeof r);
    bool with_result = take_u8(in) & 1;
    edgellm_status st = edgellm_generation_finish(s->gen, with_result ? &r : NULL);
    if (!s->gen) {
        REQUIRE(st == EDGELLM_OK);
        if (with_result)
            REQUIRE(r.n_generated == 0 && r.stop_reason == EDGELLM_STOP_NONE);
        return;
    }
    REQUIRE(st != EDGELLM_ERR_BUSY);
    if (with_result && s->ctx) {
        REQUIRE(r.n_generated == s->generated);
        REQUIRE(r.stop_reason >= EDGELLM_STOP_NONE && r.stop_reason <= EDGELLM_STOP_CANCELLED);
        REQUIRE((st == EDGELLM_ERR_CANCELLED) == (r.stop_reason == EDGELLM_STOP_CANCELLED));
        if (!s->ended)
            REQUIRE(r.stop_reason == EDGELLM_STOP_CALLBACK && st == EDGELLM_OK);
        REQUIRE(r.n_cached_tokens >= 0 && r.n_cached_tokens <= r.n_prompt_tokens);
    }
    s->gen = NULL;
    s->draft = NULL;
    if (s->ctx) {
        check_cache(s);
        /* The context is free again. */
        REQUIRE(edgellm_context_cancel(s->ctx) == 0);
        REQUIRE(edgellm_context_truncate(s->ctx, edgellm_context_n_past(s->ctx)) == EDGELLM_OK);
    }
}

/* A call that would change the cache: BUSY (and nothing changed) while a generation is open. */
static void expect_refused_if_busy(const slot *s, edgellm_status st, int32_t n_past_before)
{
    if (s->gen) {
        REQUIRE(st == EDGELLM_ERR_BUSY);
        REQUIRE(edgellm_context_n_past(s->ctx) == n_past_before);
    } else {
        REQUIRE(st != EDGELLM_ERR_BUSY);
    }
    check_cache(s);
}

static int32_t take_ids(input *in, edgellm_token *ids)
{
    int32_t n = take_count(in);
    for (int32_t i = 0; i < MAX_IDS; i++)
        ids[i] = i < n ? take_token(in) : 0;
    return n;
}

static void op_eval(input *in, slot *s)
{
    edgellm_token ids[MAX_IDS];
    int32_t n = take_ids(in, ids);
    int all_logits = take_u8(in) & 1;
    int32_t given = n < MAX_IDS ? n : MAX_IDS;
    int32_t n_past = edgellm_context_n_past(s->ctx);
    edgellm_status st = edgellm_eval(s->ctx, ids, given, all_logits);
    expect_refused_if_busy(s, st, n_past);
    if (st == EDGELLM_OK)
        REQUIRE(given > 0 && all_in_vocab(ids, given) &&
                edgellm_context_n_past(s->ctx) == n_past + given &&
                edgellm_get_logits(s->ctx, -1) != NULL);
    else if (given <= 0 || !all_in_vocab(ids, given))
        REQUIRE(edgellm_context_n_past(s->ctx) == n_past);
}

static void op_eval_batch(input *in, fuzz_state *fs)
{
    edgellm_token ids[2][MAX_IDS];
    const edgellm_token *lists[2] = {ids[0], ids[1]};
    int32_t counts[2];
    edgellm_context *ctxs[2];
    uint8_t shape = take_u8(in);
    int32_t n_ctxs = shape & 1 ? 2 : 1;
    int32_t past[2];
    for (int i = 0; i < 2; i++) {
        slot *s = &fs->slots[(shape >> (1 + i)) & 1];
        ctxs[i] = s->ctx;
        counts[i] = take_ids(in, ids[i]);
        if (counts[i] > MAX_IDS)
            counts[i] = MAX_IDS;
        past[i] = edgellm_context_n_past(s->ctx);
    }
    edgellm_status st = edgellm_eval_batch(fs->batch, ctxs, lists, counts, n_ctxs);
    /* Contexts are checked in order and the first one's problem is the answer: no tokens, then
     * an open generation (BUSY), then no room. Only a batch whose every context passes those is
     * checked as a whole (the same context twice, tokens outside the vocabulary). */
    bool refused = false, valid = n_ctxs == 1 || ctxs[0] != ctxs[1];
    for (int i = 0; i < n_ctxs && !refused; i++) {
        bool busy = fs->slots[(shape >> (1 + i)) & 1].gen != NULL;
        if (counts[i] <= 0 || busy || counts[i] > N_CTX - past[i]) {
            REQUIRE(counts[i] <= 0 || !busy || st == EDGELLM_ERR_BUSY);
            refused = true;
        }
        valid &= all_in_vocab(lists[i], counts[i]);
    }
    if (refused || !valid)
        REQUIRE(st != EDGELLM_OK);
    if (st != EDGELLM_OK)
        for (int i = 0; i < n_ctxs; i++)
            REQUIRE(edgellm_context_n_past(ctxs[i]) == past[i]); /* no context changes */
    check_cache(&fs->slots[0]);
    check_cache(&fs->slots[1]);
}

static void op_embed(input *in, slot *s)
{
    edgellm_token ids[MAX_IDS];
    int32_t n = take_ids(in, ids);
    int32_t dim = take_u8(in) & 1 ? n_embd : take_count(in);
    float *out = malloc((size_t)(n_embd + 1) * sizeof *out);
    REQUIRE(out);
    int32_t n_past = edgellm_context_n_past(s->ctx);
    edgellm_status st = edgellm_embed(s->ctx, ids, n < MAX_IDS ? n : MAX_IDS,
                                      dim == n_embd ? out : NULL, dim);
    expect_refused_if_busy(s, st, n_past);
    if (st == EDGELLM_OK) {
        double norm = 0;
        for (int32_t i = 0; i < n_embd; i++) {
            REQUIRE(isfinite(out[i]));
            norm += (double)out[i] * out[i];
        }
        REQUIRE(fabs(norm - 1.0) < 1e-3);
    }
    free(out);
}

static void op_truncate(input *in, slot *s)
{
    int32_t keep = take_count(in);
    int32_t n_past = edgellm_context_n_past(s->ctx);
    edgellm_status st = edgellm_context_truncate(s->ctx, keep);
    if (keep < 0)
        REQUIRE(st == EDGELLM_ERR_INVALID_ARGUMENT && edgellm_context_n_past(s->ctx) == n_past);
    else
        expect_refused_if_busy(s, st, n_past);
    if (st == EDGELLM_OK)
        REQUIRE(edgellm_context_n_past(s->ctx) == (keep < n_past ? keep : n_past));
}

static void op_copy_cache(input *in, fuzz_state *fs)
{
    uint8_t which = take_u8(in);
    slot *dst = &fs->slots[which & 1];
    const slot *src = &fs->slots[(which >> 1) & 1];
    int32_t n_past = edgellm_context_n_past(dst->ctx);
    edgellm_status st = edgellm_context_copy_cache(dst->ctx, src->ctx);
    if (dst == src) {
        /* Onto itself: refused (the header wants two contexts), busy or not. */
        REQUIRE(st == EDGELLM_ERR_INVALID_ARGUMENT && edgellm_context_n_past(dst->ctx) == n_past);
        return;
    }
    expect_refused_if_busy(dst, st, n_past);
    if (st == EDGELLM_OK && dst != src)
        REQUIRE(edgellm_context_n_past(dst->ctx) == edgellm_context_n_past(src->ctx));
}

static void op_cancel(slot *s)
{
    int landed = edgellm_context_cancel(s->ctx);
    /* Between calls, a cancel lands only on an open generation that has not ended. */
    REQUIRE(landed == (s->gen && !s->ended));
    if (landed)
        s->cancel_owed = true;
}

static void op_generate(input *in, fuzz_state *fs, slot *s)
{
    stop_strings ss;
    edgellm_generate_params p = take_params(in, fs, s, &ss);
    /* A one-shot generation never leaves this slot's bookkeeping behind. */
    slot saved = *s;
    s->generated = 0;
    s->text_tail_seen = false;
    s->one_shot = true;
    s->draft = p.draft;
    /* Before the call: on_token may free the draft, and a new context may take its address. */
    bool held = drafting_for_other(s), busy_draft = draft_busy(fs, &p);
    int32_t n_past = edgellm_context_n_past(s->ctx);
    edgellm_generate_result r;
    edgellm_status st = edgellm_generate(s->ctx, "Once upon a time", &p, &r);
    if (held)
        REQUIRE(st == EDGELLM_ERR_BUSY && edgellm_context_n_past(s->ctx) == n_past);
    else if (busy_draft && !s->gen)
        REQUIRE(st != EDGELLM_OK);
    else
        expect_refused_if_busy(s, st, n_past);
    if (st == EDGELLM_OK)
        REQUIRE(r.n_generated == s->generated && r.stop_reason != EDGELLM_STOP_NONE &&
                r.stop_reason != EDGELLM_STOP_CANCELLED);
    if (st == EDGELLM_ERR_CANCELLED)
        REQUIRE(r.stop_reason == EDGELLM_STOP_CANCELLED);
    int32_t stop_at = s->stop_at;
    *s = saved;
    s->stop_at = stop_at;
    free_stop_strings(&ss);
}

static void op_tokenize(input *in, const slot *s)
{
    char text[128];
    size_t len = take_u8(in) % sizeof text;
    take(in, text, len);
    int flags = take_u8(in) & 3;
    int32_t cap = take_count(in);
    edgellm_token ids[MAX_IDS];
    int32_t n = -1;
    /* The context's model: the application may have freed its own handle. */
    const edgellm_model *held = edgellm_context_model(s->ctx);
    edgellm_status st = edgellm_tokenize(held, text, len, flags, cap > 0 ? ids : NULL,
                                         cap > MAX_IDS ? MAX_IDS : cap, &n);
    if (st == EDGELLM_OK || st == EDGELLM_ERR_BUFFER_TOO_SMALL) {
        REQUIRE(n >= 0);
        REQUIRE((st == EDGELLM_ERR_BUFFER_TOO_SMALL) == (n > (cap > MAX_IDS ? MAX_IDS : cap)));
        if (st == EDGELLM_OK)
            REQUIRE(all_in_vocab(ids, n));
    }
    /* Any ids back to text: out-of-vocabulary ones are refused, the rest fit the needed size. */
    for (int32_t i = 0; i < MAX_IDS; i++)
        ids[i] = take_token(in);
    int32_t n_ids = take_u8(in) % MAX_IDS;
    char buf[64];
    size_t cap_text = take_u8(in) % sizeof buf, need = 0;
    st = edgellm_detokenize(held, ids, n_ids, flags & 1, buf, cap_text, &need);
    if (!all_in_vocab(ids, n_ids))
        REQUIRE(st == EDGELLM_ERR_INVALID_ARGUMENT);
    else
        REQUIRE(st == (need < cap_text ? EDGELLM_OK : EDGELLM_ERR_BUFFER_TOO_SMALL) ||
                (st == EDGELLM_OK && need == cap_text));
    size_t piece_len = 0;
    st = edgellm_token_to_piece(held, ids[0], buf, cap_text, &piece_len);
    if (ids[0] < 0 || ids[0] >= n_vocab)
        REQUIRE(st == EDGELLM_ERR_INVALID_ARGUMENT);
}

/* Random bytes seldom make a grammar; these do, and random ones cover the parser's refusals. */
static const char *const known_grammars[] = {
    "root ::= [a-z ]+ \".\"",
    "root ::= \"yes\" | \"no\"",
    "root ::= \"{\" ( [a-z]+ \":\" [0-9]{1,3} )? \"}\"",
    "root ::= \"\\u00e9\"+",
};

static void op_grammar(input *in, fuzz_state *fs)
{
    char text[96];
    uint8_t pick = take_u8(in);
    size_t len = take_u8(in) % sizeof text;
    take(in, text, len);
    if (pick < 4 * (sizeof known_grammars / sizeof *known_grammars)) {
        const char *known = known_grammars[pick % (sizeof known_grammars / sizeof *known_grammars)];
        len = strlen(known);
        memcpy(text, known, len);
    }
    if (fs->n_grammars == MAX_GRAMMARS || !model)
        return;
    edgellm_grammar *g = (edgellm_grammar *)&fs; /* any non-NULL: must be reset */
    edgellm_status st = edgellm_grammar_compile(model, text, len, NULL, &g);
    REQUIRE((st == EDGELLM_OK) == (g != NULL));
    if (g)
        fs->grammars[fs->n_grammars++] = g;
}

/* The application frees the context under its open generation, or under the other context's
 * generation (open, or one-shot when on_token does it) drafting with it, then makes a new one. A
 * new context needs the model's handle: with that freed, the context stays. */
static void free_context(fuzz_state *fs, slot *s)
{
    if (!model)
        return;
    slot *other = &fs->slots[s == &fs->slots[0]];
    if (other->draft == s->ctx)
        other->draft = NULL; /* it goes on without proposals */
    edgellm_context_free(s->ctx);
    s->ctx = NULL;
    if (s->gen) {
        int ended = -1;
        REQUIRE(edgellm_generation_next(s->gen, 1, &ended) == EDGELLM_ERR_INVALID_ARGUMENT &&
                ended == 1);
        REQUIRE(edgellm_generation_prompt_left(s->gen) >= 0);
        edgellm_generate_result r;
        REQUIRE(edgellm_generation_finish(s->gen, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
        s->gen = NULL;
        s->draft = NULL;
    }
    s->ctx = new_context();
}

/* The grammar leaves the list; the generations using it keep it until they finish. */
static void op_free_grammar(input *in, fuzz_state *fs)
{
    if (fs->n_grammars == 0)
        return;
    int i = take_u8(in) % fs->n_grammars;
    edgellm_grammar_free(fs->grammars[i]);
    fs->grammars[i] = fs->grammars[--fs->n_grammars];
}

/* The application's handle goes; the contexts, batch, grammars and generations made from it keep
 * working. The next input loads the model again. */
static void op_free_model(void)
{
    edgellm_model_free(model);
    model = NULL;
}

static void load_model(void)
{
    REQUIRE(edgellm_model_load(EDGELLM_SHARED_DIR "/models/aidreams260K-f32.gguf", NULL, &model) ==
            EDGELLM_OK);
    n_vocab = edgellm_n_vocab(model);
    edgellm_model_info info;
    REQUIRE(edgellm_model_get_info(model, &info) == EDGELLM_OK);
    n_embd = info.n_embd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model)
        load_model();
    input in = {data, size};
    fuzz_state fs;
    memset(&fs, 0, sizeof fs);
    for (int i = 0; i < 2; i++) {
        fs.slots[i].state = &fs;
        fs.slots[i].ctx = new_context();
    }
    edgellm_context_params bp = edgellm_context_default_params();
    bp.n_ctx = N_CTX;
    bp.n_batch = 2 * MAX_IDS;
    bp.n_threads = 1;
    REQUIRE(edgellm_batch_create(model, &bp, &fs.batch) == EDGELLM_OK);
    for (int step = 0; step < 64 && in.size > 0; step++) {
        uint8_t op = take_u8(&in);
        slot *s = &fs.slots[op >> 7];
        switch (op % 16) {
        case 0: op_begin_text(&in, &fs, s); break;
        case 1:
        case 2: op_begin_tokens(&in, &fs, s); break;
        case 3: op_slice(&in, s, true); break;
        case 4:
        case 5: op_slice(&in, s, false); break;
        case 6: op_finish(&in, s); break;
        case 7: op_eval(&in, s); break;
        case 8: op_eval_batch(&in, &fs); break;
        case 9: op_embed(&in, s); break;
        case 10: op_truncate(&in, s); break;
        case 11: op_copy_cache(&in, &fs); break;
        case 12: op_cancel(s); break;
        case 13: op_tokenize(&in, s); break;
        case 14:
            if (op & 0x40)
                op & 0x20 ? op_free_model() : free_context(&fs, s);
            else
                op & 0x20 ? op_free_grammar(&in, &fs) : op_grammar(&in, &fs);
            break;
        default: op_generate(&in, &fs, s); break;
        }
    }
    /* Generations first: they may use the other context as their draft. */
    for (int i = 0; i < 2; i++)
        if (fs.slots[i].gen)
            edgellm_generation_finish(fs.slots[i].gen, NULL);
    for (int i = 0; i < 2; i++)
        edgellm_context_free(fs.slots[i].ctx);
    for (int i = 0; i < fs.n_grammars; i++)
        edgellm_grammar_free(fs.grammars[i]);
    edgellm_batch_free(fs.batch);
    return 0;
}
