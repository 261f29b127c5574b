/* Importance-weighted quantization (quant/weighted.c) of Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL:
 * - never worse than plain rounding under the weighted error, row by row;
 * - the weights matter: the search given the importances beats the same search given uniform
 *   importances under the weighted error (this fails if the weights are ignored);
 * - planted outlier columns (small weights times large activations) are kept far better;
 * - no importances: byte-identical to the plain quantizer; all-zero blocks decode to zero;
 * - with the activations' means (ellm_quantize_row_weighted_mean), the expected square of the
 *   output error, variances plus the bias along the means, is well below the search's that sees
 *   the mean squares only (this fails if the bias feedback is missing or has the wrong sign);
 * - Q4_0 and Q5_0 reach the exact weighted optimum over the scale: no scale of a fine scan does
 *   better, block by block, on the planted outliers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/quant.h"
#include "test_util.h"
#include "test_util_weighted.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static const ellm_type types[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q4_1, ELLM_TYPE_Q5_0, ELLM_TYPE_Q5_1,
                                  ELLM_TYPE_IQ4_NL};
#define N_TYPES 5
#define N_COLS 256
#define N_ROWS 64
/* The search's weighted error must stay 10 % below plain rounding's. */
#define BOUND 0.9

static float rows[N_ROWS][N_COLS];
static float importance[N_COLS];

static void test_weighted_beats_plain_and_uniform(void)
{
    test_weighted_lognormal(&rows[0][0], N_ROWS, N_COLS, importance, &rng);
    for (int k = 0; k < N_TYPES; k++)
        test_weighted_check(types[k], "log-normal importances", &rows[0][0], N_ROWS, N_COLS,
                            importance, BOUND);
}

static void test_planted_outliers(void)
{
    test_weighted_planted_outliers(&rows[0][0], N_ROWS, N_COLS, importance, &rng);
    for (int k = 0; k < N_TYPES; k++)
        test_weighted_check(types[k], "outlier columns", &rows[0][0], N_ROWS, N_COLS, importance,
                            BOUND);
}

static void test_no_weights_and_zero_blocks(void)
{
    for (int k = 0; k < N_TYPES; k++)
        test_weighted_check_no_weights_and_zero(types[k], rows[0], N_COLS, importance);
    /* Types without a search take the plain quantizer even with weights. */
    uint8_t a[N_COLS * 2], b[N_COLS * 2];
    CHECK(!ellm_type_has_weighted_search(ELLM_TYPE_Q8_0));
    size_t na = ellm_quantize_row(ELLM_TYPE_Q8_0, rows[1], a, N_COLS);
    size_t nb = ellm_quantize_row_weighted(ELLM_TYPE_Q8_0, rows[1], b, N_COLS, importance);
    CHECK(na == nb && memcmp(a, b, na) == 0);
}

/* E[(sum_j e_j a_j)^2] for activations a of mean mu and variances var: the error's variance
 * part and its bias part (sum_j mu_j e_j)^2, over every row. */
static void output_error(ellm_type type, const float *x, const void *q, const float *mu,
                         const float *var, double *variance, double *bias)
{
    float back[N_COLS];
    ellm_dequantize_row(type, q, back, N_COLS);
    double b = 0;
    for (int j = 0; j < N_COLS; j++) {
        double e = (double)back[j] - x[j];
        *variance += var[j] * e * e;
        b += mu[j] * e;
    }
    *bias += b * b;
}

