/* The step-by-step generation of edgellm.h (edgellm_generation_*), through the public header only,
 * on the shared aidreams model: slices of 1, 3 and 64 tokens or of changing sizes, its prompt in
 * slices of 1, 7 and 64 or in one, hand out the same tokens and text, and end with the same
 * result, as one edgellm_generate call (sampled, greedy to a full context, at a stop string,
 * speculative, a long prompt); a prompt in slices leaves the same logits bit for bit; a
 * generation finished before its end (its prompt's too) stops as a callback would stop it,
 * leaves the context usable and frees everything. Every misuse (NULL, n_tokens <= 0, calls after
 * the end, a second begin and every call that would change the cache while one is open, its own
 * callback re-entering it, a cancel between calls, its context freed first) gets its status and
 * leaves the generation's output as it was. The sanitizer build checks the memory of all of it. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <string.h>

#include "edgellm.h"
#include "test_util.h"

typedef struct received {
    char text[8192];
    size_t len;
    edgellm_token tokens[1024];
    int n_tokens;
} received;

static int receive(void *user, edgellm_token token, const char *text, size_t len)
{
    received *r = user;
    if (r->len + len < sizeof r->text) {
        memcpy(r->text + r->len, text, len);
        r->len += len;
        r->text[r->len] = '\0';
    }
    if (token >= 0 && r->n_tokens < 1024)
        r->tokens[r->n_tokens++] = token;
    return 0;
}

/* Longer than the slices of prompt the tests take, within aidreams' 128 positions. */
#define LONG_PROMPT                                                                                \
    "Once upon a time, there was a little girl named Lily. She liked to play outside in the "      \
    "park with her friends. One day, she saw a big red ball"

/* Greedy decoding of up to max_tokens into *r. */
static edgellm_generate_params greedy_into(received *r, int32_t max_tokens)
{
    edgellm_generate_params gp = edgellm_generate_default_params();
    gp.max_tokens = max_tokens;
    gp.sampling.temperature = 0;
    gp.on_token = receive;
    gp.user_data = r;
    return gp;
}

typedef struct generation_case {
    const char *name;
    const char *prompt;
    int32_t n_ctx;
    edgellm_generate_params params;
} generation_case;

/* ctx afresh, so that no cached prefix makes one run differ from another. */
static edgellm_context *fresh_context(edgellm_model *m, int32_t n_ctx)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = 1;
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK);
    return ctx;
}

/* Slice sizes that change from call to call (CHANGING_SLICES), for the prompt and the tokens. */
#define CHANGING_SLICES -1
static int32_t slice_size(int32_t slice, int call)
{
    static const int32_t changing[] = {2, 1, 5, 13, 3, 1, 8};
    return slice == CHANGING_SLICES ? changing[call % 7] : slice;
}

/* The case generated in slices of slice tokens (0: by edgellm_generate) into *got. */
static void run_case(edgellm_model *m, const generation_case *gc, int32_t prompt_slice,
                     int32_t slice, received *got, edgellm_generate_result *res, int32_t *n_past)
{
    memset(got, 0, sizeof *got);
    memset(res, 0, sizeof *res);
    edgellm_context *ctx = fresh_context(m, gc->n_ctx);
    if (!ctx)
        return;
    edgellm_generate_params gp = gc->params;
    gp.on_token = receive;
    gp.user_data = got;
    if (slice == 0) {
        CHECK_MSG(edgellm_generate(ctx, gc->prompt, &gp, res) == EDGELLM_OK, "%s: %s", gc->name,
                  edgellm_last_error());
    } else {
        edgellm_generation *gen = NULL;
        CHECK(edgellm_generation_begin(ctx, gc->prompt, &gp, &gen) == EDGELLM_OK);
        int ended = gen == NULL;
        for (int call = 0; prompt_slice != 0 && !ended && edgellm_generation_prompt_left(gen) > 0;
             call++) {
            int32_t before = edgellm_generation_prompt_left(gen);
            CHECK(edgellm_generation_prefill(gen, slice_size(prompt_slice, call), &ended) ==
                      EDGELLM_OK &&
                  !ended);
            CHECK(got->n_tokens == 0 && edgellm_generation_prompt_left(gen) < before);
        }
        for (int call = 0; !ended; call++) {
            int before = got->n_tokens;
            int32_t n = slice_size(slice, call);
            CHECK(edgellm_generation_next(gen, n, &ended) == EDGELLM_OK);
            /* A plain pass hands out one token: a slice is exactly what was asked for. */
            if (!ended && !gp.lookup_ngram)
                CHECK_MSG(got->n_tokens - before == n, "%s: slice of %d gave %d tokens", gc->name,
                          n, got->n_tokens - before);
        }
        if (gen)
            CHECK(edgellm_generation_finish(gen, res) == EDGELLM_OK);
    }
    *n_past = edgellm_context_n_past(ctx);
    edgellm_context_free(ctx);
}

