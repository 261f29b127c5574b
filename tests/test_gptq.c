/* GPTQ rounding (optimise/gptq.c) on a layer with correlated inputs: X W^T must change less on
 * held-out activations than with plain rounding, and clearly less than the same blocks rounded
 * without the error feedback (which is what catches a broken feedback: without it, or with it
 * wrong, the property fails). The stored blocks must decode to exactly the values GPTQ settled on,
 * and the bytes must not depend on the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "optimise/gptq.h"
#include "quant/quant.h"
#include "test_util.h"

#define N_IN 256
#define N_OUT 48
#define N_TOK 768
#define RANK 12

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static float gaussian(void)
{
    return (float)(sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform()));
}

/* Activations as in a real layer: a few shared directions (so columns correlate), channel scales
 * spread over two orders of magnitude, and independent noise. */
static void make_activations(float *x, int n_tok, const float *mix, const float *channel_scale)
{
    for (int t = 0; t < n_tok; t++) {
        float z[RANK];
        for (int k = 0; k < RANK; k++)
            z[k] = gaussian();
        for (int j = 0; j < N_IN; j++) {
            float v = 0.3f * gaussian();
            for (int k = 0; k < RANK; k++)
                v += z[k] * mix[k * N_IN + j];
            x[t * N_IN + j] = v * channel_scale[j];
        }
    }
}

/* sum over tokens and outputs of (x . (w_r - q_r))^2. */
static double output_error(const float *x, int n_tok, const float *w, const float *q)
{
    double total = 0;
    for (int r = 0; r < N_OUT; r++)
        for (int t = 0; t < n_tok; t++) {
            double s = 0;
            for (int j = 0; j < N_IN; j++)
                s += (double)x[t * N_IN + j] * ((double)w[r * N_IN + j] - q[r * N_IN + j]);
            total += s * s;
        }
    return total;
}

static void dequantize_matrix(ellm_type type, const uint8_t *blocks, float *out)
{
    uint64_t rb;
    ellm_row_bytes(type, N_IN, &rb);
    for (int r = 0; r < N_OUT; r++)
        ellm_dequantize_row(type, blocks + r * rb, out + r * N_IN, N_IN);
}

