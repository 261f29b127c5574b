/* Speculative decoding on the shared aidreams model: greedy output identical to plain decoding
 * with a Q4_0 draft, the model as its own draft and prompt lookup; sampled output distributed as
 * the model's own sampling distribution (chi-square against probabilities computed here from the
 * logits); logits after a KV-cache rollback equal a fresh evaluation; drafts with another
 * vocabulary and bad settings refused. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "convert/synth.h"
#include "edgellm.h"
#include "gguf/gguf.h"
#include "test_util.h"

#define TARGET "models/aidreams260K-f32.gguf"

/* ---- draft models written for the tests ---- */

typedef struct variant {
    float output_norm_scale; /* scales the logits: the draft's distribution is flatter or sharper */
    int renamed_token;       /* >= 0: this token's text changed */
} variant;

/* A copy of the target with one change, so a draft can differ from it in a controlled way. */
static bool write_variant(const char *out_path, variant v)
{
    gguf_file *f = NULL;
    if (ellm_gguf_open(test_shared_path(TARGET), &f) != EDGELLM_OK)
        return false;
    gguf_writer *w = ellm_gguf_writer_create();
    bool ok = w != NULL;
    char **texts = NULL;
    for (uint64_t i = 0; ok && i < ellm_gguf_kv_count(f); i++) {
        const gguf_kv *kv = ellm_gguf_kv_at(f, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.data);
        ok = ellm_gguf_writer_set_value(w, key, &kv->value) == EDGELLM_OK;
        if (ok && v.renamed_token >= 0 && !strcmp(key, "tokenizer.ggml.tokens")) {
            const gguf_array *a = &kv->value.v.arr;
            texts = calloc(a->n, sizeof *texts);
            for (uint64_t t = 0; texts && t < a->n; t++)
                if ((texts[t] = malloc(a->strings[t].len + 8)))
                    snprintf(texts[t], a->strings[t].len + 8, "%s%.*s",
                             (int)t == v.renamed_token ? "x" : "", (int)a->strings[t].len,
                             a->strings[t].data);
            ok = texts && ellm_gguf_writer_set_str_array(w, key, (const char *const *)texts,
                                                         a->n) == EDGELLM_OK;
            for (uint64_t t = 0; texts && t < a->n; t++)
                free(texts[t]);
            free(texts);
        }
    }
    float *norm = NULL;
    for (uint64_t i = 0; ok && i < ellm_gguf_tensor_count(f); i++) {
        const gguf_tensor_info *t = ellm_gguf_tensor_at(f, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.data);
        const void *data = t->data;
        if (!strcmp(name, "output_norm.weight") && t->type == ELLM_TYPE_F32) {
            norm = malloc(t->n_bytes);
            ok = norm != NULL;
            for (uint64_t k = 0; ok && k < t->n_elements; k++)
                norm[k] = ((const float *)t->data)[k] * v.output_norm_scale;
            data = norm;
        }
        ok = ok && ellm_gguf_writer_add_tensor(w, name, (ellm_type)t->type, t->n_dims, t->ne,
                                               data) == EDGELLM_OK;
    }
    ok = ok && norm && ellm_gguf_writer_write(w, out_path) == EDGELLM_OK;
    free(norm);
    ellm_gguf_writer_free(w);
    ellm_gguf_close(f);
    return ok;
}

static edgellm_model *load(const char *path)
{
    edgellm_model *m = NULL;
    if (edgellm_model_load(path, NULL, &m) != EDGELLM_OK)
        fprintf(stderr, "cannot load %s: %s\n", path, edgellm_last_error());
    return m;
}

static edgellm_context *make_context(edgellm_model *m)
{
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_threads = 1;
    edgellm_context *ctx = NULL;
    if (m && edgellm_context_create(m, &cp, &ctx) != EDGELLM_OK)
        fprintf(stderr, "cannot create a context: %s\n", edgellm_last_error());
    return ctx;
}

typedef struct collected {
    edgellm_token tokens[64];
    int n_tokens;
    char text[2048];
    size_t len;
    int stop_after; /* stop once this many tokens arrived (0 = never) */
} collected;