static void test_slices_equal_one_call(edgellm_model *m)
{
    static const char *const stops[] = {"whispers"};
    generation_case cases[5];
    for (int i = 0; i < 5; i++)
        cases[i].params = edgellm_generate_default_params();
    cases[0] = (generation_case){"sampled", "The little dog", 128, cases[0].params};
    cases[0].params.max_tokens = 100;
    cases[0].params.sampling.temperature = 0.9f;
    cases[0].params.sampling.top_k = 40;
    cases[0].params.sampling.repeat_penalty = 1.1f;
    cases[0].params.sampling.seed = 7;
    cases[1] = (generation_case){"greedy to a full context", "Once upon a time", 64,
                                 cases[1].params};
    cases[1].params.max_tokens = 0;
    cases[1].params.sampling.temperature = 0;
    cases[2] = (generation_case){"greedy to a stop string", "Lily went to the", 128,
                                 cases[2].params};
    cases[2].params.max_tokens = 100;
    cases[2].params.sampling.temperature = 0;
    cases[2].params.stop_strings = stops;
    cases[2].params.n_stop_strings = 1;
    cases[3] = (generation_case){"speculative (prompt lookup)", "Once upon a time", 128,
                                 cases[3].params};
    cases[3].params.max_tokens = 120;
    cases[3].params.sampling.temperature = 0;
    cases[3].params.lookup_ngram = 2;
    cases[4] = (generation_case){"a long prompt", LONG_PROMPT, 128, cases[4].params};
    cases[4].params.max_tokens = 40;
    cases[4].params.sampling.temperature = 0;

    static received one, sliced;
    for (int c = 0; c < 5; c++) {
        const generation_case *gc = &cases[c];
        edgellm_generate_result want, got;
        int32_t past_want = 0, past_got = 0;
        run_case(m, gc, 0, 0, &one, &want, &past_want);
        CHECK_MSG(one.n_tokens > 20, "%s: %d tokens", gc->name, one.n_tokens);
        static const int32_t slices[] = {1, 3, 64, CHANGING_SLICES};
        /* The prompt in slices of 1, 7 and 64 tokens, of changing sizes, and in one. */
        static const int32_t prompt_slices[] = {7, 0, 64, 1, CHANGING_SLICES};
        for (int k = 0; k < 5; k++) {
            int32_t prompt_slice = prompt_slices[k], slice = slices[k % 4];
            run_case(m, gc, prompt_slice, slice, &sliced, &got, &past_got);
            CHECK_MSG(
                sliced.n_tokens == one.n_tokens &&
                    !memcmp(sliced.tokens, one.tokens, (size_t)one.n_tokens * sizeof *one.tokens),
                "%s, prompt slices of %d, slices of %d: %d tokens against %d, or other ones",
                gc->name, prompt_slice, slice, sliced.n_tokens, one.n_tokens);
            CHECK_MSG(!strcmp(sliced.text, one.text), "%s, slices of %d: text differs", gc->name,
                      slice);
            CHECK_MSG(got.stop_reason == want.stop_reason && got.n_generated == want.n_generated &&
                          got.n_prompt_tokens == want.n_prompt_tokens &&
                          got.n_target_passes == want.n_target_passes &&
                          got.n_draft_proposed == want.n_draft_proposed &&
                          got.n_draft_accepted == want.n_draft_accepted && past_got == past_want,
                      "%s, slices of %d: stop %d/%d, generated %d/%d, passes %d/%d, cached %d/%d",
                      gc->name, slice, got.stop_reason, want.stop_reason, got.n_generated,
                      want.n_generated, got.n_target_passes, want.n_target_passes, past_got,
                      past_want);
        }
        if (c == 1)
            CHECK(want.stop_reason == EDGELLM_STOP_CONTEXT_FULL);
        if (c == 2)
            CHECK_MSG(want.stop_reason == EDGELLM_STOP_STRING, "the stop string never came: %s",
                      one.text);
        if (c == 3)
            CHECK(want.n_draft_accepted > 0);
        if (c == 4)
            CHECK_MSG(want.n_prompt_tokens > 64, "the long prompt is %d tokens",
                      want.n_prompt_tokens);
    }
}

/* The last logits after the prompt, evaluated in slices of slice tokens (0: in one) from a
 * fresh context, into logits. */
static void prompt_logits(edgellm_model *m, const edgellm_token *prompt, int32_t n_prompt,
                          int32_t slice, float *logits, int32_t n_vocab)
{
    edgellm_context *ctx = fresh_context(m, 128);
    edgellm_generate_params gp = edgellm_generate_default_params();
    edgellm_generation *gen = NULL;
    CHECK(ctx && edgellm_generation_begin_tokens(ctx, prompt, n_prompt, &gp, &gen) == EDGELLM_OK);
    int ended = false;
    int n_slices = 0;
    while (gen && edgellm_generation_prompt_left(gen) > 0 && !ended) {
        CHECK(edgellm_generation_prefill(gen, slice > 0 ? slice : INT32_MAX, &ended) == EDGELLM_OK);
        n_slices++;
    }
    CHECK_MSG(n_slices == (slice > 0 ? (n_prompt + slice - 1) / slice : 1), "%d slices of %d",
              n_slices, slice);
    const float *last = ctx ? edgellm_get_logits(ctx, -1) : NULL;
    CHECK(last != NULL && edgellm_context_n_past(ctx) == n_prompt);
    if (last)
        memcpy(logits, last, (size_t)n_vocab * sizeof *logits);
    if (gen)
        edgellm_generation_finish(gen, NULL);
    edgellm_context_free(ctx);
}

/* A prompt evaluated in slices leaves the logits of one pass over it, bit for bit. */
static void test_prompt_slices_same_logits(edgellm_model *m, const edgellm_token *prompt,
                                           int32_t n_prompt)
{
    int32_t n_vocab = edgellm_n_vocab(m);
    static float want[4096], got[4096];
    CHECK(n_vocab <= 4096);
    prompt_logits(m, prompt, n_prompt, 0, want, n_vocab);
    static const int32_t slices[] = {1, 3, 7, 64};
    for (int k = 0; k < 4; k++) {
        prompt_logits(m, prompt, n_prompt, slices[k], got, n_vocab);
        CHECK_MSG(!memcmp(want, got, (size_t)n_vocab * sizeof *got),
                  "the prompt in slices of %d gives other logits", slices[k]);
    }
}

/* Finished after two slices of its prompt: stopped as a callback stops it with nothing
 * generated, the slices evaluated kept in the cache, and the same prompt then reusing them and
 * generating the reference tokens. */
static void test_finish_during_prompt(edgellm_model *m, const edgellm_token *prompt,
                                      int32_t n_prompt, const received *reference)
{
    edgellm_context *ctx = fresh_context(m, 128);
    received got = {0};
    edgellm_generate_params gp = greedy_into(&got, 40);
    edgellm_generation *gen = NULL;
    CHECK(ctx && edgellm_generation_begin_tokens(ctx, prompt, n_prompt, &gp, &gen) == EDGELLM_OK);
    int ended = false;
    for (int i = 0; gen && i < 2; i++)
        CHECK(edgellm_generation_prefill(gen, 7, &ended) == EDGELLM_OK && !ended);
    CHECK(gen && edgellm_generation_prompt_left(gen) == n_prompt - 14);
    edgellm_generate_result r;
    CHECK(gen && edgellm_generation_finish(gen, &r) == EDGELLM_OK);
    CHECK_MSG(r.stop_reason == EDGELLM_STOP_CALLBACK && r.n_generated == 0 && got.n_tokens == 0,
              "stop reason %d, %d generated", r.stop_reason, r.n_generated);
    CHECK_MSG(ctx && edgellm_context_n_past(ctx) == 14, "%d cached",
              ctx ? edgellm_context_n_past(ctx) : -1);
    int32_t n_cached = 0;
    const edgellm_token *cached = edgellm_context_tokens(ctx, &n_cached);
    CHECK(n_cached == 14 && !memcmp(cached, prompt, 14 * sizeof *prompt));

    CHECK(ctx && edgellm_generate_tokens(ctx, prompt, n_prompt, &gp, &r) == EDGELLM_OK);
    CHECK_MSG(r.n_cached_tokens == 14, "the next request reused %d tokens", r.n_cached_tokens);
    CHECK_MSG(got.n_tokens == reference->n_tokens &&
                  !memcmp(got.tokens, reference->tokens, (size_t)got.n_tokens * sizeof *got.tokens),
              "after a prompt stopped part way the same prompt gives other tokens");
    edgellm_context_free(ctx);
}

