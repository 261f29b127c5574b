/* The public API end to end on the shared aidreams model: greedy generation against the
 * reference continuations, streaming, stop strings, KV-prefix reuse, sampling and bad arguments. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "edgellm.h"
#include "test_util.h"

typedef struct collected {
    char text[4096];
    size_t len;
    edgellm_token tokens[512];
    int n_tokens;
    int calls;
    int stop_after; /* return non-zero after this many tokens (0 = never) */
} collected;

static int collect(void *user, edgellm_token token, const char *text, size_t len)
{
    collected *c = user;
    c->calls++;
    if (len > 0 && c->len + len < sizeof c->text) {
        /* Every chunk must start on a character boundary. */
        CHECK(((unsigned char)text[0] & 0xC0) != 0x80);
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    if (token >= 0 && c->n_tokens < 512)
        c->tokens[c->n_tokens++] = token;
    return c->stop_after > 0 && c->n_tokens >= c->stop_after;
}

static edgellm_generate_params greedy_params(collected *c, int max_tokens)
{
    edgellm_generate_params gp = edgellm_generate_default_params();
    gp.max_tokens = max_tokens;
    gp.sampling.temperature = 0;
    gp.on_token = collect;
    gp.user_data = c;
    return gp;
}

static void test_greedy(edgellm_model *m, const test_greedy_case *cases, int n_cases)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_threads = 2;
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK);
    for (int i = 0; ctx && i < n_cases; i++) {
        collected c = {0};
        edgellm_generate_params gp = greedy_params(&c, 48);
        edgellm_generate_result r;
        CHECK(edgellm_generate(ctx, cases[i].prompt, &gp, &r) == EDGELLM_OK);
        CHECK(r.n_generated == 48 && r.stop_reason == EDGELLM_STOP_MAX_TOKENS);
        CHECK_MSG(c.n_tokens == 48 && !memcmp(c.tokens, cases[i].ids, sizeof cases[i].ids),
                  "greedy ids for \"%s\" differ", cases[i].prompt);
        CHECK_MSG(!strcmp(c.text, cases[i].text),
                  "greedy text for \"%s\":\n got  \"%s\"\n want \"%s\"", cases[i].prompt, c.text,
                  cases[i].text);
        /* The streamed text equals the detokenized ids. */
        char detok[4096];
        size_t len;
        CHECK(edgellm_detokenize(m, c.tokens, c.n_tokens, 0, detok, sizeof detok, &len) ==
              EDGELLM_OK);
        CHECK(len == c.len && !memcmp(detok, c.text, len));
        CHECK(r.prefill_seconds >= 0 && r.ttft_seconds >= r.prefill_seconds &&
              r.decode_seconds >= 0);
    }
    edgellm_context_free(ctx);
}

static void test_prefix_reuse_and_stops(edgellm_model *m, const test_greedy_case *gc)
{
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, NULL, &ctx) == EDGELLM_OK);
    if (!ctx)
        return;
    /* Same prompt twice: the second call reuses the cached prompt and gives the same text. */
    collected a = {0}, b = {0};
    edgellm_generate_params gp = greedy_params(&a, 20);
    edgellm_generate_result r1, r2;
    CHECK(edgellm_generate(ctx, gc->prompt, &gp, &r1) == EDGELLM_OK);
    gp.user_data = &b;
    CHECK(edgellm_generate(ctx, gc->prompt, &gp, &r2) == EDGELLM_OK);
    CHECK(r1.n_cached_tokens == 0);
    CHECK_MSG(r2.n_cached_tokens == r2.n_prompt_tokens - 1, "reused %d of %d", r2.n_cached_tokens,
              r2.n_prompt_tokens);
    CHECK(!strcmp(a.text, b.text));

    /* Stop strings: text up to (not including) the stop string, nothing after it. */
    const char *stop_word = "probability";
    const char *at = strstr(gc->text, stop_word);
    CHECK(at != NULL);
    collected s = {0};
    gp = greedy_params(&s, 48);
    const char *stops[] = {"never appears", stop_word};
    gp.stop_strings = stops;
    gp.n_stop_strings = 2;
    CHECK(edgellm_generate(ctx, gc->prompt, &gp, &r1) == EDGELLM_OK);
    CHECK(r1.stop_reason == EDGELLM_STOP_STRING);
    CHECK_MSG(s.len == (size_t)(at - gc->text) && !memcmp(s.text, gc->text, s.len),
              "stop string cut gives \"%s\"", s.text);

    /* The callback stops generation. */
    collected cb = {.stop_after = 5};
    gp = greedy_params(&cb, 48);
    CHECK(edgellm_generate(ctx, gc->prompt, &gp, &r1) == EDGELLM_OK);
    CHECK(r1.stop_reason == EDGELLM_STOP_CALLBACK && r1.n_generated == 5);

    /* keep_cache continues a conversation after what is cached. */
    int32_t before = edgellm_context_n_past(ctx);
    collected k = {0};
    gp = greedy_params(&k, 4);
    gp.keep_cache = 1;
    CHECK(edgellm_generate(ctx, " and then", &gp, &r1) == EDGELLM_OK);
    CHECK(edgellm_context_n_past(ctx) > before);
    edgellm_context_free(ctx);
}

