/* Structured pruning (optimise/prune.c) and the loader/forward pass for layers of different
 * sizes: the shared aidreams model pruned by heads, FFN channels and layers must compute the
 * logits of the same model with exactly those parts zeroed (--zeroed: same shapes) to float
 * summation-order tolerance with an F32 KV cache, and clearly not the original's. Fraction 0
 * gives the original's logits bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgellm.h"
#include "optimise/imatrix.h"
#include "optimise/prune.h"
#include "test_util.h"

static float *logits_of(const char *path, const edgellm_token *ids, int32_t n, int32_t n_vocab)
{
    edgellm_model *m = NULL;
    edgellm_context *ctx = NULL;
    float *out = calloc((size_t)n * (size_t)n_vocab, sizeof *out);
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = n;
    cp.n_batch = n;
    cp.kv_type = EDGELLM_KV_F32;
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

/* max |a - b| / max |a| */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, amax = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        amax = fmax(amax, fabs((double)a[i]));
    }
    return d / amax;
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
    const int32_t n_vocab = 512;
    size_t n_logits = (size_t)n * n_vocab;

    ellm_imatrix *im = NULL;
    ellm_imatrix_params ip = {.n_ctx = n, .n_threads = 1};
    CHECK(ellm_imatrix_collect(src, ids, n, &ip, &im) == EDGELLM_OK);
    float *influence = NULL;
    CHECK(ellm_block_influence(src, ids, n, n, 0, 1, &influence) == EDGELLM_OK);
    for (int il = 0; influence && il < 4; il++) {
        printf("block influence of layer %d: %.4f\n", il, influence[il]);
        CHECK(influence[il] > 0 && influence[il] < 2);
    }
    float *base = logits_of(src, ids, n, n_vocab);

    char pruned[512], zeroed[512];
    snprintf(pruned, sizeof pruned, "%s/prune-pruned.gguf", EDGELLM_TEST_TMP);
    snprintf(zeroed, sizeof zeroed, "%s/prune-zeroed.gguf", EDGELLM_TEST_TMP);

    ellm_prune_params none = {.im = im};
    CHECK(ellm_prune_model(src, pruned, &none) == EDGELLM_OK);
    float *same = logits_of(pruned, ids, n, n_vocab);
    CHECK_MSG(!memcmp(same, base, n_logits * sizeof *same), "fraction 0 changed the logits");
    free(same);

    const struct {
        const char *label;
        ellm_prune_params p;
    } cases[] = {
        {"heads 0.25", {.heads = 0.25f, .im = im}},
        {"heads 0.5", {.heads = 0.5f, .im = im}},
        {"ffn 0.25", {.ffn = 0.25f, .im = im}},
        {"ffn 0.5 (weights alone)", {.ffn = 0.5f}},
        {"layers 2", {.layers = 2, .block_influence = influence}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ellm_prune_params p = cases[k].p;
        CHECK(ellm_prune_model(src, pruned, &p) == EDGELLM_OK);
        p.zeroed = true;
        CHECK(ellm_prune_model(src, zeroed, &p) == EDGELLM_OK);
        float *lp = logits_of(pruned, ids, n, n_vocab), *lz = logits_of(zeroed, ids, n, n_vocab);
        double d = rel_diff(lz, lp, n_logits), moved = rel_diff(base, lp, n_logits);
        printf("%-24s pruned vs zeroed %.3g, vs the original %.3g\n", cases[k].label, d, moved);
        CHECK_MSG(d < 2e-6, "%s: the pruned model differs from the zeroed one by %g",
                  cases[k].label, d);
        CHECK_MSG(moved > 1e-2, "%s: pruning changed nothing (%g)", cases[k].label, moved);
        free(lp);
        free(lz);
    }

    /* Plans and inputs that are refused. */
    ellm_prune_params all_heads = {.heads = 0.9f, .im = im};
    CHECK(ellm_prune_model(src, pruned, &all_heads) != EDGELLM_OK);
    CHECK(strstr(edgellm_last_error(), "every head of layer") != NULL);
    ellm_prune_params bad_fraction = {.ffn = 1.0f};
    CHECK(ellm_prune_model(src, pruned, &bad_fraction) != EDGELLM_OK);
    ellm_prune_params nan_fraction = {.heads = NAN};
    CHECK(ellm_prune_model(src, pruned, &nan_fraction) != EDGELLM_OK);
    ellm_prune_params no_influence = {.layers = 1};
    CHECK(ellm_prune_model(src, pruned, &no_influence) != EDGELLM_OK);
    float *too_short = NULL;
    CHECK(ellm_block_influence(src, ids, n, 128, 0, 1, &too_short) != EDGELLM_OK && !too_short);
    CHECK(strstr(edgellm_last_error(), "fewer than one chunk") != NULL);

    free(base);
    free(influence);
    ellm_imatrix_free(im);
    return test_finish("test_prune");
}