static void test_mean_direction(void)
{
    float mu[N_COLS], var[N_COLS], scratch[4 * N_COLS];
    for (int j = 0; j < N_COLS; j++) {
        mu[j] = test_rand_gauss(&rng);
        float sd = 0.5f * expf(0.5f * test_rand_gauss(&rng));
        var[j] = sd * sd;
        importance[j] = mu[j] * mu[j] + var[j];
        for (int r = 0; r < N_ROWS; r++)
            rows[r][j] = 0.05f * test_rand_gauss(&rng);
    }
    for (int k = 0; k < N_TYPES; k++) {
        double var_w = 0, bias_w = 0, var_m = 0, bias_m = 0;
        for (int r = 0; r < N_ROWS; r++) {
            uint8_t a[N_COLS * 2], b[N_COLS * 2];
            size_t na = ellm_quantize_row_weighted(types[k], rows[r], a, N_COLS, importance);
            size_t nb = ellm_quantize_row_weighted_mean(types[k], rows[r], b, N_COLS, importance,
                                                        mu, scratch);
            CHECK(na == nb);
            output_error(types[k], rows[r], a, mu, var, &var_w, &bias_w);
            output_error(types[k], rows[r], b, mu, var, &var_m, &bias_m);
            /* No means: the weighted search itself. */
            ellm_quantize_row_weighted_mean(types[k], rows[r], b, N_COLS, importance, NULL,
                                            scratch);
            CHECK(memcmp(a, b, na) == 0);
        }
        printf("%s with means: output error %.4g (bias %.3g) against %.4g (bias %.3g)\n",
               ellm_type_name(types[k]), var_m + bias_m, bias_m, var_w + bias_w, bias_w);
        CHECK(var_m + bias_m < 0.7 * (var_w + bias_w));
        CHECK(bias_m < 0.1 * bias_w);
    }
    /* The K-quants keep their weighted search's bytes. */
    uint8_t a[N_COLS * 2], b[N_COLS * 2];
    size_t na = ellm_quantize_row_weighted(ELLM_TYPE_Q4_K, rows[0], a, N_COLS, importance);
    size_t nb = ellm_quantize_row_weighted_mean(ELLM_TYPE_Q4_K, rows[0], b, N_COLS, importance, mu,
                                                scratch);
    CHECK(na == nb && memcmp(a, b, na) == 0);
}

/* The weighted error of a Q4_0/Q5_0 block under scale d (stored as half) with nearest levels. */
static double symmetric_error(const float *x, const float *w, float d, int lo, int hi)
{
    float ds = ellm_f16_to_f32(ellm_f32_to_f16(d)), e = 0;
    for (int j = 0; j < 32; j++) {
        float l = ds != 0 ? roundf(x[j] / ds) : 0;
        l = l < (float)lo ? (float)lo : l > (float)hi ? (float)hi : l;
        e += w[j] * (x[j] - ds * l) * (x[j] - ds * l);
    }
    return e;
}

static void test_symmetric_exact_optimum(void)
{
    test_weighted_planted_outliers(&rows[0][0], N_ROWS, N_COLS, importance, &rng);
    static const ellm_type sym[2] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q5_0};
    float scratch[32];
    for (int k = 0; k < 2; k++) {
        int lo = sym[k] == ELLM_TYPE_Q4_0 ? -8 : -16, hi = -lo - 1, beaten = 0;
        for (int r = 0; r < N_ROWS; r++)
            for (int o = 0; o < N_COLS; o += 32) {
                const float *x = rows[r] + o, *w = importance + o;
                uint8_t q[64];
                ellm_quantize_row_weighted(sym[k], x, q, 32, w);
                double found = ellm_weighted_row_error(sym[k], x, q, 32, w, scratch);
                float amax = 0;
                for (int j = 0; j < 32; j++)
                    amax = fmaxf(amax, fabsf(x[j]));
                /* Scales from amax / 64 to 4 amax / |lo|, both signs, 1 % apart at most. */
                for (int s = 0; s < 2 * 800; s++) {
                    float d = (s % 2 ? -1.0f : 1.0f) * amax / 64.0f * powf(1.005f, (float)(s / 2));
                    if (symmetric_error(x, w, d, lo, hi) < found * (1 - 1e-4))
                        beaten++;
                }
            }
        printf("%s: scan scales beating the search: %d\n", ellm_type_name(sym[k]), beaten);
        CHECK(beaten == 0);
    }
}

int main(void)
{
    test_weighted_beats_plain_and_uniform();
    test_planted_outliers();
    test_no_weights_and_zero_blocks();
    test_mean_direction();
    test_symmetric_exact_optimum();
    return test_finish("test_quant_weighted");
}
