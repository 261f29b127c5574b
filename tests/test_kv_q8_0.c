/* The Q8_0 KV cache and the kernel-set switch.
 *
 * Q8_0 cache: logits close to the F16 cache's (mean KL below 5e-4 nats per position, top-1 the
 * same at 95 % of positions or more, every logit within 5 % of the largest) on the shared
 * aidreams model (head size 16: heads share Q8_0 blocks, the scalar dequantizing path), on a
 * synthetic grouped-query model of head size 64 (the kernel set's integer Q8_0 dot) and on that
 * model pruned to layers of different head and FFN counts (edgellm prune); the cache
 * about half the F16 one; the scalar kernel set giving the same within float rounding; models
 * whose KV rows do not split into blocks refused with a clear error.
 *
 * Kernel sets: unknown names fail naming the sets this CPU runs; forcing the scalar set makes
 * every kernel portable, attention included. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert/synth.h"
#include "edgellm.h"
#include "optimise/prune.h"
#include "quant/attention_kernels.h"
#include "quant/quant.h"
#include "test_util.h"

enum { N_TOK = 64, N_CTX = 128 };

/* Every position's logits of a fixed token sequence from an empty cache of kv_type: the first
 * n_prefill tokens as one prefill batch, the rest one by one. */
static float *eval_logits_split(edgellm_model *m, edgellm_kv_type kv_type, int n_threads,
                                int n_prefill)
{
    int32_t n_vocab = edgellm_n_vocab(m);
    edgellm_token ids[N_TOK];
    uint64_t x = 7;
    for (int i = 0; i < N_TOK; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 3 + (edgellm_token)((x >> 33) % (uint64_t)(n_vocab - 3));
    }
    edgellm_context_params cp = edgellm_context_default_params();
    cp.n_ctx = N_CTX;
    cp.n_threads = n_threads;
    cp.kv_type = kv_type;
    edgellm_context *ctx = NULL;
    float *out = malloc((size_t)N_TOK * (size_t)n_vocab * sizeof *out);
    bool ok = out && edgellm_context_create(m, &cp, &ctx) == EDGELLM_OK &&
              edgellm_eval(ctx, ids, n_prefill, 1) == EDGELLM_OK;
    for (int i = 0; ok && i < n_prefill; i++)
        memcpy(out + (size_t)i * n_vocab, edgellm_get_logits(ctx, i), (size_t)n_vocab * 4);
    for (int i = n_prefill; ok && i < N_TOK; i++) {
        ok = edgellm_eval(ctx, &ids[i], 1, 0) == EDGELLM_OK;
        if (ok)
            memcpy(out + (size_t)i * n_vocab, edgellm_get_logits(ctx, -1), (size_t)n_vocab * 4);
    }
    CHECK_MSG(ok, "evaluation failed: %s", edgellm_last_error());
    edgellm_context_free(ctx);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* Half the tokens as one prefill batch, the rest one by one: both attention paths. */
static float *eval_logits(edgellm_model *m, edgellm_kv_type kv_type, int n_threads)
{
    return eval_logits_split(m, kv_type, n_threads, N_TOK / 2);
}

/* Under the AVX2 set, an F16 cache's prefill takes the multi-token grouped kernel (runs of
 * consecutive tokens, a shorter last one) where it applies: its logits must be those of the same
 * tokens evaluated one by one (the one-token grouped kernel), bit for bit. */
static void check_prefill_equals_decode(edgellm_model *m, const char *label)
{
    if (edgellm_use_kernel_set("avx2") != EDGELLM_OK)
        return; /* not this CPU's */
    CHECK(ellm_attention_kernels_active()->f16_group_tokens != NULL);
    int32_t n_vocab = edgellm_n_vocab(m);
    float *prefill = eval_logits_split(m, EDGELLM_KV_F16, 2, N_TOK - 1);
    float *decode = eval_logits_split(m, EDGELLM_KV_F16, 2, 1);
    if (prefill && decode)
        CHECK_MSG(!memcmp(prefill, decode, (size_t)N_TOK * n_vocab * 4),
                  "%s: avx2 F16-cache prefill logits differ from one token at a time", label);
    free(prefill), free(decode);
    CHECK(edgellm_use_kernel_set(NULL) == EDGELLM_OK);
}

typedef struct closeness {
    double mean_kl, max_rel_diff, top1;
} closeness;

static closeness compare(const float *base, const float *got, int32_t n_vocab)
{
    closeness c = {0, 0, 0};
    for (int t = 0; t < N_TOK; t++) {
        const float *a = base + (size_t)t * n_vocab, *b = got + (size_t)t * n_vocab;
        double ma = -INFINITY, mb = -INFINITY, big = 0, diff = 0;
        int ia = 0, ib = 0;
        for (int i = 0; i < n_vocab; i++) {
            if (a[i] > ma)
                ma = a[i], ia = i;
            if (b[i] > mb)
                mb = b[i], ib = i;
            big = fmax(big, fabs(a[i]));
            diff = fmax(diff, fabs((double)a[i] - b[i]));
        }
        double za = 0, zb = 0;
        for (int i = 0; i < n_vocab; i++) {
            za += exp(a[i] - ma);
            zb += exp(b[i] - mb);
        }
        double kl = 0;
        for (int i = 0; i < n_vocab; i++) {
            double la = a[i] - ma - log(za), lb = b[i] - mb - log(zb);
            kl += exp(la) * (la - lb);
        }
        c.mean_kl += kl / N_TOK;
        c.max_rel_diff = fmax(c.max_rel_diff, diff / (big > 0 ? big : 1));
        c.top1 += (ia == ib) / (double)N_TOK;
    }
    return c;
}

static void check_model(const char *label, const char *path)
{
    edgellm_model *m = NULL;
    if (edgellm_model_load(path, NULL, &m) != EDGELLM_OK) {
        CHECK_MSG(false, "%s: %s", label, edgellm_last_error());
        return;
    }
    int32_t n_vocab = edgellm_n_vocab(m);
    edgellm_memory_estimate f16_mem, q8_mem;
    CHECK(edgellm_model_estimate_memory(m, N_CTX, EDGELLM_KV_F16, 0, &f16_mem) == EDGELLM_OK);
    CHECK(edgellm_model_estimate_memory(m, N_CTX, EDGELLM_KV_Q8_0, 0, &q8_mem) == EDGELLM_OK);
    double ratio = (double)q8_mem.kv_cache_bytes / (double)f16_mem.kv_cache_bytes;
    CHECK_MSG(ratio > 0.45 && ratio < 0.56, "%s: Q8_0 cache %.3f of the F16 one", label, ratio);

    float *f16 = eval_logits(m, EDGELLM_KV_F16, 2);
    float *q8 = eval_logits(m, EDGELLM_KV_Q8_0, 2);
    float *q8_one_thread = eval_logits(m, EDGELLM_KV_Q8_0, 1);
    CHECK(edgellm_use_kernel_set("scalar") == EDGELLM_OK);
    float *q8_scalar = eval_logits(m, EDGELLM_KV_Q8_0, 2);
    float *f16_scalar = eval_logits(m, EDGELLM_KV_F16, 2);
    CHECK(edgellm_use_kernel_set(NULL) == EDGELLM_OK);
    if (f16 && q8 && q8_one_thread && q8_scalar && f16_scalar) {
        closeness c = compare(f16, q8, n_vocab);
        fprintf(stderr,
                "%s: Q8_0 vs F16 cache: mean KL %.2e, largest difference %.2e of the "
                "largest logit, top-1 agreement %.1f%%; KV %.3f of F16\n",
                label, c.mean_kl, c.max_rel_diff, 100 * c.top1, ratio);
        CHECK_MSG(c.mean_kl < 5e-4, "%s: mean KL %g", label, c.mean_kl);
        CHECK_MSG(c.top1 >= 0.95, "%s: top-1 agreement %g", label, c.top1);
        CHECK_MSG(c.max_rel_diff < 0.05, "%s: relative difference %g", label, c.max_rel_diff);
        CHECK_MSG(!memcmp(q8, q8_one_thread, (size_t)N_TOK * n_vocab * 4),
                  "%s: Q8_0-cache logits depend on the thread count", label);
        /* The scalar set differs from the CPU's only in float rounding (its matrix kernels). */
        closeness s = compare(q8, q8_scalar, n_vocab);
        CHECK_MSG(s.max_rel_diff < 1e-3 && s.top1 == 1.0, "%s: scalar Q8_0 path differs by %g",
                  label, s.max_rel_diff);
        closeness fs = compare(f16_scalar, q8_scalar, n_vocab);
        CHECK_MSG(fs.mean_kl < 5e-4, "%s: scalar set, Q8_0 vs F16 mean KL %g", label, fs.mean_kl);
    }
    free(f16), free(q8), free(q8_one_thread), free(q8_scalar), free(f16_scalar);
    check_prefill_equals_decode(m, label);
    edgellm_model_free(m);
}

/* Records the query heads each layer of a pruned model keeps. */
static void note_heads_kept(void *user, int32_t layer, bool dropped, int32_t heads,
                            int32_t heads_kept, int32_t ffn, int32_t ffn_kept)
{
    (void)dropped, (void)heads, (void)ffn, (void)ffn_kept;
    if (layer >= 0 && layer < 2)
        ((int32_t *)user)[layer] = heads_kept;
}

static void check_kernel_switch(void)
{
    CHECK(edgellm_use_kernel_set("no-such-set") == EDGELLM_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strstr(edgellm_last_error(), "unknown kernel set 'no-such-set'") &&
                  strstr(edgellm_last_error(), "scalar"),
              "message: %s", edgellm_last_error());
    const char *default_set = edgellm_kernel_set();
    CHECK(edgellm_use_kernel_set("scalar") == EDGELLM_OK);
    CHECK(!strcmp(edgellm_kernel_set(), "scalar"));
    const ellm_attention_kernels *att = ellm_attention_kernels_active();
    CHECK(att->f16 == ellm_attend_f16_portable && !att->f16_wide && !att->f16_group &&
          !att->f16_group_tokens);
    CHECK(!ellm_gemm_for(ELLM_TYPE_Q4_0) && !ellm_gemm_for(ELLM_TYPE_Q8_0));
    CHECK(!strcmp(edgellm_kernel_arithmetic("Q4_0"), "scalar"));
    CHECK(!strcmp(edgellm_kernel_arithmetic("attention"), "scalar"));
    CHECK(edgellm_kernel_arithmetic("NOT_A_TYPE") == NULL);
    const char *names[8];
    int n = ellm_kernel_sets_available(names, 8);
    for (int i = 0; i < n && i < 8; i++) {
        CHECK(edgellm_use_kernel_set(names[i]) == EDGELLM_OK);
        CHECK(!strcmp(edgellm_kernel_set(), names[i]));
        const char *arith = edgellm_kernel_arithmetic("Q8_0");
        if (!strcmp(names[i], "avx512")) {
            CHECK(!strcmp(arith, "int8-vnni512") && ellm_gemm_for(ELLM_TYPE_Q4_K));
            /* Its own decode kernels, the AVX2 tiles: prefill is rated against the AVX2 peak. */
            CHECK(!strcmp(edgellm_kernel_arithmetic("IQ4_XS"), "int8-avx2") &&
                  !strcmp(edgellm_kernel_arithmetic("Q2_K"), "int8-avx2"));
        } else if (!strcmp(names[i], "avx2"))
            CHECK(!strcmp(arith, "int8-avx2") && ellm_gemm_for(ELLM_TYPE_Q4_0) &&
                  ellm_attention_kernels_active()->f16_group);
    }
    CHECK(edgellm_use_kernel_set("") == EDGELLM_OK);
    CHECK(!strcmp(edgellm_kernel_set(), default_set));
}

int main(void)
{
    check_kernel_switch();
    const char *aidreams = test_shared_path("models/aidreams260K-f32.gguf");
    check_model("aidreams (head size 16)", aidreams);

    /* Grouped-query attention with head size 64: 4 query heads on 2 KV heads. */
    ellm_synth_shape shape = {"kv-test", 256, 2, 4, 2, 384, 256, 10000.0f, false};
    char path[512];
    snprintf(path, sizeof path, "%s/test_kv_q8_0_synth.gguf", EDGELLM_TEST_TMP);
    CHECK(ellm_synth_model(&shape, ELLM_TYPE_F16, aidreams, path, 1) == EDGELLM_OK);
    check_model("synthetic (head size 64, grouped)", path);

    /* The same model pruned (edgellm prune): layers of different KV head and FFN counts share
     * one cache whose rows are as wide as the widest layer's. */
    char pruned[512];
    snprintf(pruned, sizeof pruned, "%s/test_kv_q8_0_pruned.gguf", EDGELLM_TEST_TMP);
    ellm_prune_params plan = {.heads = 0.25f, .ffn = 0.25f};
    int32_t heads_kept[2] = {0, 0};
    plan.on_layer = note_heads_kept;
    plan.user = heads_kept;
    CHECK_MSG(ellm_prune_model(path, pruned, &plan) == EDGELLM_OK, "prune: %s",
              edgellm_last_error());
    CHECK_MSG(heads_kept[0] != heads_kept[1],
              "pruning left %d and %d query heads: the layers "
              "should differ",
              heads_kept[0], heads_kept[1]);
    check_model("synthetic pruned (1 and 2 KV heads, fewer FFN channels)", pruned);

    /* KV rows of 48 values do not split into Q8_0 blocks: refused, naming the fix. */
    ellm_synth_shape odd = {"kv-odd", 48, 1, 3, 3, 64, 64, 10000.0f, true};
    snprintf(path, sizeof path, "%s/test_kv_q8_0_odd.gguf", EDGELLM_TEST_TMP);
    CHECK(ellm_synth_model(&odd, ELLM_TYPE_F32, aidreams, path, 1) == EDGELLM_OK);
    edgellm_model *m = NULL;
    if (edgellm_model_load(path, NULL, &m) == EDGELLM_OK) {
        edgellm_context_params cp = edgellm_context_default_params();
        cp.n_ctx = 32;
        cp.kv_type = EDGELLM_KV_Q8_0;
        edgellm_context *ctx = NULL;
        CHECK(edgellm_context_create(m, &cp, &ctx) == EDGELLM_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(edgellm_last_error(), "multiple of 32") &&
                      strstr(edgellm_last_error(), "f16"),
                  "message: %s", edgellm_last_error());
        edgellm_context_free(ctx);
        edgellm_model_free(m);
    } else {
        CHECK_MSG(false, "%s", edgellm_last_error());
    }
    return test_finish("test_kv_q8_0");
}