/* The prompt's tokens as edgellm_generate makes them (BOS as the model wants). */
static int prompt_tokens(edgellm_model *m, const char *text, int bos, edgellm_token *out, int cap)
{
    int32_t n = 0;
    int flags = bos ? EDGELLM_TOKENIZE_ADD_BOS : 0;
    CHECK(edgellm_tokenize(m, text, strlen(text), flags, out, cap, &n) == EDGELLM_OK);
    return n;
}

/* A generation that ends at max_tokens makes no pass over its last token; a keep_cache
 * continuation evaluates it first, so the continuation is what one call over the whole token
 * sequence gives. */
static void test_last_token_pending(edgellm_model *m, const test_greedy_case *gc)
{
    edgellm_context *a = NULL, *b = NULL;
    CHECK(edgellm_context_create(m, NULL, &a) == EDGELLM_OK);
    CHECK(edgellm_context_create(m, NULL, &b) == EDGELLM_OK);
    if (!a || !b) {
        edgellm_context_free(a);
        edgellm_context_free(b);
        return;
    }
    collected first = {0}, next = {0}, whole = {0};
    edgellm_generate_params gp = greedy_params(&first, 6);
    edgellm_generate_result r;
    CHECK(edgellm_generate(a, gc->prompt, &gp, &r) == EDGELLM_OK);
    CHECK(r.stop_reason == EDGELLM_STOP_MAX_TOKENS && r.n_generated == 6);
    CHECK_MSG(r.n_target_passes == 5, "%d passes for 6 tokens", r.n_target_passes);
    CHECK(edgellm_context_n_past(a) == r.n_prompt_tokens + 5);
    CHECK(!strncmp(first.text, gc->text, first.len));
    int32_t n_first_prompt = r.n_prompt_tokens;

    const char *more = " and then";
    gp = greedy_params(&next, 4);
    gp.keep_cache = 1;
    CHECK(edgellm_generate(a, more, &gp, &r) == EDGELLM_OK);
    CHECK(r.n_generated == 4 && r.n_target_passes == 3);
    CHECK_MSG(edgellm_context_n_past(a) == n_first_prompt + 6 + r.n_prompt_tokens + 3,
              "cache %d after %d + 6 + %d + 3 tokens", edgellm_context_n_past(a), n_first_prompt,
              r.n_prompt_tokens);

    /* The same sequence in one call on a fresh context. */
    edgellm_token seq[512];
    int n = prompt_tokens(m, gc->prompt, edgellm_add_bos_default(m), seq, 256);
    CHECK(n == n_first_prompt);
    for (int i = 0; i < first.n_tokens; i++)
        seq[n++] = first.tokens[i];
    n += prompt_tokens(m, more, 0, seq + n, 128);
    gp = greedy_params(&whole, 4);
    CHECK(edgellm_generate_tokens(b, seq, n, &gp, &r) == EDGELLM_OK);
    CHECK_MSG(next.n_tokens == whole.n_tokens &&
                  !memcmp(next.tokens, whole.tokens, sizeof *next.tokens * (size_t)next.n_tokens),
              "continued \"%s\", in one call \"%s\"", next.text, whole.text);

    /* A continuation refused for want of room keeps the token owed: a shorter one gets it. */
    collected refused = {0}, shorter = {0};
    CHECK(edgellm_generate(b, gc->prompt, &gp, &r) == EDGELLM_OK); /* 4 tokens, 3 passes */
    int32_t owed_at = edgellm_context_n_past(b);
    static char too_long[8192];
    for (size_t i = 0; i + 2 < sizeof too_long; i += 2)
        memcpy(too_long + i, " a", 2);
    gp = greedy_params(&refused, 2);
    gp.keep_cache = 1;
    CHECK(edgellm_generate(b, too_long, &gp, &r) == EDGELLM_ERR_CONTEXT_FULL);
    CHECK(edgellm_context_n_past(b) == owed_at);
    gp.user_data = &shorter;
    CHECK(edgellm_generate(b, more, &gp, &r) == EDGELLM_OK);
    CHECK_MSG(edgellm_context_n_past(b) == owed_at + 1 + r.n_prompt_tokens + 1,
              "cache %d after %d + 1 + %d + 1 tokens", edgellm_context_n_past(b), owed_at,
              r.n_prompt_tokens);

    /* Anything else that changes the cache forgets the token. */
    collected again = {0};
    gp = greedy_params(&again, 2);
    CHECK(edgellm_generate(b, gc->prompt, &gp, &r) == EDGELLM_OK);
    int32_t n_past = edgellm_context_n_past(b);
    CHECK(edgellm_context_truncate(b, n_past) == EDGELLM_OK);
    gp.keep_cache = 1;
    CHECK(edgellm_generate(b, more, &gp, &r) == EDGELLM_OK);
    CHECK(edgellm_context_n_past(b) == n_past + r.n_prompt_tokens + 1);
    edgellm_context_free(a);
    edgellm_context_free(b);
}

