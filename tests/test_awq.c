/* AWQ fold (optimise/awq.c): scales searched for Q4_0 on the shared aidreams model's statistics,
 * folded into a copy written at F32 (no rounding). The copy must compute the original's logits to
 * float tolerance, while its weights really changed (some groups folded, through a norm and
 * through a preceding matrix); the same copy with only the matrix columns scaled (the fold left
 * out) must not, so the comparison can fail. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "edgellm.h"
#include "gguf/gguf.h"
#include "optimise/awq.h"
#include "optimise/imatrix.h"
#include "test_util.h"

static int folded_norm_groups, folded_matrix_groups;

static void count_group(void *user, const char *group, float alpha)
{
    (void)user;
    if (alpha > 0) {
        bool through_matrix = strstr(group, "attn_output") || strstr(group, "ffn_down");
        *(through_matrix ? &folded_matrix_groups : &folded_norm_groups) += 1;
    }
}

typedef struct fold {
    const ellm_awq *awq;
    bool columns_only; /* the broken variant: scale the columns, skip the producers */
} fold;

static void transform(void *user, const char *tensor, uint64_t row, float *x, int64_t n)
{
    const fold *f = user;
    if (f->columns_only &&
        (strstr(tensor, "norm") || strstr(tensor, "attn_v") || strstr(tensor, "ffn_up")))
        return;
    ellm_awq_transform_row(f->awq, tensor, row, x, n);
}

static float *logits_of(const char *path, const edgellm_token *ids, int32_t n, int32_t n_vocab)
{
    edgellm_model *m = NULL;
    edgellm_context *ctx = NULL;
    float *out = malloc((size_t)n * (size_t)n_vocab * sizeof *out);
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = n;
    cp.n_batch = n;
    cp.kv_type = EDGELLM_KV_F32; /* an F16 cache would round the scaled v rows differently */
    CHECK(edgellm_model_load(path, NULL, &m) == EDGELLM_OK);
    CHECK(m && edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK);
    CHECK(ctx && edgellm_eval(ctx, ids, n, 1) == EDGELLM_OK);
    for (int32_t i = 0; ctx && i < n; i++)
        memcpy(out + (size_t)i * n_vocab, edgellm_get_logits(ctx, i),
               (size_t)n_vocab * sizeof *out);
    edgellm_context_free(ctx);
    edgellm_model_free(m);
    return out;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *amax)
{
    double d = 0;
    *amax = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        *amax = fmax(*amax, fabs((double)a[i]));
    }
    return d;
}

int main(void)
{
    const char *src = test_shared_path("models/aidreams260K-f32.gguf");
    size_t len = 0;
    char *text = test_read_file(test_shared_path("testdata/aidreams/logits-ids.txt"), &len);
    CHECK(text != NULL);
    edgellm_token ids[64];
    int32_t n = 0;
    for (char *p = text, *end; p && n < 64; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        ids[n++] = (edgellm_token)v;
    }
    free(text);
    CHECK(n == 55);

    ellm_imatrix *im = NULL;
    ellm_imatrix_params ip = {.n_ctx = n, .n_threads = 1};
    CHECK(ellm_imatrix_collect(src, ids, n, &ip, &im) == EDGELLM_OK);
    gguf_file *model = NULL;
    CHECK(ellm_gguf_open(src, &model) == EDGELLM_OK);
    ellm_awq *awq = NULL;
    CHECK(ellm_awq_plan(model, im, ELLM_TYPE_Q4_0, count_group, NULL, &awq) == EDGELLM_OK);
    printf("groups folded: %d through a norm, %d through a matrix\n", folded_norm_groups,
           folded_matrix_groups);
    CHECK(folded_norm_groups > 0 && folded_matrix_groups > 0);

    /* A target without blocks has nothing to search. */
    ellm_awq *none = NULL;
    CHECK(ellm_awq_plan(model, im, ELLM_TYPE_F32, NULL, NULL, &none) != EDGELLM_OK && !none);

    char folded[512], broken[512];
    snprintf(folded, sizeof folded, "%s/awq-folded-f32.gguf", EDGELLM_TEST_TMP);
    snprintf(broken, sizeof broken, "%s/awq-broken-f32.gguf", EDGELLM_TEST_TMP);
    fold good = {awq, false}, bad = {awq, true};
    ellm_quantize_options o = {.transform_row = transform, .user = &good};
    CHECK(ellm_quantize_model(src, folded, ELLM_TYPE_F32, &o) == EDGELLM_OK);
    o.user = &bad;
    CHECK(ellm_quantize_model(src, broken, ELLM_TYPE_F32, &o) == EDGELLM_OK);

    int32_t n_vocab = 512;
    float *ref = logits_of(src, ids, n, n_vocab);
    float *got = logits_of(folded, ids, n, n_vocab);
    float *wrong = logits_of(broken, ids, n, n_vocab);
    double amax, d = max_abs_diff(ref, got, (size_t)n * n_vocab, &amax);
    double dw = max_abs_diff(ref, wrong, (size_t)n * n_vocab, &amax);
    printf(
        "max |logit| %.3f; folded copy differs by %.3g, columns scaled without the fold by %.3g\n",
        amax, d, dw);
    CHECK_MSG(d <= 1e-5 * amax, "the fold changed the logits by %g", d);
    CHECK_MSG(dw > 1e-2 * amax, "leaving the fold out changed the logits only by %g", dw);

    free(ref);
    free(got);
    free(wrong);
    ellm_awq_free(awq);
    ellm_gguf_close(model);
    ellm_imatrix_free(im);
    return test_finish("test_awq");
}