int main(void)
{
    float *mix = malloc(sizeof(float) * RANK * N_IN), *scale = malloc(sizeof(float) * N_IN);
    float *x_cal = malloc(sizeof(float) * N_TOK * N_IN), *x_ho = malloc(sizeof(float) * N_TOK * N_IN);
    float *h = calloc((size_t)N_IN * N_IN, sizeof(float));
    float *w = malloc(sizeof(float) * N_OUT * N_IN), *work = malloc(sizeof(float) * N_OUT * N_IN);
    float *q = malloc(sizeof(float) * N_OUT * N_IN);
    uint8_t *blocks = malloc((size_t)N_OUT * N_IN * 2), *blocks2 = malloc((size_t)N_OUT * N_IN * 2);
    CHECK(mix && scale && x_cal && x_ho && h && w && work && q && blocks && blocks2);
    for (int i = 0; i < RANK * N_IN; i++)
        mix[i] = gaussian();
    for (int j = 0; j < N_IN; j++)
        scale[j] = (float)exp(2.3 * (uniform() - 0.5) * 2);
    make_activations(x_cal, N_TOK, mix, scale);
    make_activations(x_ho, N_TOK, mix, scale);
    for (int t = 0; t < N_TOK; t++)
        for (int i = 0; i < N_IN; i++)
            for (int j = 0; j < N_IN; j++)
                h[i * N_IN + j] += x_cal[t * N_IN + i] * x_cal[t * N_IN + j];
    for (int i = 0; i < N_OUT * N_IN; i++)
        w[i] = 0.05f * gaussian();

    ellm_threadpool *pool = NULL;
    CHECK(ellm_threadpool_create(2, &pool) == EDGELLM_OK);
    static const ellm_type types[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q4_1, ELLM_TYPE_IQ4_NL,
                                      ELLM_TYPE_Q5_0, ELLM_TYPE_Q8_0, ELLM_TYPE_Q4_K,
                                      ELLM_TYPE_Q5_K, ELLM_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        ellm_type type = types[k];
        if (!ellm_type_supported(type))
            continue;
        uint64_t rb;
        ellm_row_bytes(type, N_IN, &rb);
        for (int r = 0; r < N_OUT; r++)
            ellm_quantize_row(type, w + r * N_IN, blocks + r * rb, N_IN);
        dequantize_matrix(type, blocks, q);
        double plain = output_error(x_ho, N_TOK, w, q);

        memcpy(work, w, sizeof(float) * N_OUT * N_IN);
        CHECK(ellm_gptq_quantize(pool, type, work, N_OUT, N_IN, h, ELLM_GPTQ_DAMP, false, blocks) ==
              EDGELLM_OK);
        dequantize_matrix(type, blocks, q);
        double no_feedback = output_error(x_ho, N_TOK, w, q);

        memcpy(work, w, sizeof(float) * N_OUT * N_IN);
        CHECK(ellm_gptq_quantize(pool, type, work, N_OUT, N_IN, h, ELLM_GPTQ_DAMP, true, blocks) ==
              EDGELLM_OK);
        dequantize_matrix(type, blocks, q);
        double gptq = output_error(x_ho, N_TOK, w, q);
        double worst = 0;
        for (int i = 0; i < N_OUT * N_IN; i++)
            worst = fmax(worst, fabs((double)q[i] - work[i]));
        printf("%-7s held-out output error: plain %.4g, blocks without feedback %.4g (%+.0f %%), "
               "GPTQ %.4g (%+.0f %%)\n",
               ellm_type_name(type), plain, no_feedback, 100 * (no_feedback / plain - 1), gptq,
               100 * (gptq / plain - 1));
        CHECK_MSG(worst <= 1e-6, "%s: the stored blocks decode to values %g away from GPTQ's",
                  ellm_type_name(type), worst);
        CHECK_MSG(gptq < 0.75 * plain, "%s: GPTQ error %g not 25 %% below plain rounding's %g",
                  ellm_type_name(type), gptq, plain);
        CHECK_MSG(gptq < 0.75 * no_feedback,
                  "%s: GPTQ error %g not 25 %% below the same blocks without feedback (%g)",
                  ellm_type_name(type), gptq, no_feedback);

        /* The split across threads must not change a byte. */
        memcpy(work, w, sizeof(float) * N_OUT * N_IN);
        CHECK(ellm_gptq_quantize(NULL, type, work, N_OUT, N_IN, h, ELLM_GPTQ_DAMP, true, blocks2) ==
              EDGELLM_OK);
        CHECK_MSG(!memcmp(blocks, blocks2, rb * N_OUT), "%s: one thread gave other bytes",
                  ellm_type_name(type));
    }

    /* Rows that do not split into the blocks, and types without blocks, are refused. */
    CHECK(!ellm_gptq_supports(ELLM_TYPE_Q4_0, 172) && !ellm_gptq_supports(ELLM_TYPE_F16, 256));
    CHECK(ellm_gptq_quantize(pool, ELLM_TYPE_F32, work, N_OUT, N_IN, h, ELLM_GPTQ_DAMP, true,
                             blocks) != EDGELLM_OK);

    /* All-zero statistics (an input never active) still give a factor: plain rounding. */
    memset(h, 0, sizeof(float) * N_IN * N_IN);
    memcpy(work, w, sizeof(float) * N_OUT * N_IN);
    CHECK(ellm_gptq_quantize(pool, ELLM_TYPE_Q4_0, work, N_OUT, N_IN, h, ELLM_GPTQ_DAMP, true,
                             blocks) == EDGELLM_OK);

    ellm_threadpool_free(pool);
    free(mix);
    free(scale);
    free(x_cal);
    free(x_ho);
    free(h);
    free(w);
    free(work);
    free(q);
    free(blocks);
    free(blocks2);
    return test_finish("test_gptq");
}