static void test_sampling_reproducible(edgellm_model *m, const test_greedy_case *gc)
{
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, NULL, &ctx) == EDGELLM_OK);
    if (!ctx)
        return;
    static collected runs[3];
    uint64_t seeds[3] = {42, 42, 7};
    for (int i = 0; i < 3; i++) {
        edgellm_generate_params gp = greedy_params(&runs[i], 40);
        gp.sampling = edgellm_sampler_default_params();
        gp.sampling.temperature = 1.2f;
        gp.sampling.top_k = 0;
        gp.sampling.top_p = 1.0f;
        gp.sampling.min_p = 0;
        gp.sampling.seed = seeds[i];
        CHECK(edgellm_generate(ctx, gc->prompt, &gp, NULL) == EDGELLM_OK);
    }
    CHECK_MSG(!strcmp(runs[0].text, runs[1].text), "same seed, different text");
    CHECK_MSG(strcmp(runs[0].text, runs[2].text) != 0, "different seeds, same text");
    edgellm_context_free(ctx);
}

static void test_eval_api(edgellm_model *m)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 16;
    cp.n_batch = 4;
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK);
    if (!ctx)
        return;
    edgellm_token ids[20];
    for (int i = 0; i < 20; i++)
        ids[i] = 10 + i;
    /* 10 tokens in chunks of 4; then more than fits fails and leaves the cache as it was. */
    CHECK(edgellm_eval(ctx, ids, 10, 0) == EDGELLM_OK);
    CHECK(edgellm_context_n_past(ctx) == 10);
    CHECK(edgellm_get_logits(ctx, -1) != NULL);
    CHECK(edgellm_eval(ctx, ids, 7, 0) == EDGELLM_ERR_CONTEXT_FULL);
    CHECK(strstr(edgellm_last_error(), "context") != NULL);
    CHECK(edgellm_context_n_past(ctx) == 10);
    int32_t n = 0;
    const edgellm_token *cached = edgellm_context_tokens(ctx, &n);
    CHECK(n == 10 && cached[9] == ids[9]);
    edgellm_token bad = 100000;
    CHECK(edgellm_eval(ctx, &bad, 1, 0) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_eval(ctx, ids, 5, 1) == EDGELLM_ERR_INVALID_ARGUMENT); /* > n_batch */
    CHECK(edgellm_context_truncate(ctx, 2) == EDGELLM_OK && edgellm_context_n_past(ctx) == 2);
    CHECK(edgellm_eval(ctx, ids, 3, 1) == EDGELLM_OK);
    CHECK(edgellm_get_logits(ctx, 0) && edgellm_get_logits(ctx, 2) && !edgellm_get_logits(ctx, 3));
    edgellm_context_free(ctx);

    cp.n_ctx = 100000;
    CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(edgellm_last_error(), "longer than the model") != NULL);

    /* A prompt longer than the context is refused with a message saying so. */
    cp.n_ctx = 8;
    CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK);
    collected c = {0};
    edgellm_generate_params gp = greedy_params(&c, 4);
    CHECK(edgellm_generate(ctx, "a prompt that is much longer than eight tokens for sure", &gp,
                           NULL) == EDGELLM_ERR_CONTEXT_FULL);
    CHECK(strstr(edgellm_last_error(), "prompt") != NULL);
    edgellm_context_free(ctx);
}

