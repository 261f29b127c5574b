/* CPU cost of GPTQ on one layer input of a given width (docs/optimise.md, "GPTQ's running
 * time"): the inverse factor and the rounding of each row, for a random H = X^T X of 512
 * correlated activations (test_gptq's generator, tests/test_util_gptq.c), in process CPU time
 * (every thread of the pool counted). Not a test: it asserts nothing and its numbers depend on
 * the machine.
 *
 *   build/gptq_cost N_COLS N_ROWS TYPE_ID THREADS     (e.g. 2048 200 2 2: Q4_0)
 *   build/gptq_cost N_COLS N_ROWS TYPE_ID THREADS N_TOK
 *
 * With N_TOK, also the rows of a SwiGLU up matrix with per-row Hessians over N_TOK activations
 * and the rounded gate's target (ellm_gptq_quantize_gated; each row builds and factors its own
 * H, so the cost is about N_TOK n^2 / 2 + n^3 / 2 a row on top of the rounding).
 *
 * The hash of the bytes tells whether two builds round the same. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/threadpool.h"
#include "optimise/gptq.h"
#include "quant/quant.h"
#include "test_util_gptq.h"

enum { TOKENS = 512, RANK = 32, FACTOR_ROWS = 8 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ellm_gptq_quantize_gated on rows rows of up (w's buffer reused), a random gate and a
 * perturbed copy of it as the gate as given; nonzero on failure. */
static int gated_cost(ellm_threadpool *pool, ellm_type type, int64_t n, int64_t rows, int n_tok,
                      const float *mix, const float *scale, float *w, uint8_t *dst,
                      uint64_t row_bytes)
{
    float *x = malloc((size_t)n_tok * (size_t)n * sizeof *x);
    float *gate = malloc((size_t)(rows * n) * sizeof *gate);
    float *gate0 = malloc((size_t)(rows * n) * sizeof *gate0);
    float *up = malloc((size_t)(rows * n) * sizeof *up);
    if (!x || !gate || !gate0 || !up) {
        fprintf(stderr, "gptq_cost: no memory\n");
        return 1;
    }
    test_gptq_activations(x, n_tok, n, mix, RANK, scale, &rng);
    float unit = 1.0f / sqrtf((float)n * 16);
    for (int64_t i = 0; i < rows * n; i++) {
        gate[i] = unit * test_gptq_gaussian(&rng);
        gate0[i] = gate[i] + 0.1f * unit * test_gptq_gaussian(&rng);
        up[i] = unit * test_gptq_gaussian(&rng);
        w[i] = up[i];
    }
    double t0 = cpu_seconds();
    edgellm_status st = ellm_gptq_quantize_gated(pool, type, w, rows, n, x, n_tok, gate, gate0, up,
                                                 false, ELLM_GPTQ_DAMP, dst);
    double t1 = cpu_seconds();
    if (st != EDGELLM_OK) {
        fprintf(stderr, "gptq_cost: %s\n", edgellm_last_error());
        return 1;
    }
    uint64_t hash = 1469598103934665603ull;
    for (uint64_t i = 0; i < row_bytes * (uint64_t)rows; i++)
        hash = (hash ^ dst[i]) * 1099511628211ull;
    printf("%lld columns, %s, per-row Hessians over %d tokens: %.4f CPU-s a row, bytes %016llx\n",
           (long long)n, ellm_type_name(type), n_tok, (t1 - t0) / (double)rows,
           (unsigned long long)hash);
    free(x);
    free(gate);
    free(gate0);
    free(up);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: gptq_cost N_COLS N_ROWS TYPE_ID THREADS [N_TOK]\n");
        return 2;
    }
    int64_t n = atoll(argv[1]), rows = atoll(argv[2]);
    ellm_type type = (ellm_type)atoi(argv[3]);
    uint64_t row_bytes = 0;
    if (rows <= FACTOR_ROWS || !ellm_gptq_supports(type, n) ||
        !ellm_row_bytes(type, (uint64_t)n, &row_bytes)) {
        fprintf(stderr, "gptq_cost: need more than %d rows and a block type that splits them\n",
                FACTOR_ROWS);
        return 2;
    }
    float *h = calloc((size_t)(n * n), sizeof *h), *x = malloc((size_t)n * sizeof *x);
    float *mix = test_gptq_mix(RANK, n, &rng), *scale = malloc((size_t)n * sizeof *scale);
    float *w = malloc((size_t)(rows * n) * sizeof *w);
    uint8_t *dst = malloc(row_bytes * (uint64_t)rows);
    ellm_threadpool *pool = NULL;
    if (!h || !x || !mix || !scale || !w || !dst ||
        ellm_threadpool_create(atoi(argv[4]), &pool) != EDGELLM_OK) {
        fprintf(stderr, "gptq_cost: no memory\n");
        return 1;
    }
    for (int64_t j = 0; j < n; j++)
        scale[j] = (float)(1 + j % 7);
    for (int t = 0; t < TOKENS; t++) {
        test_gptq_activations(x, 1, n, mix, RANK, scale, &rng);
        test_gptq_add_hessian(h, x, 1, n);
    }
    /* The factor (with a few rows), then the same factor with every row: the difference is
     * the rows' cost. */
    for (int64_t i = 0; i < rows * n; i++)
        w[i] = 0.05f * test_gptq_gaussian(&rng);
    double t0 = cpu_seconds();
    ellm_gptq_quantize(pool, type, w, FACTOR_ROWS, n, h, ELLM_GPTQ_DAMP, true, dst);
    double t1 = cpu_seconds();
    for (int64_t i = 0; i < rows * n; i++)
        w[i] = 0.05f * test_gptq_gaussian(&rng);
    double t2 = cpu_seconds();
    if (ellm_gptq_quantize(pool, type, w, rows, n, h, ELLM_GPTQ_DAMP, true, dst) != EDGELLM_OK) {
        fprintf(stderr, "gptq_cost: %s\n", edgellm_last_error());
        return 1;
    }
    double t3 = cpu_seconds();
    uint64_t hash = 1469598103934665603ull;
    for (uint64_t i = 0; i < row_bytes * (uint64_t)rows; i++)
        hash = (hash ^ dst[i]) * 1099511628211ull;
    printf("%lld columns, %s: factor and %d rows %.2f CPU-s, %.4f CPU-s a row, bytes %016llx\n",
           (long long)n, ellm_type_name(type), FACTOR_ROWS, t1 - t0,
           ((t3 - t2) - (t1 - t0)) / (double)(rows - FACTOR_ROWS), (unsigned long long)hash);
    int n_tok = argc == 6 ? atoi(argv[5]) : 0;
    if (n_tok > 0 && gated_cost(pool, type, n, rows, n_tok, mix, scale, w, dst, row_bytes))
        return 1;
    ellm_threadpool_free(pool);
    free(h);
    free(x);
    free(mix);
    free(scale);
    free(w);
    free(dst);
    return 0;
}
