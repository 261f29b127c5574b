/* The gateway's reading of speculative verification answers (src/gateway/speculative.h) on the
 * aidreams vocabulary: token texts back to ids, greedy and sampled verdicts, and every way an
 * answer can break the protocol (each must be refused with a reason, never read past). */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/edge.h"
#include "gateway/speculative.h"
#include "test_util.h"

static edgellm_model *model;
static gw_vocab_map *vocab;

static edgellm_token id_of(const char *text)
{
    return ellm_gw_vocab_map_find(vocab, text, strlen(text));
}

static void test_vocab_map(void)
{
    int32_t n = edgellm_n_vocab(model);
    int same = 0;
    for (edgellm_token t = 0; t < n; t++) {
        char a[64], b[64];
        size_t la = 0, lb = 0;
        edgellm_token_to_piece(model, t, a, sizeof a, &la);
        edgellm_token back = ellm_gw_vocab_map_find(vocab, a, la);
        if (back >= 0)
            edgellm_token_to_piece(model, back, b, sizeof b, &lb);
        same += back >= 0 && la == lb && !memcmp(a, b, la);
    }
    CHECK_MSG(same == n, "%d of %d token texts map to a token of the same text", same, n);
    /* greedy.tsv: ", as I sense" starts with token 446. */
    CHECK(id_of(",") == 446);
    CHECK(id_of("no such token text") == -1);
    /* "A" is both an ordinary token and the byte token <0x41> (id 3 + 0x41): the ordinary wins. */
    edgellm_token a = id_of("A");
    CHECK(a >= 0 && a != 3 + 0x41);
    /* "" is the text of the control tokens: the end of generation wins. */
    CHECK(edgellm_token_is_eog(model, id_of("")));
}

/* An echo answer for tokens sent (and one generated when gen is set): token_lps[i] is the
 * position's own log-probability, tops[i] its alternatives. */
static json_t *answer(int n, const double *token_lps, json_t **tops, const char *gen,
                      const char *finish)
{
    json_t *tokens = json_array(), *lps = json_array(), *tl = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(tokens, json_string("x"));
        json_array_append_new(lps, i ? json_real(token_lps[i]) : json_null());
        json_array_append_new(tl, i ? tops[i] : json_null());
    }
    if (gen) {
        json_array_append_new(tokens, json_string(gen));
        json_array_append_new(lps, json_real(-0.5));
        json_array_append_new(tl, json_pack("{s:f}", gen, -0.5));
    }
    return json_pack("{s:s,s:[{s:s,s:i,s:{s:o,s:o,s:o},s:s}]}", "model", "cloud", "choices", "text",
                     "", "index", 0, "logprobs", "tokens", tokens, "token_logprobs", lps,
                     "top_logprobs", tl, "finish_reason", finish);
}