/* A keep_cache continuation owes the token the last call handed out but did not evaluate: a
 * continuation finished before its prompt began keeps it owed, so the next one gives what an
 * uninterrupted continuation gives. */
/* The token a keep_cache generation owes is evaluated by the first prompt slice, before the new
 * prompt: edgellm_generation_prompt_left counts it from begin, so that a slice of 1 lowers the
 * count by 1 (before session 25 it was counted only after the first slice, and a slice of n
 * lowered the count by n - 1: fuzz_api's progress check failed). */
static void test_prompt_left_counts_owed_token(edgellm_model *m)
{
    received out = {0};
    edgellm_generate_params gp = greedy_into(&out, 5);
    gp.keep_cache = 1;
    edgellm_context *ctx = fresh_context(m, 128);
    CHECK(ctx && edgellm_generate(ctx, "Once upon a time", &gp, NULL) == EDGELLM_OK);
    edgellm_token ids[16];
    int32_t n = 0;
    CHECK(edgellm_tokenize(m, " the cat", 8, 0, ids, 16, &n) == EDGELLM_OK && n > 1);
    edgellm_generation *gen = NULL;
    int ended = 0;
    CHECK(ctx && edgellm_generation_begin(ctx, " the cat", &gp, &gen) == EDGELLM_OK);
    CHECK_MSG(edgellm_generation_prompt_left(gen) == n + 1, "%d left of a %d-token prompt",
              (int)edgellm_generation_prompt_left(gen), (int)n);
    CHECK(edgellm_generation_prefill(gen, 1, &ended) == EDGELLM_OK && !ended);
    CHECK(edgellm_generation_prompt_left(gen) == n);
    CHECK(edgellm_generation_prefill(gen, n - 1, &ended) == EDGELLM_OK);
    CHECK(edgellm_generation_prompt_left(gen) == 1);
    CHECK(edgellm_generation_finish(gen, NULL) == EDGELLM_OK);
    edgellm_context_free(ctx);
}

static void test_owed_token_kept(edgellm_model *m)
{
    received want = {0}, got = {0};
    edgellm_generate_params gp = greedy_into(&want, 5);
    gp.keep_cache = 1;
    for (int interrupted = 0; interrupted < 2; interrupted++) {
        received *r = interrupted ? &got : &want;
        edgellm_context *ctx = fresh_context(m, 128);
        gp.user_data = r;
        CHECK(ctx && edgellm_generate(ctx, "Once upon a time", &gp, NULL) == EDGELLM_OK);
        if (interrupted) {
            edgellm_generation *gen = NULL;
            int ended = false;
            CHECK(edgellm_generation_begin(ctx, " the cat", &gp, &gen) == EDGELLM_OK);
            /* Refused, changing nothing: the token stays owed. */
            CHECK(gen &&
                  edgellm_generation_prefill(gen, 0, &ended) == EDGELLM_ERR_INVALID_ARGUMENT &&
                  !ended);
            CHECK(gen && edgellm_generation_finish(gen, NULL) == EDGELLM_OK);
        }
        CHECK(ctx && edgellm_generate(ctx, " the cat", &gp, NULL) == EDGELLM_OK);
        edgellm_context_free(ctx);
    }
    CHECK_MSG(want.n_tokens == 10 && got.n_tokens == want.n_tokens &&
                  !memcmp(got.tokens, want.tokens, (size_t)want.n_tokens * sizeof *want.tokens),
              "a continuation stopped before its prompt lost the token it owed");
}

/* The long prompt's tokens as edgellm_generate makes them, and its reference continuation. */
static int32_t long_prompt_tokens(edgellm_model *m, edgellm_token *tokens, int32_t cap,
                                  received *reference)
{
    int32_t n = 0;
    CHECK(edgellm_tokenize(m, LONG_PROMPT, strlen(LONG_PROMPT), EDGELLM_TOKENIZE_ADD_BOS, tokens,
                           cap, &n) == EDGELLM_OK);
    edgellm_context *ctx = fresh_context(m, 128);
    edgellm_generate_params gp = greedy_into(reference, 40);
    CHECK(ctx && edgellm_generate_tokens(ctx, tokens, n, &gp, NULL) == EDGELLM_OK);
    CHECK(reference->n_tokens == 40);
    edgellm_context_free(ctx);
    return n;
}

/* Begun, n_slices slices of 5 tokens (or only the prompt, or nothing), then finished before the
 * end: stopped as a callback stops it, the cache holding what was evaluated, and the context
 * generating the reference text afterwards. */
static void test_finish_early(edgellm_model *m, const test_greedy_case *gc, int n_slices,
                              int32_t lookup_ngram)
{
    edgellm_context *ctx = fresh_context(m, 128);
    if (!ctx)
        return;
    received got = {0};
    edgellm_generate_params gp = greedy_into(&got, 100);
    gp.lookup_ngram = lookup_ngram;
    edgellm_generation *gen = NULL;
    CHECK(edgellm_generation_begin(ctx, gc->prompt, &gp, &gen) == EDGELLM_OK);
    int ended = false;
    if (n_slices == 0)
        CHECK(gen && edgellm_generation_prefill(gen, INT32_MAX, &ended) == EDGELLM_OK && !ended);
    for (int i = 0; gen && i < n_slices; i++)
        CHECK(edgellm_generation_next(gen, 5, &ended) == EDGELLM_OK && !ended);
    edgellm_generate_result r;
    memset(&r, 0xff, sizeof r);
    CHECK(gen && edgellm_generation_finish(gen, &r) == EDGELLM_OK);
    CHECK_MSG(r.stop_reason == EDGELLM_STOP_CALLBACK, "stop reason %d", r.stop_reason);
    CHECK(r.n_generated == got.n_tokens);
    CHECK(got.n_tokens <= 48 &&
          !memcmp(got.tokens, gc->ids, (size_t)got.n_tokens * sizeof *gc->ids));
    int32_t n_past = edgellm_context_n_past(ctx);
    if (n_slices < 0)
        CHECK(n_past == 0 && r.n_generated == 0);
    else if (lookup_ngram)
        CHECK_MSG(n_past == r.n_prompt_tokens + r.n_generated - 1, "%d cached", n_past);
    else
        CHECK_MSG(n_past == r.n_prompt_tokens + 5 * n_slices, "%d cached", n_past);

    received again = {0};
    gp.user_data = &again;
    gp.lookup_ngram = 0;
    gp.max_tokens = 48;
    CHECK(edgellm_generate(ctx, gc->prompt, &gp, &r) == EDGELLM_OK);
    CHECK_MSG(again.n_tokens == 48 && !memcmp(again.tokens, gc->ids, sizeof gc->ids),
              "after a generation finished early the context gives other tokens");
    edgellm_context_free(ctx);
}

