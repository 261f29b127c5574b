#include "test_util_weighted.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

void test_weighted_lognormal(float *rows, int n_rows, int n_cols, float *importance,
                             uint64_t *state)
{
    for (int j = 0; j < n_cols; j++)
        importance[j] = expf(1.5f * test_rand_gauss(state));
    for (int r = 0; r < n_rows; r++)
        for (int j = 0; j < n_cols; j++)
            rows[(size_t)r * n_cols + j] = 0.05f * test_rand_gauss(state);
}

void test_weighted_planted_outliers(float *rows, int n_rows, int n_cols, float *importance,
                                    uint64_t *state)
{
    for (int j = 0; j < n_cols; j++)
        importance[j] = j % 37 == 5 ? 256.0f : 1.0f;
    for (int r = 0; r < n_rows; r++)
        for (int j = 0; j < n_cols; j++)
            rows[(size_t)r * n_cols + j] = (j % 37 == 5 ? 1.0f / 16 : 1.0f) * 0.05f *
                                           test_rand_gauss(state);
}

/* Scratch for one row: its quantized blocks, the error's dequantized row and all-1 weights. */
typedef struct row_buffers {
    uint8_t *blocks;
    float *scratch, *uniform;
} row_buffers;

static int row_buffers_init(row_buffers *b, ellm_type type, int n_cols)
{
    uint64_t bytes = 0;
    memset(b, 0, sizeof *b);
    if (!ellm_row_bytes(type, (uint64_t)n_cols, &bytes))
        return 0;
    b->blocks = malloc(bytes);
    b->scratch = malloc(sizeof(float) * (size_t)n_cols);
    b->uniform = malloc(sizeof(float) * (size_t)n_cols);
    if (!b->blocks || !b->scratch || !b->uniform)
        return 0;
    for (int j = 0; j < n_cols; j++)
        b->uniform[j] = 1.0f;
    return 1;
}

static void row_buffers_free(row_buffers *b)
{
    free(b->blocks);
    free(b->scratch);
    free(b->uniform);
}

/* The error under `importance` of `row` quantized plainly (search_w NULL) or searched under
 * search_w. */
static double row_error(ellm_type type, const float *row, int n_cols, const float *importance,
                        const float *search_w, row_buffers *b)
{
    if (search_w)
        ellm_quantize_row_weighted(type, row, b->blocks, n_cols, search_w);
    else
        ellm_quantize_row(type, row, b->blocks, n_cols);
    return ellm_weighted_row_error(type, row, b->blocks, n_cols, importance, b->scratch);
}

test_weighted_errors test_weighted_errors_of(ellm_type type, const float *rows, int n_rows,
                                             int n_cols, const float *importance)
{
    test_weighted_errors e = {0, 0, 0, 0};
    row_buffers b;
    if (!row_buffers_init(&b, type, n_cols)) {
        CHECK_MSG(0, "%s: no buffers for rows of %d", ellm_type_name(type), n_cols);
        row_buffers_free(&b);
        e.worse = n_rows;
        return e;
    }
    for (int r = 0; r < n_rows; r++) {
        const float *row = rows + (size_t)r * n_cols;
        double p = row_error(type, row, n_cols, importance, NULL, &b);
        double u = row_error(type, row, n_cols, importance, b.uniform, &b);
        double w = row_error(type, row, n_cols, importance, importance, &b);
        e.worse += w > p * (1 + 1e-5);
        e.plain += p;
        e.ignoring += u;
        e.weighted += w;
    }
    row_buffers_free(&b);
    return e;
}

void test_weighted_check(ellm_type type, const char *what, const float *rows, int n_rows,
                         int n_cols, const float *importance, double bound)
{
    const char *name = ellm_type_name(type);
    CHECK_MSG(ellm_type_has_weighted_search(type), "%s has no weighted search", name);
    test_weighted_errors e = test_weighted_errors_of(type, rows, n_rows, n_cols, importance);
    printf("%-7s %s: weighted error plain %.4g, search with uniform weights %.4g, with the "
           "importances %.4g (%.3f of plain)\n",
           name, what, e.plain, e.ignoring, e.weighted, e.weighted / e.plain);
    CHECK_MSG(e.worse == 0, "%s %s: %d rows worse than plain rounding", name, what, e.worse);
    CHECK_MSG(e.weighted < bound * e.plain, "%s %s: %g not below %.2f x plain %g", name, what,
              e.weighted, bound, e.plain);
    CHECK_MSG(e.weighted < 0.95 * e.ignoring, "%s %s: %g not 5%% below the unweighted search %g",
              name, what, e.weighted, e.ignoring);
}

void test_weighted_check_no_weights_and_zero(ellm_type type, const float *row, int n_cols,
                                             const float *importance)
{
    const char *name = ellm_type_name(type);
    row_buffers b;
    int ok = row_buffers_init(&b, type, n_cols);
    uint64_t bytes = 0;
    ok = ok && ellm_row_bytes(type, (uint64_t)n_cols, &bytes);
    uint8_t *searched = malloc(bytes ? bytes : 1);
    float *zeros = calloc((size_t)n_cols, sizeof(float));
    if (!ok || !searched || !zeros) {
        CHECK_MSG(0, "%s: no buffers for rows of %d", name, n_cols);
    } else {
        size_t na = ellm_quantize_row(type, row, b.blocks, n_cols);
        size_t nb = ellm_quantize_row_weighted(type, row, searched, n_cols, NULL);
        CHECK_MSG(na == nb && memcmp(b.blocks, searched, na) == 0,
                  "%s: without importances the search differs from the plain quantizer", name);
        ellm_quantize_row_weighted(type, zeros, searched, n_cols, importance);
        ellm_dequantize_row(type, searched, b.scratch, n_cols);
        float amax = 0;
        for (int j = 0; j < n_cols; j++)
            amax = fmaxf(amax, fabsf(b.scratch[j]));
        CHECK_MSG(amax == 0, "%s: a zero block decodes to %g", name, amax);
    }
    free(zeros);
    free(searched);
    row_buffers_free(&b);
}
