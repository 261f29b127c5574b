/* Shared set-up and checks of the importance-weighted quantization tests (test_quant_weighted,
 * test_quant_weighted_k): the same measurements and the same claims over different formats, so
 * a change to what "the search works" means is made once. */
#ifndef EDGELLM_TEST_UTIL_WEIGHTED_H
#define EDGELLM_TEST_UTIL_WEIGHTED_H

#include <stdint.h>

#include "quant/quant.h"

/* Log-normal column importances (a few columns matter far more, as in real activations) and
 * rows of small normal weights. */
void test_weighted_lognormal(float *rows, int n_rows, int n_cols, float *importance,
                             uint64_t *state);
/* Columns 5, 42, 79 ... (every 37th) hold weights 16 times smaller whose activations are 16
 * times larger (importance 256 times larger): the structure RMSNorm outlier channels give real
 * models. */
void test_weighted_planted_outliers(float *rows, int n_rows, int n_cols, float *importance,
                                    uint64_t *state);

/* Sums over the rows of the error weighted by the importances: of plain rounding, of the search
 * given uniform importances (ignoring) and of the search given the importances (weighted);
 * worse counts the rows where the search loses to plain rounding. */
typedef struct test_weighted_errors {
    double plain, ignoring, weighted;
    int worse;
} test_weighted_errors;
test_weighted_errors test_weighted_errors_of(ellm_type type, const float *rows, int n_rows,
                                             int n_cols, const float *importance);

/* Prints the errors and checks the search of `type` never loses a row to plain rounding, stays
 * below bound x plain rounding and 5 % below the search given uniform importances (which fails
 * if the weights are ignored); `what` names the data in messages. */
void test_weighted_check(ellm_type type, const char *what, const float *rows, int n_rows,
                         int n_cols, const float *importance, double bound);

/* Without importances the search is byte-identical to the plain quantizer on `row`, and an
 * all-zero row quantized with the importances decodes to zero. */
void test_weighted_check_no_weights_and_zero(ellm_type type, const float *row, int n_cols,
                                             const float *importance);

#endif
