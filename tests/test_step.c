/* The generation step shared by edgellm_generate and the server's scheduler (src/generate/step.c)
 * on the shared aidreams model: which cached prefix a prompt reuses, the limits and their order,
 * end-of-generation, a stop string cutting the streamed text, a failed draw, and a grammar that
 * ends the sequence once its output is complete. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <string.h>

#include "edgellm.h"
#include "generate/step.h"
#include "test_util.h"

static void test_reuse_prefix(edgellm_model *m)
{
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, NULL, &ctx) == EDGELLM_OK);
    if (!ctx)
        return;
    edgellm_token cached[6] = {1, 20, 21, 22, 23, 24};
    CHECK(edgellm_eval(ctx, cached, 6, 0) == EDGELLM_OK);
    edgellm_token other[4] = {1, 20, 99, 100};
    CHECK(ellm_cache_common_prefix(ctx, other, 4) == 2);
    CHECK(ellm_cache_common_prefix(ctx, cached, 6) == 6);
    /* The same prompt again: its last token is evaluated again, for the logits. */
    CHECK(ellm_cache_reuse_prefix(ctx, cached, 6) == 5 && edgellm_context_n_past(ctx) == 5);
    CHECK(ellm_cache_reuse_prefix(ctx, other, 4) == 2 && edgellm_context_n_past(ctx) == 2);
    edgellm_token fresh[3] = {7, 8, 9};
    CHECK(ellm_cache_reuse_prefix(ctx, fresh, 3) == 0 && edgellm_context_n_past(ctx) == 0);
    edgellm_context_free(ctx);
}

static void test_limits(void)
{
    ellm_step s = {.base = 5};
    s.n_generated = 3; /* the newest token goes to position 7 of 8 */
    CHECK(ellm_step_limit(&s, 8, 0) == EDGELLM_STOP_NONE);
    CHECK(ellm_step_limit(&s, 8, 4) == EDGELLM_STOP_NONE);
    CHECK(ellm_step_limit(&s, 8, 3) == EDGELLM_STOP_MAX_TOKENS);
    s.n_generated = 4; /* no position left for it: a full context wins over the budget */
    CHECK(ellm_step_limit(&s, 8, 4) == EDGELLM_STOP_CONTEXT_FULL);
    CHECK(ellm_step_limit(&s, 9, 0) == EDGELLM_STOP_NONE);
}

/* Pushes the tokens of text through a fresh step *s that stops at stop; out gets the text handed
 * out. */
static void accept_text(edgellm_model *m, const char *text, const char *stop, char *out, size_t cap,
                        ellm_step *s)
{
    edgellm_sampler_params sp = edgellm_sampler_default_params();
    const char *stops[1] = {stop};
    edgellm_token prompt[1] = {1};
    CHECK(ellm_step_init(s, m, &sp, stops, 1, prompt, 1) == EDGELLM_OK);
    edgellm_token ids[64];
    int32_t n = 0;
    CHECK(edgellm_tokenize(m, text, strlen(text), 0, ids, 64, &n) == EDGELLM_OK);
    size_t len = 0;
    out[0] = '\0';
    for (int32_t i = 0; i < n && s->stop == EDGELLM_STOP_NONE; i++) {
        const char *piece = NULL;
        size_t piece_len = 0;
        CHECK(ellm_step_accept(s, ids[i], &piece, &piece_len) == EDGELLM_OK);
        if (piece_len > 0 && len + piece_len < cap) {
            memcpy(out + len, piece, piece_len);
            out[len += piece_len] = '\0';
        }
    }
}