static edgellm_token argmax(const float *logits, int32_t n)
{
    edgellm_token best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/*
 * Continuous batching: every reference prompt joins the batch one step after the previous one
 * (so prefills and single-token decodes share passes), and each must still produce exactly the
 * reference greedy continuation and the same logits bytes as evaluating it alone.
 */
static void test_eval_batch(edgellm_model *m, const test_greedy_case *cases, int n_cases)
{
    enum { STEPS = 16 };
    int32_t n_vocab = edgellm_n_vocab(m);
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = 128;
    cp.n_threads = 2;
    edgellm_context *ctx[8] = {0}, *alone = NULL;
    edgellm_batch *bt = NULL;
    CHECK(edgellm_batch_create(m, &cp, &bt) == EDGELLM_OK);
    /* The sequences only run through the batch: no threads or scratch of their own. */
    edgellm_context_params slot = cp;
    slot.n_threads = 1;
    slot.n_batch = 1;
    edgellm_token prompt[8][64];
    int32_t n_prompt[8], n_done[8] = {0};
    edgellm_token next[8];
    for (int i = 0; i < n_cases; i++) {
        CHECK(edgellm_context_create(m, &slot, &ctx[i]) == EDGELLM_OK);
        CHECK(edgellm_tokenize(m, cases[i].prompt, strlen(cases[i].prompt),
                               EDGELLM_TOKENIZE_ADD_BOS, prompt[i], 64,
                               &n_prompt[i]) == EDGELLM_OK);
    }
    CHECK(edgellm_context_create(m, &cp, &alone) == EDGELLM_OK);
    if (!ctx[n_cases - 1] || !alone)
        return;
    float *logits_alone = malloc((size_t)n_vocab * sizeof *logits_alone);
    for (int step = 0; step < n_cases + STEPS; step++) {
        edgellm_context *batch[8];
        const edgellm_token *toks[8];
        int32_t counts[8];
        int idx[8], n = 0;
        for (int i = 0; i < n_cases; i++) {
            if (step < i || n_done[i] >= STEPS)
                continue;
            batch[n] = ctx[i];
            toks[n] = step == i ? prompt[i] : &next[i];
            counts[n] = step == i ? n_prompt[i] : 1;
            idx[n++] = i;
        }
        if (n == 0)
            break;
        CHECK_MSG(edgellm_eval_batch(bt, batch, toks, counts, n) == EDGELLM_OK, "step %d: %s", step,
                  edgellm_last_error());
        for (int k = 0; k < n; k++) {
            int i = idx[k];
            next[i] = argmax(edgellm_get_logits(ctx[i], -1), n_vocab);
            CHECK_MSG(next[i] == cases[i].ids[n_done[i]], "prompt %d token %d: %d, expected %d", i,
                      n_done[i], next[i], cases[i].ids[n_done[i]]);
            n_done[i]++;
        }
    }
    /* The same sequence evaluated alone gives the same bytes. */
    for (int i = 0; i < n_cases; i++) {
        int32_t n_cached = 0;
        const edgellm_token *cached = edgellm_context_tokens(ctx[i], &n_cached);
        CHECK(n_cached == n_prompt[i] + STEPS - 1);
        CHECK(edgellm_context_truncate(alone, 0) == EDGELLM_OK);
        CHECK(edgellm_eval(alone, cached, n_cached, 0) == EDGELLM_OK);
        memcpy(logits_alone, edgellm_get_logits(alone, -1), (size_t)n_vocab * sizeof(float));
        CHECK_MSG(
            !memcmp(logits_alone, edgellm_get_logits(ctx[i], -1), (size_t)n_vocab * sizeof(float)),
            "prompt %d: batched logits differ from evaluating alone", i);
    }

    /* Refusals leave every context as it was. */
    edgellm_context *dup[2] = {ctx[0], ctx[0]};
    const edgellm_token *dt[2] = {next, next};
    int32_t dn[2] = {1, 1};
    int32_t before = edgellm_context_n_past(ctx[0]);
    CHECK(edgellm_eval_batch(bt, dup, dt, dn, 2) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(edgellm_last_error(), "share") != NULL);
    edgellm_token many[200] = {0};
    const edgellm_token *mt[2] = {next, many};
    int32_t mn[2] = {1, 129};
    edgellm_context *two[2] = {ctx[0], ctx[1]};
    CHECK(edgellm_eval_batch(bt, two, mt, mn, 2) != EDGELLM_OK);
    edgellm_token bad = -5;
    const edgellm_token *bad_t[2] = {next, &bad};
    int32_t bn[2] = {1, 1};
    CHECK(edgellm_eval_batch(bt, two, bad_t, bn, 2) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_context_n_past(ctx[0]) == before);
    CHECK(edgellm_eval_batch(NULL, two, bad_t, bn, 2) == EDGELLM_ERR_INVALID_ARGUMENT);
    /* A context longer than the batch serves is refused. */
    edgellm_context_params shorter = cp;
    shorter.n_ctx = 32;
    edgellm_batch *short_batch = NULL;
    CHECK(edgellm_batch_create(m, &shorter, &short_batch) == EDGELLM_OK);
    CHECK(edgellm_eval_batch(short_batch, two, dt, dn, 1) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(edgellm_last_error(), "longer context") != NULL);
    edgellm_batch_free(short_batch);
    edgellm_batch_free(bt);

    free(logits_alone);
    edgellm_context_free(alone);
    for (int i = 0; i < n_cases; i++)
        edgellm_context_free(ctx[i]);
}

/* A context given all logits in a batch pass holds the rows edgellm_eval(all_logits) gives, next
 * to a context that keeps only its last row; a copied cache continues exactly as the original. */
static void test_batch_all_logits_and_copy(edgellm_model *m, const test_greedy_case *gc)
{
    int32_t n_vocab = edgellm_n_vocab(m);
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = 64;
    cp.n_threads = 2;
    edgellm_context_params slot = cp;
    slot.n_threads = 1;
    slot.n_batch = 1;
    edgellm_batch *bt = NULL;
    edgellm_context *scored = NULL, *plain = NULL, *alone = NULL, *copy = NULL;
    CHECK(edgellm_batch_create(m, &cp, &bt) == EDGELLM_OK);
    CHECK(edgellm_context_create(m, &slot, &scored) == EDGELLM_OK);
    CHECK(edgellm_context_create(m, &slot, &plain) == EDGELLM_OK);
    CHECK(edgellm_context_create(m, &slot, &copy) == EDGELLM_OK);
    CHECK(edgellm_context_create(m, &cp, &alone) == EDGELLM_OK);
    if (!bt || !scored || !plain || !copy || !alone)
        return;
    edgellm_token prompt[64];
    int32_t n = 0;
    CHECK(edgellm_tokenize(m, gc->prompt, strlen(gc->prompt), EDGELLM_TOKENIZE_ADD_BOS, prompt, 64,
                           &n) == EDGELLM_OK);
    CHECK(edgellm_context_set_batch_all_logits(scored, 1) == EDGELLM_OK);
    edgellm_context *both[2] = {plain, scored};
    const edgellm_token *toks[2] = {prompt, prompt};
    int32_t counts[2] = {n, n};
    CHECK_MSG(edgellm_eval_batch(bt, both, toks, counts, 2) == EDGELLM_OK, "%s",
              edgellm_last_error());
    CHECK(edgellm_eval(alone, prompt, n, 1) == EDGELLM_OK);
    size_t row = (size_t)n_vocab * sizeof(float);
    for (int32_t i = 0; i < n; i++) {
        const float *got = edgellm_get_logits(scored, i), *want = edgellm_get_logits(alone, i);
        CHECK_MSG(got && want && !memcmp(got, want, row), "position %d of %d", i, n);
    }
    CHECK(edgellm_get_logits(plain, 0) == NULL || n == 1);
    CHECK(!memcmp(edgellm_get_logits(plain, -1), edgellm_get_logits(alone, -1), row));

    /* The copy has the tokens and the last logits, and its next step equals the original's. */
    CHECK(edgellm_context_copy_cache(copy, scored) == EDGELLM_OK);
    int32_t n_copy = 0;
    const edgellm_token *copied = edgellm_context_tokens(copy, &n_copy);
    CHECK(n_copy == n && !memcmp(copied, prompt, (size_t)n * sizeof *prompt));
    CHECK(!memcmp(edgellm_get_logits(copy, -1), edgellm_get_logits(alone, -1), row));
    edgellm_token next = argmax(edgellm_get_logits(alone, -1), n_vocab);
    CHECK(next == gc->ids[0]);
    edgellm_context *pair[2] = {copy, plain};
    const edgellm_token *nt[2] = {&next, &next};
    int32_t ones[2] = {1, 1};
    CHECK(edgellm_eval_batch(bt, pair, nt, ones, 2) == EDGELLM_OK);
    CHECK(!memcmp(edgellm_get_logits(copy, -1), edgellm_get_logits(plain, -1), row));
    CHECK(argmax(edgellm_get_logits(copy, -1), n_vocab) == gc->ids[1]);

    /* Into a context of another size that still holds them (each KV head's positions start
     * elsewhere in a layer): the same next step. */
    edgellm_context_params snug = slot;
    snug.n_ctx = n + 3;
    edgellm_context *other = NULL;
    CHECK(edgellm_context_create(m, &snug, &other) == EDGELLM_OK);
    if (other) {
        CHECK(edgellm_context_copy_cache(other, scored) == EDGELLM_OK);
        CHECK(edgellm_eval(other, &next, 1, 0) == EDGELLM_OK);
        CHECK(!memcmp(edgellm_get_logits(other, -1), edgellm_get_logits(copy, -1), row));
        edgellm_context_free(other);
    }

    /* Refusals: itself, another size, NULL. */
    edgellm_context_params tiny = slot;
    tiny.n_ctx = 4;
    edgellm_context *small = NULL;
    CHECK(edgellm_context_create(m, &tiny, &small) == EDGELLM_OK);
    CHECK(edgellm_context_copy_cache(small, copy) == EDGELLM_ERR_CONTEXT_FULL);
    CHECK(edgellm_context_copy_cache(copy, copy) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_context_copy_cache(NULL, copy) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_context_set_batch_all_logits(NULL, 1) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_context_free(small);
    edgellm_context_free(scored);
    edgellm_context_free(plain);
    edgellm_context_free(copy);
    edgellm_context_free(alone);
    edgellm_batch_free(bt);
}

/* Embeddings: unit length, deterministic, independent of what the context held, and different
 * for different texts. */
static void test_embed(edgellm_model *m)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 8; /* longer inputs pool over several chunks */
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK);
    if (!ctx)
        return;
    edgellm_model_info info;
    edgellm_model_get_info(m, &info);
    float a[64], b[64], c[64];
    edgellm_token t1[20], t2[3] = {1, 50, 60};
    for (int i = 0; i < 20; i++)
        t1[i] = 1 + i * 3;
    CHECK(edgellm_embed(ctx, t1, 20, a, info.n_embd) == EDGELLM_OK);
    CHECK(edgellm_eval(ctx, t2, 3, 0) == EDGELLM_OK);
    CHECK(edgellm_embed(ctx, t1, 20, b, info.n_embd) == EDGELLM_OK);
    CHECK(!memcmp(a, b, sizeof(float) * (size_t)info.n_embd));
    CHECK(edgellm_embed(ctx, t2, 3, c, info.n_embd) == EDGELLM_OK);
    double norm = 0, diff = 0;
    for (int d = 0; d < info.n_embd; d++) {
        norm += (double)a[d] * a[d];
        diff += fabs(a[d] - c[d]);
    }
    CHECK_MSG(fabs(norm - 1.0) < 1e-5, "embedding norm %g", norm);
    CHECK(diff > 1e-3);
    CHECK(edgellm_embed(ctx, t1, 20, a, 10) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_token big[65] = {0};
    CHECK(edgellm_embed(ctx, big, 65, a, info.n_embd) == EDGELLM_ERR_CONTEXT_FULL);
    edgellm_context_free(ctx);
}

static void test_bad_models(void)
{
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(NULL, NULL, &m) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_model_load("/nonexistent/model.gguf", NULL, &m) == EDGELLM_ERR_IO && !m);
    CHECK(strstr(edgellm_last_error(), "/nonexistent/model.gguf") != NULL);
    CHECK(edgellm_model_load(test_shared_path("models/aidreams260K.bin"), NULL, &m) ==
          EDGELLM_ERR_FORMAT);
    CHECK(edgellm_model_load(test_shared_path("models"), NULL, &m) == EDGELLM_ERR_IO);
    edgellm_sampler *s = NULL;
    edgellm_sampler_params sp = edgellm_sampler_default_params();
    sp.top_p = 0;
    CHECK(edgellm_sampler_create(&sp, 10, &s) == EDGELLM_ERR_INVALID_ARGUMENT && !s);
    CHECK(strstr(edgellm_last_error(), "top_p") != NULL);
}

