/* A generation run in slices (src/generate/generation.h) on the shared aidreams model: slices of
 * 1, 3 and 64 tokens, its prompt in slices of 1, 7 and 64 or in one, hand out the same tokens and
 * text, and end with the same result, as one edgellm_generate call (sampled, greedy to a full
 * context, at a stop string, speculative, a long prompt); a prompt in slices leaves the same
 * logits bit for bit; a generation finished before its end (its prompt's too) stops as a
 * callback would stop it, leaves the context usable and frees everything (the sanitizer build
 * checks the last part). */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <string.h>

#include "edgellm.h"
#include "generate/generation.h"
#include "generate/step.h"
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
        ellm_generation *gen = NULL;
        CHECK(ellm_generation_begin_text(ctx, gc->prompt, &gp, &gen) == EDGELLM_OK);
        bool ended = gen == NULL;
        while (prompt_slice > 0 && !ended && ellm_generation_prompt_left(gen) > 0) {
            int32_t before = ellm_generation_prompt_left(gen);
            CHECK(ellm_generation_prefill(gen, prompt_slice, &ended) == EDGELLM_OK && !ended);
            CHECK(got->n_tokens == 0 && ellm_generation_prompt_left(gen) < before);
        }
        while (!ended) {
            int before = got->n_tokens;
            CHECK(ellm_generation_next(gen, slice, &ended) == EDGELLM_OK);
            /* A plain pass hands out one token: a slice is exactly what was asked for. */
            if (!ended && !gp.lookup_ngram)
                CHECK_MSG(got->n_tokens - before == slice, "%s: slice of %d gave %d tokens",
                          gc->name, slice, got->n_tokens - before);
        }
        if (gen)
            CHECK(ellm_generation_finish(gen, res) == EDGELLM_OK);
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
        static const int32_t slices[] = {1, 3, 64};
        /* The prompt in slices of 1, 7 and 64 tokens, and in one. */
        static const int32_t prompt_slices[] = {7, 0, 64, 1};
        for (int k = 0; k < 4; k++) {
            int32_t prompt_slice = prompt_slices[k], slice = slices[k % 3];
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
    ellm_generation *gen = NULL;
    CHECK(ctx && ellm_generation_begin(ctx, prompt, n_prompt, &gp, &gen) == EDGELLM_OK);
    bool ended = false;
    int n_slices = 0;
    while (gen && ellm_generation_prompt_left(gen) > 0 && !ended) {
        CHECK(ellm_generation_prefill(gen, slice > 0 ? slice : INT32_MAX, &ended) == EDGELLM_OK);
        n_slices++;
    }
    CHECK_MSG(n_slices == (slice > 0 ? (n_prompt + slice - 1) / slice : 1), "%d slices of %d",
              n_slices, slice);
    const float *last = ctx ? edgellm_get_logits(ctx, -1) : NULL;
    CHECK(last != NULL && edgellm_context_n_past(ctx) == n_prompt);
    if (last)
        memcpy(logits, last, (size_t)n_vocab * sizeof *logits);
    if (gen)
        ellm_generation_finish(gen, NULL);
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
    ellm_generation *gen = NULL;
    CHECK(ctx && ellm_generation_begin(ctx, prompt, n_prompt, &gp, &gen) == EDGELLM_OK);
    bool ended = false;
    for (int i = 0; gen && i < 2; i++)
        CHECK(ellm_generation_prefill(gen, 7, &ended) == EDGELLM_OK && !ended);
    CHECK(gen && ellm_generation_prompt_left(gen) == n_prompt - 14);
    edgellm_generate_result r;
    CHECK(gen && ellm_generation_finish(gen, &r) == EDGELLM_OK);
    CHECK_MSG(r.stop_reason == EDGELLM_STOP_CALLBACK && r.n_generated == 0 && got.n_tokens == 0,
              "stop reason %d, %d generated", r.stop_reason, r.n_generated);
    CHECK_MSG(ctx && edgellm_context_n_past(ctx) == 14, "%d cached",
              ctx ? edgellm_context_n_past(ctx) : -1);
    CHECK(ctx && ellm_cache_common_prefix(ctx, prompt, n_prompt) == 14);

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
            ellm_generation *gen = NULL;
            bool ended = false;
            CHECK(ellm_generation_begin_text(ctx, " the cat", &gp, &gen) == EDGELLM_OK);
            CHECK(gen && ellm_generation_prefill(gen, 0, &ended) == EDGELLM_OK && !ended);
            CHECK(gen && ellm_generation_finish(gen, NULL) == EDGELLM_OK);
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
    ellm_generation *gen = NULL;
    CHECK(ellm_generation_begin_text(ctx, gc->prompt, &gp, &gen) == EDGELLM_OK);
    bool ended = false;
    if (n_slices == 0)
        CHECK(gen && ellm_generation_next(gen, 0, &ended) == EDGELLM_OK && !ended);
    for (int i = 0; gen && i < n_slices; i++)
        CHECK(ellm_generation_next(gen, 5, &ended) == EDGELLM_OK && !ended);
    edgellm_generate_result r;
    memset(&r, 0xff, sizeof r);
    CHECK(gen && ellm_generation_finish(gen, &r) == EDGELLM_OK);
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
    ellm_generation *gen = (ellm_generation *)&gen;
    edgellm_generate_params gp = edgellm_generate_default_params();
    edgellm_token one = 1;
    CHECK(ellm_generation_begin(ctx, &one, 0, &gp, &gen) == EDGELLM_ERR_INVALID_ARGUMENT &&
          gen == NULL);
    CHECK(ellm_generation_begin(NULL, &one, 1, &gp, &gen) == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK(ellm_generation_begin_text(ctx, NULL, &gp, &gen) == EDGELLM_ERR_INVALID_ARGUMENT &&
          gen == NULL);
    /* A prompt longer than the context: the first slice fails, finish says so again. */
    static edgellm_token long_prompt[100];
    for (int i = 0; i < 100; i++)
        long_prompt[i] = 1 + i % 50;
    CHECK(ellm_generation_begin(ctx, long_prompt, 100, &gp, &gen) == EDGELLM_OK);
    bool ended = false;
    CHECK(gen && ellm_generation_next(gen, 1, &ended) == EDGELLM_ERR_CONTEXT_FULL && ended);
    CHECK(gen && ellm_generation_next(gen, 1, &ended) == EDGELLM_ERR_CONTEXT_FULL && ended);
    edgellm_generate_result r;
    CHECK(gen && ellm_generation_finish(gen, &r) == EDGELLM_ERR_CONTEXT_FULL);
    CHECK(r.n_generated == 0 && r.n_prompt_tokens == 100);
    edgellm_context_free(ctx);
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
    }
    edgellm_model_free(m);
    return test_finish("test_generation");
}
