/* Importance-weighted quantization (quant/weighted.c) of Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL:
 * - never worse than plain rounding under the weighted error, row by row;
 * - the weights matter: the search given the importances beats the same search given uniform
 *   importances under the weighted error (this fails if the weights are ignored);
 * - planted outlier columns (small weights times large activations) are kept far better;
 * - no importances: byte-identical to the plain quantizer; all-zero blocks decode to zero. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "test_util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float gauss(void) { return test_rand_gauss(&rng); }

static const ellm_type types[] = {ELLM_TYPE_Q4_0, ELLM_TYPE_Q4_1, ELLM_TYPE_Q5_0, ELLM_TYPE_Q5_1,
                                  ELLM_TYPE_IQ4_NL};
#define N_TYPES 5
#define N_COLS 256
#define N_ROWS 64

static float rows[N_ROWS][N_COLS];
static float importance[N_COLS], uniform[N_COLS];
static uint8_t buf[N_COLS * 2];
static float scratch[N_COLS];

static double error_of(ellm_type t, const float *x, const float *w, const float *search_w)
{
    if (search_w)
        ellm_quantize_row_weighted(t, x, buf, N_COLS, search_w);
    else
        ellm_quantize_row(t, x, buf, N_COLS);
    return ellm_weighted_row_error(t, x, buf, N_COLS, w, scratch);
}

/* Log-normal importances (a few columns matter far more, as in real activations). */
static void test_weighted_beats_plain_and_uniform(void)
{
    for (int j = 0; j < N_COLS; j++) {
        importance[j] = expf(1.5f * gauss());
        uniform[j] = 1.0f;
    }
    for (int r = 0; r < N_ROWS; r++)
        for (int j = 0; j < N_COLS; j++)
            rows[r][j] = 0.05f * gauss();
    for (int k = 0; k < N_TYPES; k++) {
        ellm_type t = types[k];
        CHECK(ellm_type_has_weighted_search(t));
        double plain = 0, weighted = 0, ignoring = 0;
        int worse = 0;
        for (int r = 0; r < N_ROWS; r++) {
            double p = error_of(t, rows[r], importance, NULL);
            double w = error_of(t, rows[r], importance, importance);
            double u = error_of(t, rows[r], importance, uniform);
            worse += w > p * (1 + 1e-5);
            plain += p;
            weighted += w;
            ignoring += u;
        }
        printf("%-7s weighted error: plain %.4g, search with uniform weights %.4g, with the "
               "importances %.4g\n",
               ellm_type_name(t), plain, ignoring, weighted);
        CHECK_MSG(worse == 0, "%s: %d rows worse than plain rounding", ellm_type_name(t), worse);
        CHECK_MSG(weighted < 0.9 * plain, "%s: %g not 10%% below plain %g", ellm_type_name(t),
                  weighted, plain);
        CHECK_MSG(weighted < 0.95 * ignoring, "%s: %g not 5%% below the unweighted search %g",
                  ellm_type_name(t), weighted, ignoring);
    }
}

/* Columns 5, 40, 77 ... hold weights 16 times smaller whose activations are 16 times larger
 * (importance 256 times larger): the structure RMSNorm outlier channels give real models. */
static void test_planted_outliers(void)
{
    for (int j = 0; j < N_COLS; j++)
        importance[j] = j % 37 == 5 ? 256.0f : 1.0f;
    for (int r = 0; r < N_ROWS; r++)
        for (int j = 0; j < N_COLS; j++)
            rows[r][j] = (j % 37 == 5 ? 1.0f / 16 : 1.0f) * 0.05f * gauss();
    for (int k = 0; k < N_TYPES; k++) {
        double plain = 0, weighted = 0;
        for (int r = 0; r < N_ROWS; r++) {
            plain += error_of(types[k], rows[r], importance, NULL);
            weighted += error_of(types[k], rows[r], importance, importance);
        }
        printf("%-7s outlier columns: weighted error plain %.4g, weighted search %.4g\n",
               ellm_type_name(types[k]), plain, weighted);
        CHECK_MSG(weighted < 0.9 * plain, "%s: %g vs plain %g", ellm_type_name(types[k]), weighted,
                  plain);
    }
}

static void test_no_weights_and_zero_blocks(void)
{
    uint8_t a[N_COLS * 2], b[N_COLS * 2];
    for (int k = 0; k < N_TYPES; k++) {
        size_t na = ellm_quantize_row(types[k], rows[0], a, N_COLS);
        size_t nb = ellm_quantize_row_weighted(types[k], rows[0], b, N_COLS, NULL);
        CHECK(na == nb && memcmp(a, b, na) == 0);
        float zeros[N_COLS] = {0}, out[N_COLS];
        ellm_quantize_row_weighted(types[k], zeros, b, N_COLS, importance);
        ellm_dequantize_row(types[k], b, out, N_COLS);
        float amax = 0;
        for (int j = 0; j < N_COLS; j++)
            amax = fmaxf(amax, fabsf(out[j]));
        CHECK_MSG(amax == 0, "%s: a zero block decodes to %g", ellm_type_name(types[k]), amax);
    }
    /* Types without a search take the plain quantizer even with weights. */
    CHECK(!ellm_type_has_weighted_search(ELLM_TYPE_Q8_0));
    size_t na = ellm_quantize_row(ELLM_TYPE_Q8_0, rows[1], a, N_COLS);
    size_t nb = ellm_quantize_row_weighted(ELLM_TYPE_Q8_0, rows[1], b, N_COLS, importance);
    CHECK(na == nb && memcmp(a, b, na) == 0);
}

int main(void)
{
    test_weighted_beats_plain_and_uniform();
    test_planted_outliers();
    test_no_weights_and_zero_blocks();
    return test_finish("test_quant_weighted");
}