/* Profiling times every part of each pass without changing its results. */
static void test_profiling(edgellm_model *m)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    edgellm_context *c = NULL;
    CHECK(edgellm_context_create(m, &cp, &c) == EDGELLM_OK);
    if (!c)
        return;
    edgellm_token toks[5] = {1, 40, 41, 42, 43};
    edgellm_profile prof;
    CHECK(edgellm_context_get_profile(c, &prof) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_eval(c, toks, 5, 0) == EDGELLM_OK);
    static float plain[512];
    memcpy(plain, edgellm_get_logits(c, -1), sizeof plain);

    CHECK(edgellm_context_truncate(c, 0) == EDGELLM_OK);
    CHECK(edgellm_context_set_profiling(c, 1) == EDGELLM_OK);
    CHECK(edgellm_eval(c, toks, 4, 0) == EDGELLM_OK);
    CHECK(edgellm_eval(c, toks + 4, 1, 0) == EDGELLM_OK);
    CHECK(!memcmp(plain, edgellm_get_logits(c, -1), sizeof plain));
    CHECK(edgellm_context_get_profile(c, &prof) == EDGELLM_OK);
    CHECK(prof.forward_calls == 2 && prof.tokens == 5 && prof.forward_seconds > 0);
    double sum = 0;
    bool matmul = false, attention = false, other = false;
    for (int i = 0; i < prof.n_entries; i++) {
        const edgellm_profile_entry *e = &prof.entries[i];
        CHECK(e->seconds >= 0);
        sum += e->seconds;
        /* 7 weights per layer over 4 layers, plus the output head, in each of 2 passes. */
        if (!strcmp(e->name, "matmul F32")) {
            matmul = true;
            CHECK_MSG(e->calls == 2 * (7 * 4 + 1), "%llu matmuls", (unsigned long long)e->calls);
        }
        if (!strcmp(e->name, "attention")) {
            attention = true;
            CHECK(e->calls == 2 * 4);
        }
        other |= !strcmp(e->name, "other");
    }
    CHECK(matmul && attention && other);
    CHECK(fabs(sum - prof.forward_seconds) <= 1e-9 + 1e-6 * prof.forward_seconds);
    /* Switching on again starts from zero; off makes reading fail. */
    CHECK(edgellm_context_set_profiling(c, 1) == EDGELLM_OK);
    CHECK(edgellm_context_get_profile(c, &prof) == EDGELLM_OK && prof.forward_calls == 0);
    CHECK(edgellm_context_set_profiling(c, 0) == EDGELLM_OK);
    CHECK(edgellm_context_get_profile(c, &prof) == EDGELLM_ERR_INVALID_ARGUMENT);
    edgellm_context_free(c);
}