static int collect(void *user, edgellm_token token, const char *text, size_t len)
{
    collected *c = user;
    if (len > 0 && c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    if (token >= 0 && c->n_tokens < 64)
        c->tokens[c->n_tokens++] = token;
    return c->stop_after > 0 && c->n_tokens >= c->stop_after;
}

/* ---- greedy: token for token the plain output ---- */

typedef struct source {
    const char *name;
    edgellm_context *draft;
    int lookup, draft_max;
    const char *prompt; /* for the sampled test */
} source;

static void test_greedy_identical(edgellm_context *ctx, const source *src,
                                  const test_greedy_case *cases, int n_cases)
{
    int proposed = 0, accepted = 0;
    for (int i = 0; i < n_cases; i++) {
        collected c = {0};
        edgellm_generate_params gp = edgellm_generate_default_params();
        gp.max_tokens = 48;
        gp.sampling.temperature = 0;
        gp.on_token = collect;
        gp.user_data = &c;
        gp.draft = src->draft;
        gp.lookup_ngram = src->lookup;
        gp.draft_max = src->draft_max;
        edgellm_generate_result r;
        edgellm_status st = edgellm_generate(ctx, cases[i].prompt, &gp, &r);
        CHECK_MSG(st == EDGELLM_OK, "%s: %s", src->name, edgellm_last_error());
        CHECK(r.n_generated == 48 && r.stop_reason == EDGELLM_STOP_MAX_TOKENS);
        CHECK_MSG(c.n_tokens == 48 && !memcmp(c.tokens, cases[i].ids, sizeof cases[i].ids),
                  "%s: greedy ids for \"%s\" differ from plain decoding", src->name,
                  cases[i].prompt);
        CHECK_MSG(!strcmp(c.text, cases[i].text), "%s: text for \"%s\"\n got  \"%s\"\n want \"%s\"",
                  src->name, cases[i].prompt, c.text, cases[i].text);
        /* Every pass but the prompt's yields its accepted proposals and one token of its own. */
        CHECK(r.n_draft_accepted <= r.n_draft_proposed);
        CHECK_MSG(r.n_generated == 1 + r.n_target_passes + r.n_draft_accepted,
                  "%s: %d tokens from %d passes and %d accepted proposals", src->name,
                  r.n_generated, r.n_target_passes, r.n_draft_accepted);
        proposed += r.n_draft_proposed;
        accepted += r.n_draft_accepted;
    }
    fprintf(stderr, "%s: %d of %d proposals accepted\n", src->name, accepted, proposed);
    /* Otherwise the comparison above would not have exercised anything. */
    CHECK_MSG(proposed > 0 && accepted > 0, "%s made no accepted proposals", src->name);
}

/* ---- KV rollback ---- */

static void test_rollback(edgellm_model *m)
{
    edgellm_context *a = make_context(m), *b = make_context(m);
    if (!a || !b) {
        CHECK(a && b);
        edgellm_context_free(a);
        edgellm_context_free(b);
        return;
    }
    const edgellm_token prompt[] = {1, 400, 301, 350, 290, 310};
    const edgellm_token proposals[] = {280, 281, 282, 283};
    const edgellm_token next = 333;
    CHECK(edgellm_eval(a, prompt, 6, 0) == EDGELLM_OK);
    CHECK(edgellm_eval(a, proposals, 4, 1) == EDGELLM_OK);
    CHECK(edgellm_context_truncate(a, 7) == EDGELLM_OK); /* keep the first proposal */
    CHECK(edgellm_eval(a, &next, 1, 0) == EDGELLM_OK);
    int32_t n = 0;
    const edgellm_token *kept = edgellm_context_tokens(a, &n);
    CHECK(n == 8 && kept[6] == proposals[0] && kept[7] == next);

    const edgellm_token fresh[] = {1, 400, 301, 350, 290, 310, 280, 333};
    CHECK(edgellm_eval(b, fresh, 8, 0) == EDGELLM_OK);
    const float *la = edgellm_get_logits(a, -1), *lb = edgellm_get_logits(b, -1);
    CHECK(la && lb && !memcmp(la, lb, (size_t)edgellm_n_vocab(m) * sizeof *la));
    edgellm_context_free(a);
    edgellm_context_free(b);
}

/* ---- sampling: the model's distribution ---- */

/* The sampler's distribution for temperature 1 and top-k k (no other filter), computed here:
 * ids[0 .. k) and their probabilities. */
static void top_k_softmax(const float *logits, int32_t n_vocab, int k, int32_t *ids, double *p)
{
    for (int j = 0; j < k; j++) {
        int32_t best = -1;
        for (int32_t t = 0; t < n_vocab; t++) {
            bool taken = false;
            for (int u = 0; u < j; u++)
                taken |= ids[u] == t;
            if (!taken && (best < 0 || logits[t] > logits[best]))
                best = t;
        }
        ids[j] = best;
    }
    double sum = 0;
    for (int j = 0; j < k; j++)
        sum += p[j] = exp((double)logits[ids[j]] - logits[ids[0]]);
    for (int j = 0; j < k; j++)
        p[j] /= sum;
}

#define TOP_K 4
#define N_SAMPLES 3000

/* Draws the first two tokens N_SAMPLES times (the second is the first one a pass checks
 * proposals for) and compares their joint frequencies with p(t1) p(t2 | t1) by chi-square. */
static void test_sampled_distribution(edgellm_context *ctx, const source *src)
{
    edgellm_model *m = (edgellm_model *)edgellm_context_model(ctx);
    int32_t n_vocab = edgellm_n_vocab(m);
    const char *prompt = src->prompt;
    edgellm_token ids[128];
    int32_t n_prompt = 0;
    CHECK(edgellm_tokenize(m, prompt, strlen(prompt), EDGELLM_TOKENIZE_ADD_BOS, ids, 128,
                           &n_prompt) == EDGELLM_OK);
    int32_t first[TOP_K], second[TOP_K][TOP_K];
    double p1[TOP_K], p2[TOP_K][TOP_K];
    CHECK(edgellm_context_truncate(ctx, 0) == EDGELLM_OK);
    CHECK(edgellm_eval(ctx, ids, n_prompt, 0) == EDGELLM_OK);
    top_k_softmax(edgellm_get_logits(ctx, -1), n_vocab, TOP_K, first, p1);
    for (int a = 0; a < TOP_K; a++) {
        CHECK(edgellm_context_truncate(ctx, n_prompt) == EDGELLM_OK);
        CHECK(edgellm_eval(ctx, &first[a], 1, 0) == EDGELLM_OK);
        top_k_softmax(edgellm_get_logits(ctx, -1), n_vocab, TOP_K, second[a], p2[a]);
    }

    long counts[TOP_K][TOP_K] = {{0}}, outside = 0;
    long proposed = 0, accepted = 0;
    for (int s = 0; s < N_SAMPLES; s++) {
        collected c = {.stop_after = 2};
        edgellm_generate_params gp = edgellm_generate_default_params();
        gp.max_tokens = 3;
        gp.sampling.temperature = 1.0f;
        gp.sampling.top_k = TOP_K;
        gp.sampling.top_p = 1.0f;
        gp.sampling.min_p = 0.0f;
        gp.sampling.seed = 12345u + (uint64_t)s;
        gp.on_token = collect;
        gp.user_data = &c;
        gp.draft = src->draft;
        gp.lookup_ngram = src->lookup;
        gp.draft_max = src->draft_max;
        edgellm_generate_result r;
        edgellm_status st = edgellm_generate_tokens(ctx, ids, n_prompt, &gp, &r);
        /* End of sequence is a token of the distribution too, though never delivered. */
        if (st == EDGELLM_OK && r.stop_reason == EDGELLM_STOP_EOS && c.n_tokens < 2)
            c.tokens[c.n_tokens++] = edgellm_token_eos(m);
        if (st != EDGELLM_OK || c.n_tokens != 2) {
            CHECK_MSG(false, "%s: sample %d gave %d tokens (stop %d): %s", src->name, s, c.n_tokens,
                      (int)r.stop_reason, edgellm_last_error());
            return;
        }
        proposed += r.n_draft_proposed;
        accepted += r.n_draft_accepted;
        int a = 0, b = 0;
        while (a < TOP_K && first[a] != c.tokens[0])
            a++;
        while (a < TOP_K && b < TOP_K && second[a][b] != c.tokens[1])
            b++;
        if (a == TOP_K || b == TOP_K)
            outside++;
        else
            counts[a][b]++;
    }
    /* Chi-square over the cells expecting at least 5 draws; the rest pooled into one. */
    double chi2 = 0, pooled_e = 0;
    long pooled_o = 0;
    int cells = 0;
    for (int a = 0; a < TOP_K; a++)
        for (int b = 0; b < TOP_K; b++) {
            double e = N_SAMPLES * p1[a] * p2[a][b];
            if (e < 5) {
                pooled_e += e;
                pooled_o += counts[a][b];
                continue;
            }
            chi2 += (counts[a][b] - e) * (counts[a][b] - e) / e;
            cells++;
        }
    if (pooled_e > 0) {
        chi2 += (pooled_o - pooled_e) * (pooled_o - pooled_e) / (pooled_e > 1e-9 ? pooled_e : 1e-9);
        cells++;
    }
    /* Upper 0.1 % point of chi-square with cells - 1 degrees of freedom (Wilson-Hilferty). */
    double dof = cells - 1, z = 3.09;
    double critical = dof * pow(1 - 2 / (9 * dof) + z * sqrt(2 / (9 * dof)), 3);
    fprintf(stderr,
            "%s: %ld of %ld proposals accepted; chi-square %.1f over %d cells (0.1 %% critical "
            "%.1f)\n",
            src->name, accepted, proposed, chi2, cells, critical);
    CHECK_MSG(outside == 0, "%s: %ld draws outside the top-%d tokens", src->name, outside, TOP_K);
    CHECK_MSG(chi2 < critical, "%s: the sampled tokens do not follow the model's distribution",
              src->name);
    /* Both outcomes of the acceptance rule must have happened often for the test to mean much. */
    CHECK_MSG(
        proposed > N_SAMPLES / 2 && accepted > proposed / 10 && proposed - accepted > proposed / 10,
        "%s: %ld proposals, %ld accepted: too few of one kind", src->name, proposed, accepted);
}

/* ---- refusals ---- */

static void test_refusals(edgellm_context *ctx, edgellm_context *draft)
{
    edgellm_model *m = (edgellm_model *)edgellm_context_model(ctx);
    const char *other_vocab = test_tmp_path("spec_other_vocab.gguf");
    const char *renamed = test_tmp_path("spec_renamed_token.gguf");
    ellm_synth_shape shape = {"custom", 64, 1, 4, 4, 128, 256, 10000.0f, true};
    CHECK(ellm_synth_model(&shape, ELLM_TYPE_F32,
                           test_shared_path("models/llama2-vocab-tiny-f16.gguf"), other_vocab,
                           7) == EDGELLM_OK);
    CHECK(write_variant(renamed, (variant){1.0f, 300}));
    edgellm_model *wrong_size = load(other_vocab), *wrong_text = load(renamed);
    CHECK(edgellm_model_check_draft(m, edgellm_context_model(draft)) == EDGELLM_OK);
    if (wrong_size) {
        CHECK(edgellm_model_check_draft(m, wrong_size) == EDGELLM_ERR_INVALID_ARGUMENT);
        CHECK_MSG(strstr(edgellm_last_error(), "32000") && strstr(edgellm_last_error(), "512"),
                  "message: %s", edgellm_last_error());
        /* Generation refuses it before doing anything. */
        edgellm_context *dctx = make_context(wrong_size);
        collected c = {0};
        edgellm_generate_params gp = edgellm_generate_default_params();
        gp.on_token = collect;
        gp.user_data = &c;
        gp.draft = dctx;
        edgellm_generate_result r;
        CHECK(edgellm_generate(ctx, "Once upon", &gp, &r) == EDGELLM_ERR_INVALID_ARGUMENT);
        CHECK(c.n_tokens == 0 && r.n_generated == 0);
        edgellm_context_free(dctx);
    }
    if (wrong_text) {
        CHECK(edgellm_model_check_draft(m, wrong_text) == EDGELLM_ERR_INVALID_ARGUMENT);
        CHECK_MSG(strstr(edgellm_last_error(), "token 300"), "message: %s", edgellm_last_error());
    }
    edgellm_model_free(wrong_size);
    edgellm_model_free(wrong_text);

    struct {
        const char *what;
        edgellm_context *draft;
        int lookup, draft_max, draft_min, forced;
        float rate;
    } bad[] = {
        {"draft and lookup", draft, 2, 8, 1, 0, 0},
        {"draft_max 0", draft, 0, 0, 0, 0, 0},
        {"draft_max 65", NULL, 2, 65, 1, 0, 0},
        {"draft_min above draft_max", draft, 0, 4, 5, 0, 0},
        {"lookup 65", NULL, 65, 8, 1, 0, 0},
        {"lookup -1", NULL, -1, 8, 1, 0, 0},
        {"forced rate 1.5", draft, 0, 8, 1, 1, 1.5f},
        {"forced rate NaN", draft, 0, 8, 1, 1, NAN},
        {"own context as draft", ctx, 0, 8, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        edgellm_generate_params gp = edgellm_generate_default_params();
        gp.draft = bad[i].draft;
        gp.lookup_ngram = bad[i].lookup;
        gp.draft_max = bad[i].draft_max;
        gp.draft_min = bad[i].draft_min;
        gp.benchmark_force_acceptance = bad[i].forced;
        gp.benchmark_acceptance_rate = bad[i].rate;
        CHECK_MSG(edgellm_generate(ctx, "Once upon", &gp, NULL) == EDGELLM_ERR_INVALID_ARGUMENT,
                  "%s accepted", bad[i].what);
    }
}

/* The benchmark-only knob: every proposal accepted at rate 1, none at rate 0. */
static void test_forced_acceptance(edgellm_context *ctx, edgellm_context *draft)
{
    for (int rate = 0; rate <= 1; rate++) {
        edgellm_generate_params gp = edgellm_generate_default_params();
        gp.max_tokens = 40;
        gp.sampling.seed = 5;
        gp.draft = draft;
        gp.benchmark_force_acceptance = 1;
        gp.benchmark_acceptance_rate = (float)rate;
        edgellm_generate_result r;
        CHECK(edgellm_generate(ctx, "Once upon a time", &gp, &r) == EDGELLM_OK);
        CHECK(r.n_draft_proposed > 0);
        CHECK_MSG(r.n_draft_accepted == (rate ? r.n_draft_proposed : 0),
                  "rate %d: %d of %d accepted", rate, r.n_draft_accepted, r.n_draft_proposed);
    }
}

int main(void)
{
    static test_greedy_case cases[8];
    int n_cases = test_load_greedy_cases(cases, 8);
    CHECK(n_cases == 7);
    const char *q4_path = test_tmp_path("spec_draft_q4_0.gguf");
    const char *flat_path = test_tmp_path("spec_draft_flat.gguf");
    CHECK(ellm_quantize_model(test_shared_path(TARGET), q4_path, ELLM_TYPE_Q4_0, NULL) ==
          EDGELLM_OK);
    /* Logits at 0.4 of the model's: the same ranking, a clearly flatter distribution. */
    CHECK(write_variant(flat_path, (variant){0.4f, -1}));
    edgellm_model *target = load(test_shared_path(TARGET));
    edgellm_model *q4 = load(q4_path), *flat = load(flat_path);
    edgellm_context *ctx = make_context(target), *self_draft = make_context(target);
    edgellm_context *q4_draft = make_context(q4), *flat_draft = make_context(flat);
    if (!ctx || !self_draft || !q4_draft || !flat_draft)
        return test_finish("test_speculative");

    const source greedy_sources[] = {
        {"Q4_0 draft", q4_draft, 0, 8, NULL},
        {"Q4_0 draft, 3 per pass", q4_draft, 0, 3, NULL},
        {"F32 model as its own draft", self_draft, 0, 8, NULL},
        {"lookup 2", NULL, 2, 8, NULL},
        {"lookup 1", NULL, 1, 5, NULL},
    };
    for (size_t i = 0; i < sizeof greedy_sources / sizeof greedy_sources[0]; i++)
        test_greedy_identical(ctx, &greedy_sources[i], cases, n_cases);
    test_rollback(target);
    const source sampled_sources[] = {
        {"flat draft, sampled", flat_draft, 0, 1, "The stars whisper secrets. The stars"},
        /* Repeats itself, so looking up the first token finds proposals the model may take. */
        {"lookup 1, sampled", NULL, 1, 1,
         "Classifications unfold, a kaleidoscope of probability revealing hidden patterns. "
         "Classifications unfold, a kaleidoscope"},
    };
    for (size_t i = 0; i < sizeof sampled_sources / sizeof sampled_sources[0]; i++)
        test_sampled_distribution(ctx, &sampled_sources[i]);
    test_refusals(ctx, q4_draft);
    test_forced_acceptance(ctx, flat_draft);

    edgellm_context_free(ctx);
    edgellm_context_free(self_draft);
    edgellm_context_free(q4_draft);
    edgellm_context_free(flat_draft);
    edgellm_model_free(target);
    edgellm_model_free(q4);
    edgellm_model_free(flat);
    return test_finish("test_speculative");
}
