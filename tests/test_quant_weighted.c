/* Importance-weighted quantization (quant/weighted.c) of Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL:
 * - never worse than plain rounding under the weighted error, row by row;
 * - the weights matter: the search given the importances beats the same search given uniform
 *   importances under the weighted error (this fails if the weights are ignored);
 * - planted outlier columns (small weights times large activations) are kept far better;
 * - no importances: byte-identical to the plain quantizer; all-zero blocks decode to zero. */
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

int main(void)
{
    test_weighted_beats_plain_and_uniform();
    test_planted_outliers();
    test_no_weights_and_zero_blocks();
    return test_finish("test_quant_weighted");
}
