/* Synthetic correlated layer inputs for test_gptq and bench/gptq_cost.c (test_util_gptq.h). */
#include "test_util_gptq.h"

#include <math.h>
#include <stdlib.h>

double test_gptq_uniform(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return ((double)(*state >> 11) + 0.5) / 9007199254740992.0;
}

float test_gptq_gaussian(uint64_t *state)
{
    double radius = sqrt(-2 * log(test_gptq_uniform(state)));
    return (float)(radius * cos(6.283185307179586 * test_gptq_uniform(state)));
}

float *test_gptq_mix(int rank, int64_t n, uint64_t *state)
{
    float *mix = malloc((size_t)rank * (size_t)n * sizeof *mix);
    for (int64_t i = 0; mix && i < rank * n; i++)
        mix[i] = test_gptq_gaussian(state);
    return mix;
}

void test_gptq_activations(float *x, int n_tok, int64_t n, const float *mix, int rank,
                           const float *channel_scale, uint64_t *state)
{
    float z[TEST_GPTQ_MAX_RANK];
    for (int t = 0; t < n_tok; t++) {
        for (int k = 0; k < rank; k++)
            z[k] = test_gptq_gaussian(state);
        for (int64_t j = 0; j < n; j++) {
            float v = 0.3f * test_gptq_gaussian(state);
            for (int k = 0; k < rank; k++)
                v += z[k] * mix[k * n + j];
            x[t * n + j] = channel_scale ? v * channel_scale[j] : v;
        }
    }
}

void test_gptq_add_hessian(float *h, const float *x, int n_tok, int64_t n)
{
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + t * n;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                h[i * n + j] += xt[i] * xt[j];
    }
}