static void test_bad_arguments(edgellm_model *m)
{
    edgellm_context *ctx = fresh_context(m, 64);
    edgellm_generation *gen = (edgellm_generation *)&gen;
    edgellm_generate_params gp = edgellm_generate_default_params();
    edgellm_token one = 1;
    CHECK(edgellm_generation_begin_tokens(ctx, &one, 0, &gp, &gen) ==
              EDGELLM_ERR_INVALID_ARGUMENT &&
          gen == NULL);
    CHECK(edgellm_generation_begin_tokens(NULL, &one, 1, &gp, &gen) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_generation_begin(ctx, NULL, &gp, &gen) == EDGELLM_ERR_INVALID_ARGUMENT &&
          gen == NULL);
    /* A prompt longer than the context: the first slice fails, finish says so again. */
    static edgellm_token long_prompt[100];
    for (int i = 0; i < 100; i++)
        long_prompt[i] = 1 + i % 50;
    CHECK(edgellm_generation_begin_tokens(ctx, long_prompt, 100, &gp, &gen) == EDGELLM_OK);
    int ended = false;
    CHECK(gen && edgellm_generation_next(gen, 1, &ended) == EDGELLM_ERR_CONTEXT_FULL && ended);
    CHECK(gen && edgellm_generation_next(gen, 1, &ended) == EDGELLM_ERR_CONTEXT_FULL && ended);
    edgellm_generate_result r;
    CHECK(gen && edgellm_generation_finish(gen, &r) == EDGELLM_ERR_CONTEXT_FULL);
    CHECK(r.n_generated == 0 && r.n_prompt_tokens == 100);
    edgellm_context_free(ctx);
}

/* The greedy continuation of prompt (max_tokens 12) by edgellm_generate on a fresh context. */
static void reference_tokens(edgellm_model *m, const char *prompt, received *want)
{
    memset(want, 0, sizeof *want);
    edgellm_context *ctx = fresh_context(m, 64);
    edgellm_generate_params gp = greedy_into(want, 12);
    CHECK(ctx && edgellm_generate(ctx, prompt, &gp, NULL) == EDGELLM_OK);
    CHECK(want->n_tokens == 12);
    edgellm_context_free(ctx);
}

static bool same_tokens(const received *a, const received *b)
{
    return a->n_tokens == b->n_tokens &&
           !memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof *a->tokens) &&
           !strcmp(a->text, b->text);
}

/* NULL for every argument, n_tokens <= 0, calls after the end: refused or idle, never a crash,
 * and nothing left open on the context. */