static void test_accept(edgellm_model *m)
{
    ellm_step s;
    char out[256];
    accept_text(m, "Once upon a time there was a dog", "a time", out, sizeof out, &s);
    /* The tokenizer's dummy space prefix is part of the tokens' text. */
    CHECK_MSG(s.stop == EDGELLM_STOP_STRING && !strcmp(out, " Once upon "), "stop %d, text \"%s\"",
              (int)s.stop, out);
    int32_t generated = s.n_generated;
    CHECK(generated > 0);
    ellm_step_free(&s);
    CHECK(s.sampler == NULL && s.text == NULL);

    edgellm_sampler_params sp = edgellm_sampler_default_params();
    edgellm_token prompt[1] = {1};
    CHECK(ellm_step_init(&s, m, &sp, NULL, 0, prompt, 1) == EDGELLM_OK);
    const char *piece = NULL;
    size_t len = 0;
    CHECK(ellm_step_accept(&s, -1, &piece, &len) != EDGELLM_OK);
    CHECK(strstr(edgellm_last_error(), "no token can be sampled") != NULL);
    edgellm_token eos = edgellm_token_eos(m);
    CHECK(eos >= 0 && ellm_step_accept(&s, eos, &piece, &len) == EDGELLM_OK);
    CHECK(s.stop == EDGELLM_STOP_EOS && s.n_generated == 0 && len == 0);
    ellm_step_free(&s);
}

static void test_grammar_done(edgellm_model *m)
{
    const char *gbnf = "root ::= \"Once upon\"";
    edgellm_grammar *g = NULL;
    CHECK(edgellm_grammar_compile(m, gbnf, strlen(gbnf), NULL, &g) == EDGELLM_OK);
    edgellm_context *ctx = NULL;
    CHECK(edgellm_context_create(m, NULL, &ctx) == EDGELLM_OK);
    if (!g || !ctx) {
        edgellm_grammar_free(g);
        edgellm_context_free(ctx);
        return;
    }
    edgellm_sampler_params sp = edgellm_sampler_default_params();
    sp.temperature = 0;
    edgellm_token tok = 1;
    ellm_step s;
    CHECK(ellm_step_init(&s, m, &sp, NULL, 0, &tok, 1) == EDGELLM_OK);
    CHECK(ellm_step_start_grammar(&s, g) == EDGELLM_OK);
    char out[64] = "";
    size_t n_out = 0;
    edgellm_status st = EDGELLM_OK;
    for (int i = 0; i < 16 && st == EDGELLM_OK && s.stop == EDGELLM_STOP_NONE; i++) {
        st = edgellm_eval(ctx, &tok, 1, 0);
        const float *scores = ellm_step_scores(&s, edgellm_get_logits(ctx, -1), &st);
        if (!scores)
            break;
        tok = ellm_step_sample(&s, scores);
        const char *piece = NULL;
        size_t len = 0;
        st = ellm_step_accept(&s, tok, &piece, &len);
        if (len > 0 && n_out + len < sizeof out) {
            memcpy(out + n_out, piece, len);
            out[n_out += len] = '\0';
        }
    }
    /* Text still held back for a possible stop string or character comes with the finish. */
    const char *rest = NULL;
    size_t rest_len = 0;
    CHECK(edgellm_text_stream_finish(s.text, &rest, &rest_len) == EDGELLM_OK);
    if (rest_len > 0 && n_out + rest_len < sizeof out) {
        memcpy(out + n_out, rest, rest_len);
        out[n_out += rest_len] = '\0';
    }
    CHECK_MSG(st == EDGELLM_OK && s.stop == EDGELLM_STOP_GRAMMAR_DONE && !strcmp(out, "Once upon"),
              "status %d, stop %d, text \"%s\"", (int)st, (int)s.stop, out);
    ellm_step_free(&s);
    edgellm_context_free(ctx);
    edgellm_grammar_free(g);
}

int main(void)
{
    edgellm_model *m = NULL;
    edgellm_status st = edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL,
                                           &m);
    CHECK_MSG(st == EDGELLM_OK, "%s", edgellm_last_error());
    if (m) {
        test_reuse_prefix(m);
        test_accept(m);
        test_grammar_done(m);
        edgellm_model_free(m);
    }
    test_limits();
    return test_finish("test_step");
}