int main(void)
{
    static test_greedy_case cases[8];
    int n_cases = test_load_greedy_cases(cases, 8);
    CHECK(n_cases == 7);
    edgellm_model *m = NULL;
    edgellm_status st = edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL,
                                           &m);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (m && n_cases > 0) {
        edgellm_model_info info;
        CHECK(edgellm_model_get_info(m, &info) == EDGELLM_OK);
        CHECK(!strcmp(info.architecture, "llama") && info.n_vocab == 512 && info.n_layer == 4 &&
              info.n_ff == 172 && !strcmp(info.quantization, "F32"));
        edgellm_memory_estimate est;
        CHECK(edgellm_model_estimate_memory(m, 128, EDGELLM_KV_F16, 0, &est) == EDGELLM_OK);
        /* 4 layers x 2 (K, V) x 128 positions x 64 values x 2 bytes */
        CHECK(est.kv_cache_bytes == 4 * 2 * 128 * 64 * 2);
        test_greedy(m, cases, n_cases);
        test_prefix_reuse_and_stops(m, &cases[0]);
        test_last_token_pending(m, &cases[0]);
        test_sampling_reproducible(m, &cases[1]);
        test_eval_api(m);
        test_eval_batch(m, cases, n_cases);
        test_batch_all_logits_and_copy(m, &cases[0]);
        test_embed(m);
        test_profiling(m);
    }
    test_bad_models();
    edgellm_model_free(m);
    return test_finish("test_api");
}