static void test_greedy(void)
{
    gw_verdict v;
    char why[256];
    double lps[6] = {0, -1, -1, -0.2, -3, -1};
    json_t *tops[6] = {NULL};
    for (int i = 1; i < 6; i++)
        tops[i] = json_pack("{s:f,s:f}", ",", -0.2, " as", -1.5);
    /* Drafts at 3, 4, 5: the first is the argmax, the second is not -> the cloud's "," */
    json_t *a = answer(6, lps, tops, " as", "length");
    CHECK(ellm_gw_spec_judge_greedy(a, vocab, model, 6, 3, 3, &v, why, sizeof why));
    CHECK(v.n_accepted == 1 && v.next == 446 && !v.end && !v.unknown);
    json_decref(a);

    /* Every draft the argmax: the generated token is the cloud's next. */
    double all[4] = {0, -1, -0.2, -0.2};
    for (int i = 1; i < 4; i++)
        tops[i] = json_pack("{s:f,s:f}", ",", -0.2, " as", -1.5);
    a = answer(4, all, tops, ",", "length");
    CHECK(ellm_gw_spec_judge_greedy(a, vocab, model, 4, 2, 2, &v, why, sizeof why));
    CHECK(v.n_accepted == 2 && v.next == 446);
    json_decref(a);

    /* Nothing generated and "stop": the answer ends there; "length": refused. */
    for (int i = 1; i < 4; i++)
        tops[i] = json_pack("{s:f}", ",", -0.2);
    a = answer(4, all, tops, NULL, "stop");
    CHECK(ellm_gw_spec_judge_greedy(a, vocab, model, 4, 2, 2, &v, why, sizeof why) && v.end &&
          v.n_accepted == 2);
    json_object_set_new(json_array_get(json_object_get(a, "choices"), 0), "finish_reason",
                        json_string("length"));
    CHECK(!ellm_gw_spec_judge_greedy(a, vocab, model, 4, 2, 2, &v, why, sizeof why) &&
          strstr(why, "length"));
    /* Wrong counts: one token more or fewer sent than scored. */
    CHECK(!ellm_gw_spec_judge_greedy(a, vocab, model, 5, 2, 2, &v, why, sizeof why) &&
          strstr(why, "scores 4 tokens, 5 were sent"));
    CHECK(!ellm_gw_spec_judge_greedy(a, vocab, model, 2, 0, 1, &v, why, sizeof why));
    json_decref(a);

    /* A text no edge token has: unknown, not a guess. */
    for (int i = 1; i < 4; i++)
        tops[i] = json_pack("{s:f}", "\xEF\xBF\xBD", -0.1);
    a = answer(4, all, tops, NULL, "stop");
    CHECK(ellm_gw_spec_judge_greedy(a, vocab, model, 4, 2, 2, &v, why, sizeof why) && v.unknown &&
          v.next == -1 && v.n_accepted == 0);
    json_decref(a);

    /* Broken shapes. */
    const char *broken[] = {
        "{}",
        "{\"choices\": []}",
        "{\"choices\": [{\"logprobs\": null}]}",
        "{\"choices\": [{\"logprobs\": {\"tokens\": [\"a\",\"b\"], \"token_logprobs\": [null, -1],"
        " \"top_logprobs\": [null]}}]}",
        "{\"choices\": [{\"logprobs\": {\"tokens\": [\"a\",\"b\"], \"token_logprobs\": [null, "
        "\"x\"],"
        " \"top_logprobs\": [null, {\"a\": -1}]}}]}",
        "{\"choices\": [{\"logprobs\": {\"tokens\": [\"a\",\"b\"], \"token_logprobs\": [null, -1],"
        " \"top_logprobs\": [null, {}]}}]}",
        "{\"choices\": [{\"logprobs\": {\"tokens\": [\"a\",\"b\"], \"token_logprobs\": [null, -1],"
        " \"top_logprobs\": [null, {\"a\": \"high\"}]}}]}",
        "{\"choices\": [{\"logprobs\": {\"tokens\": [\"a\",\"b\"], \"token_logprobs\": [null, -1],"
        " \"top_logprobs\": [null, [1, 2]]}}]}",
        "{\"choices\": [{\"logprobs\": {\"tokens\": [\"a\",7], \"token_logprobs\": [null, -1],"
        " \"top_logprobs\": [null, {\"a\": -1}]}}]}",
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        json_t *j = json_loads(broken[i], 0, NULL);
        why[0] = '\0';
        /* Read as 2 tokens sent with a draft at 1 (answers 0-7 break that), and as 1 sent
         * and 1 generated (answers 0-3 break the shape, 8 the generated token's text; the
         * others hold no draft to judge, so they are fine that way). */
        bool ok1 = ellm_gw_spec_judge_greedy(j, vocab, model, 2, 1, 1, &v, why, sizeof why);
        if (i < 8)
            CHECK_MSG(!ok1 && why[0], "broken answer %zu refused with a reason", i);
        why[0] = '\0';
        bool ok2 = ellm_gw_spec_judge_greedy(j, vocab, model, 1, 1, 0, &v, why, sizeof why);
        if (i < 4 || i == 8)
            CHECK_MSG(!ok2 && why[0], "broken answer %zu (generated token) refused", i);
        json_decref(j);
    }
}

static void test_sampled(void)
{
    int32_t n_vocab = edgellm_n_vocab(model);
    float *flat = calloc((size_t)n_vocab * 2, sizeof *flat); /* q uniform: 1/512 each */
    edgellm_token comma = 446, as = id_of(" as");
    edgellm_token draft[2] = {comma, as};
    uint64_t rng = 42;
    gw_spec_sampling smp = {1.0, 1.0, flat, draft, &rng};
    gw_verdict v;
    char why[256];
    /* p(",") = 0.9 >> q: always kept; p(" as") = e^-30: always rejected, and the residual's
     * mass is nearly all on ",". */
    int kept = 0, comma_next = 0;
    for (int trial = 0; trial < 200; trial++) {
        double lps[4] = {0, -1, log(0.9), -30};
        json_t *tops[4] = {NULL, json_pack("{s:f}", ",", -1.0),
                           json_pack("{s:f,s:f}", ",", log(0.9), " the", log(0.1)),
                           json_pack("{s:f,s:f}", ",", log(0.95), " the", log(0.05))};
        json_t *a = answer(4, lps, tops, NULL, "stop");
        CHECK(ellm_gw_spec_judge_sampled(a, vocab, model, 4, 2, 2, &smp, &v, why, sizeof why));
        kept += v.n_accepted == 1;
        comma_next += v.next == comma;
        json_decref(a);
    }
    CHECK_MSG(kept == 200, "a token the cloud likes more than the edge is always kept (%d)", kept);
    CHECK_MSG(comma_next > 180, "the residual draws the cloud's likely token (%d of 200)",
              comma_next);
    free(flat);
}

int main(void)
{
    if (edgellm_model_load(test_shared_path("models/aidreams260K-f32.gguf"), NULL, &model) !=
        EDGELLM_OK) {
        fprintf(stderr, "cannot load the aidreams model: %s\n", edgellm_last_error());
        return 1;
    }
    vocab = ellm_gw_vocab_map_build(model);
    CHECK(vocab != NULL);
    if (vocab) {
        test_vocab_map();
        test_greedy();
        test_sampled();
    }
    ellm_gw_vocab_map_free(vocab);
    edgellm_model_free(model);
    return test_finish("test_gateway_verify");
}
