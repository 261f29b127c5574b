/* The synthetic layer inputs the GPTQ test (test_gptq) and the GPTQ cost benchmark
 * (bench/gptq_cost.c) share: activations with a few shared directions, so columns correlate as
 * in a real layer, and their X^T X. One reproducible generator, a caller-owned state. */
#ifndef EDGELLM_TEST_UTIL_GPTQ_H
#define EDGELLM_TEST_UTIL_GPTQ_H

#include <stdint.h>

/* Uniform in (0, 1) and standard normal draws (xorshift64, Box-Muller) from *state. */
double test_gptq_uniform(uint64_t *state);
float test_gptq_gaussian(uint64_t *state);

/* rank x n normal mixing weights: row k is shared direction k's loading on every column. */
float *test_gptq_mix(int rank, int64_t n, uint64_t *state);

#define TEST_GPTQ_MAX_RANK 64

/* n_tok rows of n activations: per row, rank (at most TEST_GPTQ_MAX_RANK) shared normal factors
 * through mix plus 0.3 of independent noise, column j scaled by channel_scale[j] (NULL: 1). */
void test_gptq_activations(float *x, int n_tok, int64_t n, const float *mix, int rank,
                           const float *channel_scale, uint64_t *state);

/* h += X^T X of the n_tok rows of x (n x n, float, summed row by row). */
void test_gptq_add_hessian(float *h, const float *x, int n_tok, int64_t n);

#endif