static void test_null_and_counts(edgellm_model *m)
{
    edgellm_context *ctx = fresh_context(m, 64);
    if (!ctx)
        return;
    received got = {0};
    edgellm_generate_params gp = greedy_into(&got, 5);
    edgellm_generation *gen = NULL;
    edgellm_token one = 1;
    CHECK(edgellm_generation_begin(NULL, "x", &gp, &gen) == EDGELLM_ERR_INVALID_ARGUMENT && !gen);
    CHECK(edgellm_generation_begin(ctx, "x", NULL, &gen) == EDGELLM_ERR_INVALID_ARGUMENT && !gen);
    CHECK(edgellm_generation_begin(ctx, "x", &gp, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_generation_begin_tokens(ctx, NULL, 1, &gp, &gen) ==
              EDGELLM_ERR_INVALID_ARGUMENT &&
          !gen);
    CHECK(edgellm_generation_begin_tokens(ctx, &one, -1, &gp, &gen) ==
          EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_generation_begin_tokens(ctx, &one, 1, &gp, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    int ended = 0;
    CHECK(edgellm_generation_prefill(NULL, 1, &ended) == EDGELLM_ERR_INVALID_ARGUMENT && ended);
    ended = 0;
    CHECK(edgellm_generation_next(NULL, 1, &ended) == EDGELLM_ERR_INVALID_ARGUMENT && ended);
    CHECK(edgellm_generation_next(NULL, 1, NULL) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(edgellm_generation_prompt_left(NULL) == -1);
    edgellm_generate_result r;
    memset(&r, 0xff, sizeof r);
    CHECK(edgellm_generation_finish(NULL, &r) == EDGELLM_OK && r.n_generated == 0);
    CHECK(edgellm_generation_finish(NULL, NULL) == EDGELLM_OK);
    /* Nothing of the refused begins stays open. */
    CHECK(edgellm_eval(ctx, &one, 1, 0) == EDGELLM_OK && edgellm_context_truncate(ctx, 0) == 0);

    CHECK(edgellm_generation_begin(ctx, "Once upon a time", &gp, &gen) == EDGELLM_OK && gen);
    if (!gen) {
        edgellm_context_free(ctx);
        return;
    }
    int32_t left = edgellm_generation_prompt_left(gen);
    static const int32_t bad[] = {0, -1, INT32_MIN};
    for (int i = 0; i < 3; i++) {
        ended = 1;
        CHECK(edgellm_generation_prefill(gen, bad[i], &ended) == EDGELLM_ERR_INVALID_ARGUMENT &&
              !ended);
        ended = 1;
        CHECK(edgellm_generation_next(gen, bad[i], &ended) == EDGELLM_ERR_INVALID_ARGUMENT &&
              !ended);
    }
    CHECK(strstr(edgellm_last_error(), "n_tokens") != NULL);
    CHECK(edgellm_generation_prompt_left(gen) == left && edgellm_context_n_past(ctx) == 0 &&
          got.n_tokens == 0);
    /* ended may be NULL; the loop's end shows in the next call. */
    for (int i = 0; i < 4; i++) /* 2 tokens a call: the budget ends it in the third */
        CHECK(edgellm_generation_next(gen, 2, NULL) == EDGELLM_OK);
    CHECK(got.n_tokens == 5);
    /* After the end: nothing runs, the status is the end's, ended stays set. */
    for (int i = 0; i < 2; i++) {
        ended = 0;
        CHECK(edgellm_generation_next(gen, 1, &ended) == EDGELLM_OK && ended);
        ended = 0;
        CHECK(edgellm_generation_prefill(gen, 1, &ended) == EDGELLM_OK && ended);
    }
    CHECK(got.n_tokens == 5 && edgellm_generation_prompt_left(gen) == 0);
    CHECK(edgellm_generation_finish(gen, &r) == EDGELLM_OK);
    CHECK(r.n_generated == 5 && r.stop_reason == EDGELLM_STOP_MAX_TOKENS);
    edgellm_context_free(ctx);
}

/* While a generation is open, every call that would change its context's cache is refused with
 * EDGELLM_ERR_BUSY and changes nothing; the generation goes on to the reference tokens; after
 * finish the context takes every call again. */
static void test_busy_context(edgellm_model *m, const received *want)
{
    edgellm_context *ctx = fresh_context(m, 64), *other = fresh_context(m, 64);
    edgellm_context_params bp = edgellm_context_default_params();
    bp.n_ctx = 64;
    bp.n_threads = 1;
    edgellm_batch *batch = NULL;
    CHECK(edgellm_batch_create(m, &bp, &batch) == EDGELLM_OK);
    received got = {0};
    edgellm_generate_params gp = greedy_into(&got, 12);
    edgellm_generation *gen = NULL;
    CHECK(ctx && edgellm_generation_begin(ctx, "Once upon a time", &gp, &gen) == EDGELLM_OK);
    int ended = 0;
    CHECK(gen && edgellm_generation_prefill(gen, 2, &ended) == EDGELLM_OK && !ended);
    CHECK(gen && edgellm_generation_next(gen, 3, &ended) == EDGELLM_OK && !ended);
    if (!ctx || !other || !batch || !gen) {
        edgellm_generation_finish(gen, NULL);
        edgellm_batch_free(batch);
        edgellm_context_free(other);
        edgellm_context_free(ctx);
        return;
    }
    int32_t n_past = edgellm_context_n_past(ctx);
    edgellm_token one = 1;
    const edgellm_token *one_p = &one;
    int32_t n_one = 1;
    float embedding[512];
    edgellm_model_info info;
    CHECK(edgellm_model_get_info(m, &info) == EDGELLM_OK && info.n_embd <= 512);
    edgellm_generation *kept = gen;
    received other_out = {0};
    edgellm_generate_params other_gp = greedy_into(&other_out, 2);
    CHECK(edgellm_generation_begin(ctx, "x", &other_gp, &gen) == EDGELLM_ERR_BUSY && gen == kept);
    CHECK(strstr(edgellm_last_error(), "edgellm_generation_finish") != NULL);
    CHECK(edgellm_generation_begin_tokens(ctx, &one, 1, &other_gp, &gen) == EDGELLM_ERR_BUSY &&
          gen == kept);
    CHECK(edgellm_generate(ctx, "x", &other_gp, NULL) == EDGELLM_ERR_BUSY);
    CHECK(edgellm_generate_tokens(ctx, &one, 1, &other_gp, NULL) == EDGELLM_ERR_BUSY);
    CHECK(edgellm_eval(ctx, &one, 1, 0) == EDGELLM_ERR_BUSY);
    CHECK(edgellm_embed(ctx, &one, 1, embedding, info.n_embd) == EDGELLM_ERR_BUSY);
    CHECK(edgellm_context_truncate(ctx, 0) == EDGELLM_ERR_BUSY);
    CHECK(edgellm_context_copy_cache(ctx, other) == EDGELLM_ERR_BUSY);
    CHECK(edgellm_eval_batch(batch, &ctx, &one_p, &n_one, 1) == EDGELLM_ERR_BUSY);
    CHECK(other_out.n_tokens == 0 && edgellm_context_n_past(ctx) == n_past);
    CHECK(edgellm_last_error()[0] != '\0');
    /* Reading the context is allowed; so is copying from it. */
    CHECK(edgellm_get_logits(ctx, -1) != NULL);
    CHECK(edgellm_context_copy_cache(other, ctx) == EDGELLM_OK &&
          edgellm_context_n_past(other) == n_past);

    CHECK(edgellm_generation_next(gen, INT32_MAX, &ended) == EDGELLM_OK && ended);
    CHECK(edgellm_eval(ctx, &one, 1, 0) == EDGELLM_ERR_BUSY); /* ended, not finished */
    CHECK(edgellm_generation_finish(gen, NULL) == EDGELLM_OK);
    CHECK_MSG(same_tokens(&got, want), "refused calls changed the generation: '%s'", got.text);
    CHECK(edgellm_eval(ctx, &one, 1, 0) == EDGELLM_OK);
    CHECK(edgellm_context_truncate(ctx, 0) == EDGELLM_OK);
    CHECK(edgellm_eval_batch(batch, &ctx, &one_p, &n_one, 1) == EDGELLM_OK);
    CHECK(edgellm_embed(ctx, &one, 1, embedding, info.n_embd) == EDGELLM_OK);
    CHECK(edgellm_generate(ctx, "x", &other_gp, NULL) == EDGELLM_OK && other_out.n_tokens == 2);
    edgellm_batch_free(batch);
    edgellm_context_free(other);
    edgellm_context_free(ctx);
}

/* A context that drafts for an open generation cannot open one of its own: the drafting
 * generation re-syncs the draft's cache before each of its passes, which would pull the second
 * generation's cache from under it (its next slice then continued from the wrong tokens). */
static void test_draft_busy(edgellm_model *m, const received *want)
{
    edgellm_context *ctx = fresh_context(m, 64), *draft = fresh_context(m, 64);
    received got = {0}, drafts_out = {0};
    edgellm_generate_params gp = greedy_into(&got, 12);
    gp.draft = draft;
    edgellm_generation *gen = NULL, *draft_gen = NULL;
    CHECK(ctx && draft &&
          edgellm_generation_begin(ctx, "Once upon a time", &gp, &gen) == EDGELLM_OK);
    int ended = 0;
    CHECK(edgellm_generation_next(gen, 2, &ended) == EDGELLM_OK && !ended);
    edgellm_generate_params draft_gp = greedy_into(&drafts_out, 4);
    CHECK_MSG(edgellm_generation_begin(draft, "The dog", &draft_gp, &draft_gen) ==
                      EDGELLM_ERR_BUSY &&
                  !draft_gen,
              "a generation opened on a context drafting for another");
    CHECK(strstr(edgellm_last_error(), "draft") != NULL);
    CHECK(edgellm_generate(draft, "The dog", &draft_gp, NULL) == EDGELLM_ERR_BUSY);
    /* Its own calls stay the caller's: the drafting generation catches its draft up. */
    edgellm_token one = 1;
    CHECK(edgellm_eval(draft, &one, 1, 0) == EDGELLM_OK);
    CHECK(edgellm_generation_next(gen, INT32_MAX, &ended) == EDGELLM_OK && ended);
    CHECK(edgellm_generation_begin(draft, "The dog", &draft_gp, &draft_gen) == EDGELLM_ERR_BUSY);
    CHECK(edgellm_generation_finish(gen, NULL) == EDGELLM_OK);
    CHECK_MSG(same_tokens(&got, want), "the drafted generation gave '%s'", got.text);
    /* Finished: the draft is free again. */
    CHECK(edgellm_generation_begin(draft, "The dog", &draft_gp, &draft_gen) == EDGELLM_OK);
    CHECK(edgellm_generation_next(draft_gen, INT32_MAX, &ended) == EDGELLM_OK && ended);
    CHECK(edgellm_generation_finish(draft_gen, NULL) == EDGELLM_OK && drafts_out.n_tokens == 4);
    edgellm_context_free(draft);
    edgellm_context_free(ctx);
}

typedef struct reentry {
    received out;
    edgellm_context *ctx;
    edgellm_generation *gen;
    int calls;
    int refused; /* calls of the library refused with EDGELLM_ERR_BUSY */
    int other;   /* calls that returned anything else */
} reentry;

static void count_busy(reentry *r, edgellm_status st)
{
    if (st == EDGELLM_ERR_BUSY)
        r->refused++;
    else
        r->other++;
}

/* A callback that calls its own generation, and the context under it, every time. */
static int reenter(void *user, edgellm_token token, const char *text, size_t len)
{
    reentry *r = user;
    receive(&r->out, token, text, len);
    r->calls++;
    edgellm_token one = 1;
    edgellm_generation *second = NULL;
    edgellm_generate_params gp = edgellm_generate_default_params();
    count_busy(r, edgellm_generation_next(r->gen, 1, NULL));
    count_busy(r, edgellm_generation_prefill(r->gen, 1, NULL));
    count_busy(r, edgellm_generation_finish(r->gen, NULL));
    count_busy(r, edgellm_generation_begin(r->ctx, "x", &gp, &second));
    count_busy(r, edgellm_eval(r->ctx, &one, 1, 0));
    count_busy(r, edgellm_generate(r->ctx, "x", &gp, NULL));
    return 0;
}

static void test_callback_reentry(edgellm_model *m, const received *want)
{
    static reentry r;
    memset(&r, 0, sizeof r);
    r.ctx = fresh_context(m, 64);
    edgellm_generate_params gp = greedy_into(NULL, 12);
    gp.on_token = reenter;
    gp.user_data = &r;
    CHECK(r.ctx && edgellm_generation_begin(r.ctx, "Once upon a time", &gp, &r.gen) == EDGELLM_OK);
    int ended = 0;
    while (r.gen && !ended)
        CHECK(edgellm_generation_next(r.gen, 4, &ended) == EDGELLM_OK);
    CHECK(edgellm_generation_finish(r.gen, NULL) == EDGELLM_OK);
    CHECK_MSG(r.calls >= 12 && r.refused == 6 * r.calls && r.other == 0,
              "%d callbacks: %d refused, %d not", r.calls, r.refused, r.other);
    CHECK_MSG(same_tokens(&r.out, want), "re-entering calls changed the generation: '%s'",
              r.out.text);
    edgellm_context_free(r.ctx);
}

/* A cancel while a generation is open but between its calls is kept: the next call stops at once
 * (nothing evaluated or handed out) with EDGELLM_ERR_CANCELLED; finish reports
 * EDGELLM_STOP_CANCELLED; a cancel after the end is dropped. */
static void test_cancel_between_calls(edgellm_model *m, const received *want)
{
    edgellm_context *ctx = fresh_context(m, 64);
    received got = {0};
    edgellm_generate_params gp = greedy_into(&got, 12);
    edgellm_generation *gen = NULL;
    int ended = 0;
    edgellm_generate_result r;
    /* Before its first call, and after a slice of its prompt. */
    for (int slices = 0; slices < 2; slices++) {
        CHECK(ctx && edgellm_generation_begin(ctx, "Once upon a time", &gp, &gen) == EDGELLM_OK);
        if (!gen)
            break;
        if (slices)
            CHECK(edgellm_generation_prefill(gen, 3, &ended) == EDGELLM_OK && !ended);
        int32_t n_past = edgellm_context_n_past(ctx);
        CHECK(edgellm_context_cancel(ctx) == 1);
        CHECK(edgellm_generation_next(gen, 1, &ended) == EDGELLM_ERR_CANCELLED && ended);
        CHECK(edgellm_generation_next(gen, 1, &ended) == EDGELLM_ERR_CANCELLED && ended);
        CHECK(edgellm_context_cancel(ctx) == 0); /* ended: nothing to stop */
        CHECK(got.n_tokens == 0 && edgellm_context_n_past(ctx) == n_past);
        CHECK(edgellm_generation_finish(gen, &r) == EDGELLM_ERR_CANCELLED);
        CHECK(r.stop_reason == EDGELLM_STOP_CANCELLED && r.n_generated == 0);
    }
    /* Cancelled after its last token: dropped, the result is the normal one. */
    CHECK(ctx && edgellm_generation_begin(ctx, "Once upon a time", &gp, &gen) == EDGELLM_OK);
    CHECK(gen && edgellm_generation_next(gen, INT32_MAX, &ended) == EDGELLM_OK && ended);
    CHECK(edgellm_context_cancel(ctx) == 0);
    CHECK(gen && edgellm_generation_finish(gen, &r) == EDGELLM_OK);
    CHECK(r.stop_reason == EDGELLM_STOP_MAX_TOKENS && r.n_generated == 12);
    CHECK_MSG(same_tokens(&got, want), "after two cancels the context generates '%s'", got.text);
    CHECK(edgellm_context_cancel(ctx) == 0);
    edgellm_context_free(ctx);
}

/* The context freed under an open generation: the generation fails its calls and finish frees
 * it (the sanitizer build would report a use of the freed context). */
/* A greedy generation of 12 tokens after "Once upon a time" into *got, open on ctx after its
 * first n_first tokens (NULL if it could not begin). */
static edgellm_generation *open_greedy(edgellm_context *ctx, received *got, int32_t n_first)
{
    edgellm_generate_params gp = greedy_into(got, 12);
    edgellm_generation *gen = NULL;
    int ended = 0;
    CHECK(ctx && edgellm_generation_begin(ctx, "Once upon a time", &gp, &gen) == EDGELLM_OK);
    CHECK(gen && edgellm_generation_next(gen, n_first, &ended) == EDGELLM_OK && !ended);
    return gen;
}

static void test_context_freed_first(edgellm_model *m)
{
    edgellm_context *ctx = fresh_context(m, 64);
    received got = {0};
    edgellm_generation *gen = open_greedy(ctx, &got, 2);
    int ended = 0;
    edgellm_context_free(ctx);
    if (!gen)
        return;
    CHECK(edgellm_generation_next(gen, 1, &ended) == EDGELLM_ERR_INVALID_ARGUMENT && ended);
    CHECK(strstr(edgellm_last_error(), "freed") != NULL);
    CHECK(edgellm_generation_prefill(gen, 1, &ended) == EDGELLM_ERR_INVALID_ARGUMENT && ended);
    edgellm_generate_result r;
    CHECK(edgellm_generation_finish(gen, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(r.n_generated == 2 && got.n_tokens == 2);
}

/* Tokens the callback saw, and the draft context it frees at the token numbered free_at. */
typedef struct draft_freeing {
    received out;
    edgellm_context *draft;
    int free_at;
} draft_freeing;

static int free_draft_at(void *user, edgellm_token token, const char *text, size_t len)
{
    draft_freeing *f = user;
    receive(&f->out, token, text, len);
    if (f->out.n_tokens == f->free_at) {
        edgellm_context_free(f->draft);
        f->draft = NULL;
    }
    return 0;
}

/* The draft context freed while a generation drafts with it: between two slices, before the
 * prompt is evaluated, from on_token inside a speculative pass (edgellm_generate), and under two
 * generations sharing it. Each goes on without proposals; greedy output is the output without a
 * draft (speculative decoding is exact under greedy). Before session 25 the generation read the
 * freed context (a use after free the sanitizer build reports). */
static void test_draft_freed_first(edgellm_model *m, const received *want)
{
    edgellm_generate_result r;
    int ended = 0;
    for (int prompt_first = 0; prompt_first < 2; prompt_first++) {
        edgellm_context *ctx = fresh_context(m, 64), *draft = fresh_context(m, 64);
        received got = {0};
        edgellm_generate_params gp = greedy_into(&got, 12);
        gp.draft = draft;
        gp.draft_max = 4;
        edgellm_generation *gen = NULL;
        CHECK(ctx && draft &&
              edgellm_generation_begin(ctx, "Once upon a time", &gp, &gen) == EDGELLM_OK);
        if (!gen)
            return;
        if (prompt_first)
            CHECK(edgellm_generation_prefill(gen, 2, &ended) == EDGELLM_OK && !ended);
        else /* the first token, then one pass that checks proposals */
            CHECK(edgellm_generation_next(gen, 2, &ended) == EDGELLM_OK && !ended);
        int n_before = got.n_tokens;
        edgellm_context_free(draft);
        CHECK(edgellm_generation_next(gen, INT32_MAX, &ended) == EDGELLM_OK && ended);
        CHECK(edgellm_generation_finish(gen, &r) == EDGELLM_OK);
        CHECK_MSG(same_tokens(&got, want), "with its draft freed after %d tokens: '%s'", n_before,
                  got.text);
        CHECK(r.n_generated == 12 && r.stop_reason == EDGELLM_STOP_MAX_TOKENS);
        /* Proposals were checked only while the draft lived. */
        CHECK(prompt_first ? r.n_draft_proposed == 0
                           : r.n_draft_proposed > 0 && r.n_draft_accepted > 0);
        /* The prompt and the output but its last token, as without a draft. */
        CHECK(edgellm_context_n_past(ctx) == r.n_prompt_tokens + 11);
        edgellm_context_free(ctx);
    }

    /* Freed by on_token in the middle of a pass's accepted proposals. */
    edgellm_context *ctx = fresh_context(m, 64);
    static draft_freeing f;
    memset(&f, 0, sizeof f);
    f.draft = fresh_context(m, 64);
    f.free_at = 3;
    edgellm_generate_params gp = greedy_into(NULL, 12);
    gp.on_token = free_draft_at;
    gp.user_data = &f;
    gp.draft = f.draft;
    CHECK(ctx && edgellm_generate(ctx, "Once upon a time", &gp, &r) == EDGELLM_OK);
    CHECK(!f.draft && r.n_generated == 12 && r.n_draft_accepted > 0);
    CHECK_MSG(same_tokens(&f.out, want), "with its draft freed by on_token: '%s'", f.out.text);

    /* Two generations drafting with one context. */
    edgellm_context *second = fresh_context(m, 64), *draft = fresh_context(m, 64);
    static received got[2];
    memset(got, 0, sizeof got);
    edgellm_generation *gens[2] = {NULL, NULL};
    edgellm_context *ctxs[2] = {ctx, second};
    for (int i = 0; i < 2; i++) {
        edgellm_context_truncate(ctxs[i], 0);
        gp = greedy_into(&got[i], 12);
        gp.draft = draft;
        CHECK(ctxs[i] &&
              edgellm_generation_begin(ctxs[i], "Once upon a time", &gp, &gens[i]) == EDGELLM_OK);
        CHECK(gens[i] && edgellm_generation_next(gens[i], 2 + i, &ended) == EDGELLM_OK);
    }
    edgellm_context_free(draft);
    for (int i = 0; i < 2; i++) {
        CHECK(gens[i] && edgellm_generation_next(gens[i], INT32_MAX, &ended) == EDGELLM_OK);
        CHECK(edgellm_generation_finish(gens[i], NULL) == EDGELLM_OK);
        CHECK_MSG(same_tokens(&got[i], want), "generation %d sharing a freed draft: '%s'", i,
                  got[i].text);
    }
    edgellm_context_free(second);
    edgellm_context_free(ctx);
}

/* The greedy output of "Once upon a time" under grammar, with the grammar freed (when
 * free_early) after the first two tokens. */
static void grammar_output(edgellm_model *m, const char *grammar_text, bool free_early,
                           received *got)
{
    memset(got, 0, sizeof *got);
    edgellm_grammar *grammar = NULL;
    CHECK(edgellm_grammar_compile(m, grammar_text, strlen(grammar_text), NULL, &grammar) ==
          EDGELLM_OK);
    edgellm_context *ctx = fresh_context(m, 64);
    edgellm_generate_params gp = greedy_into(got, 12);
    gp.grammar = grammar;
    edgellm_generation *gen = NULL;
    int ended = 0;
    CHECK(ctx && grammar &&
          edgellm_generation_begin(ctx, "Once upon a time", &gp, &gen) == EDGELLM_OK);
    CHECK(gen && edgellm_generation_next(gen, 2, &ended) == EDGELLM_OK && !ended);
    if (free_early) {
        edgellm_grammar_free(grammar);
        grammar = NULL;
    }
    CHECK(gen && edgellm_generation_next(gen, INT32_MAX, &ended) == EDGELLM_OK && ended);
    CHECK(edgellm_generation_finish(gen, NULL) == EDGELLM_OK);
    edgellm_context_free(ctx);
    edgellm_grammar_free(grammar);
}

/* A grammar freed while a generation or a grammar state uses it stays until they are done:
 * same output, and the state goes on matching. Before session 25 both read freed memory. */
static void test_grammar_freed_first(edgellm_model *m)
{
    static const char text[] = "root ::= [a-z ]+ \".\"";
    static received kept, freed;
    grammar_output(m, text, false, &kept);
    grammar_output(m, text, true, &freed);
    CHECK(kept.n_tokens > 2);
    CHECK_MSG(same_tokens(&kept, &freed), "grammar freed under the generation: '%s' not '%s'",
              freed.text, kept.text);

    edgellm_grammar *grammar = NULL;
    edgellm_grammar_state *state = NULL;
    CHECK(edgellm_grammar_compile(m, text, strlen(text), NULL, &grammar) == EDGELLM_OK);
    CHECK(edgellm_grammar_state_create(grammar, &state) == EDGELLM_OK);
    edgellm_grammar_free(grammar);
    edgellm_token ids[8];
    int32_t n = 0;
    CHECK(edgellm_tokenize(m, "ab.", 3, 0, ids, 8, &n) == EDGELLM_OK && n > 0);
    for (int32_t i = 0; i < n; i++)
        CHECK(edgellm_grammar_state_accept(state, ids[i]) == EDGELLM_OK);
    CHECK(edgellm_grammar_state_can_end(state) == 1);
    edgellm_grammar_state_free(state);
}

/* The model freed first, while a context with an open generation, a batch, a grammar and a text
 * stream of it live: they keep working, with the same output, and the model's memory goes with
 * the last of them (the sanitizer build's leak check sees it). Before session 25 they read the
 * unmapped weights. */
static void test_model_freed_first(const received *want)
{
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL, &m) ==
          EDGELLM_OK);
    if (!m)
        return;
    edgellm_context *ctx = fresh_context(m, 64), *other = fresh_context(m, 64);
    edgellm_context_params bp = edgellm_context_default_params();
    bp.n_ctx = 64;
    bp.n_threads = 1;
    edgellm_batch *batch = NULL;
    edgellm_grammar *grammar = NULL;
    edgellm_text_stream *stream = NULL;
    CHECK(edgellm_batch_create(m, &bp, &batch) == EDGELLM_OK);
    CHECK(edgellm_grammar_compile(m, "root ::= [a-z]+", 15, NULL, &grammar) == EDGELLM_OK);
    CHECK(edgellm_text_stream_create(m, NULL, 0, &stream) == EDGELLM_OK);
    received got = {0};
    edgellm_generation *gen = open_greedy(ctx, &got, 3);
    int ended = 0;
    edgellm_model_free(m);
    m = NULL;

    CHECK(gen && edgellm_generation_next(gen, INT32_MAX, &ended) == EDGELLM_OK && ended);
    CHECK(edgellm_generation_finish(gen, NULL) == EDGELLM_OK);
    CHECK_MSG(same_tokens(&got, want), "with its model freed: '%s'", got.text);
    const edgellm_model *held = edgellm_context_model(other);
    CHECK(held && edgellm_n_vocab(held) == 512);
    edgellm_token one = 1;
    const edgellm_token *one_p = &one;
    int32_t n_one = 1;
    CHECK(edgellm_eval_batch(batch, &other, &one_p, &n_one, 1) == EDGELLM_OK);
    const char *text = NULL;
    size_t len = 0;
    int stopped = 0;
    CHECK(edgellm_text_stream_push(stream, want->tokens[0], &text, &len, &stopped) == EDGELLM_OK);
    edgellm_grammar_state *state = NULL;
    CHECK(edgellm_grammar_state_create(grammar, &state) == EDGELLM_OK);
    /* Freed in an order other than creation's. */
    edgellm_context_free(ctx);
    edgellm_grammar_free(grammar);
    edgellm_batch_free(batch);
    edgellm_text_stream_free(stream);
    edgellm_context_free(other);
    CHECK(state && edgellm_grammar_state_can_end(state) == 0);
    edgellm_grammar_state_free(state);
}

int main(void)
{
    static test_greedy_case cases[8];
    int n_cases = test_load_greedy_cases(cases, 8);
    CHECK(n_cases == 7);
    edgellm_model *m = NULL;
    CHECK(edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL, &m) ==
          EDGELLM_OK);
    if (m && n_cases > 0) {
        test_slices_equal_one_call(m);
        test_finish_early(m, &cases[0], 3, 0);
        test_finish_early(m, &cases[1], 0, 0);
        test_finish_early(m, &cases[2], -1, 0);
        test_finish_early(m, &cases[3], 2, 2);
        test_bad_arguments(m);
        static edgellm_token prompt[128];
        static received reference;
        int32_t n_prompt = long_prompt_tokens(m, prompt, 128, &reference);
        test_prompt_slices_same_logits(m, prompt, n_prompt);
        test_finish_during_prompt(m, prompt, n_prompt, &reference);
        test_owed_token_kept(m);
        test_prompt_left_counts_owed_token(m);
        static received want;
        reference_tokens(m, "Once upon a time", &want);
        test_null_and_counts(m);
        test_busy_context(m, &want);
        test_draft_busy(m, &want);
        test_callback_reentry(m, &want);
        test_cancel_between_calls(m, &want);
        test_context_freed_first(m);
        test_draft_freed_first(m, &want);
        test_grammar_freed_first(m);
        test_model_freed_first(&want);
    }
    edgellm_model_free(m);
    return test_finish("test_api_generation");
}
