/* Importance-weighted searches of the 256-value formats Q4_K, Q5_K (sub-block scale and moving
 * minimum, then the 6-bit codes and the super-block scales fitted under the weights) and IQ4_XS
 * (sub-block scales over the non-linear grid):
 * - never worse than plain rounding under the weighted error, row by row;
 * - the weights matter: the search given the importances beats the same search given uniform
 *   importances (fails if the weights are ignored), on log-normal importances and on planted
 *   outlier columns (small weights times large activations);
 * - below a bound measured for the search as written (fails if the search is switched off);
 * - no importances: byte-identical to the plain quantizer; all-zero blocks decode to zero. */
#include "quant/quant.h"
#include "test_util.h"
#include "test_util_weighted.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static const ellm_type types[] = {ELLM_TYPE_Q4_K, ELLM_TYPE_Q5_K, ELLM_TYPE_IQ4_XS};
#define N_TYPES 3
/* Weighted error over plain rounding, bounds from the searches as written (measured: Q4_K 0.671
 * and 0.147, Q5_K 0.665 and 0.187, IQ4_XS 0.739 and 0.525); the Q4_K/Q5_K search without the
 * moving minimum and weighted code choice gave 0.715/0.184 and 0.770/0.339, IQ4_XS without a
 * search 1. */
#define BOUND_LOGNORMAL_Q4_K 0.69
#define BOUND_LOGNORMAL_Q5_K 0.70
#define BOUND_LOGNORMAL_IQ4_XS 0.80
#define BOUND_OUTLIER_Q4_K 0.165
#define BOUND_OUTLIER_Q5_K 0.25
#define BOUND_OUTLIER_IQ4_XS 0.60
#define N_COLS 512
#define N_ROWS 48

static float rows[N_ROWS][N_COLS];
static float importance[N_COLS];

static void test_lognormal_importances(void)
{
    static const double bound[N_TYPES] = {BOUND_LOGNORMAL_Q4_K, BOUND_LOGNORMAL_Q5_K,
                                          BOUND_LOGNORMAL_IQ4_XS};
    test_weighted_lognormal(&rows[0][0], N_ROWS, N_COLS, importance, &rng);
    for (int k = 0; k < N_TYPES; k++)
        test_weighted_check(types[k], "log-normal importances", &rows[0][0], N_ROWS, N_COLS,
                            importance, bound[k]);
}

static void test_planted_outliers(void)
{
    static const double bound[N_TYPES] = {BOUND_OUTLIER_Q4_K, BOUND_OUTLIER_Q5_K,
                                          BOUND_OUTLIER_IQ4_XS};
    test_weighted_planted_outliers(&rows[0][0], N_ROWS, N_COLS, importance, &rng);
    for (int k = 0; k < N_TYPES; k++)
        test_weighted_check(types[k], "outlier columns", &rows[0][0], N_ROWS, N_COLS, importance,
                            bound[k]);
}

static void test_no_weights_and_zero_blocks(void)
{
    for (int k = 0; k < N_TYPES; k++)
        test_weighted_check_no_weights_and_zero(types[k], rows[0], N_COLS, importance);
}
int main(void)
{
    test_lognormal_importances();
    test_planted_outliers();
    test_no_weights_and_zero_blocks();
    return test_finish("test_quant_weighted_k");
}
