/* A generation run in slices (src/generate/generation.h) on the shared aidreams model: slices of
 * 1, 3 and 64 tokens hand out the same tokens and text, and end with the same result, as one
 * edgellm_generate call (sampled, greedy to a full context, at a stop string, speculative); a
 * generation finished before its end stops as a callback would stop it, leaves the context usable
 * and frees everything (the sanitizer build checks the last part). */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <string.h>

#include "edgellm.h"
#include "generate/generation.h"
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
static void run_case(edgellm_model *m, const generation_case *gc, int32_t slice, received *got,
                     edgellm_generate_result *res, int32_t *n_past)
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
    generation_case cases[4];
    for (int i = 0; i < 4; i++)
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

    static received one, sliced;
    for (int c = 0; c < 4; c++) {
        const generation_case *gc = &cases[c];
        edgellm_generate_result want, got;
        int32_t past_want = 0, past_got = 0;
        run_case(m, gc, 0, &one, &want, &past_want);
        CHECK_MSG(one.n_tokens > 20, "%s: %d tokens", gc->name, one.n_tokens);
        static const int32_t slices[] = {1, 3, 64};
        for (int k = 0; k < 3; k++) {
            run_case(m, gc, slices[k], &sliced, &got, &past_got);
            CHECK_MSG(
                sliced.n_tokens == one.n_tokens &&
                    !memcmp(sliced.tokens, one.tokens, (size_t)one.n_tokens * sizeof *one.tokens),
                "%s, slices of %d: %d tokens against %d, or other ones", gc->name, slices[k],
                sliced.n_tokens, one.n_tokens);
            CHECK_MSG(!strcmp(sliced.text, one.text), "%s, slices of %d: text differs", gc->name,
                      slices[k]);
            CHECK_MSG(got.stop_reason == want.stop_reason && got.n_generated == want.n_generated &&
                          got.n_prompt_tokens == want.n_prompt_tokens &&
                          got.n_target_passes == want.n_target_passes &&
                          got.n_draft_proposed == want.n_draft_proposed &&
                          got.n_draft_accepted == want.n_draft_accepted && past_got == past_want,
                      "%s, slices of %d: stop %d/%d, generated %d/%d, passes %d/%d, cached %d/%d",
                      gc->name, slices[k], got.stop_reason, want.stop_reason, got.n_generated,
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
    }
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
    edgellm_generate_params gp = edgellm_generate_default_params();
    gp.max_tokens = 100;
    gp.sampling.temperature = 0;
    gp.lookup_ngram = lookup_ngram;
    gp.on_token = receive;
    gp.user_data = &got;
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
    }
    edgellm_model_free(m);
    return test_finish("test_generation");
}
