/* Reference (de)quantizers of the low-bit K-quant weight formats Q2_K, Q3_K and IQ4_XS, called
 * from reference.c's per-type switches. n is a multiple of QK_K. */
#ifndef EDGELLM_QUANT_REFERENCE_KQUANTS_LOW_H
#define EDGELLM_QUANT_REFERENCE_KQUANTS_LOW_H

#include <stdint.h>

#include "quant/blocks.h"

void ellm_dequantize_q2_K(const block_q2_K *b, float *y, int64_t n);
void ellm_dequantize_q3_K(const block_q3_K *b, float *y, int64_t n);
void ellm_dequantize_iq4_xs(const block_iq4_xs *b, float *y, int64_t n);

void ellm_quantize_q2_K(const float *x, block_q2_K *b, int64_t n);
void ellm_quantize_q3_K(const float *x, block_q3_K *b, int64_t n);
void ellm_quantize_iq4_xs(const float *x, block_iq4_xs *b, int64_t n);
/* The same with every value's error weighted by w (n values, its column's importance), for
 * quantize --imatrix (quant/weighted.c dispatches). */
void ellm_quantize_q2_K_weighted(const float *x, block_q2_K *b, int64_t n, const float *w);
void ellm_quantize_q3_K_weighted(const float *x, block_q3_K *b, int64_t n, const float *w);
void ellm_quantize_iq4_xs_weighted(const float *x, block_iq4_xs *b, int64_t n, const float *w);

/* IQ4 level search over 32 values: the least-squares signed scale over a spread of candidates, and
 * the nearest level index of each value under scale s (8, a zero level, when s is 0) with the
 * squared error. */
float ellm_iq4nl_fit_scale(const float *x);
float ellm_iq4nl_levels(const float *x, int n, float s, uint8_t *idx);

/* The 6-bit scale s (0..63) of a Q3_K block, decoded from its 12 packed bytes. */
static inline int ellm_q3_K_scale(const uint8_t *scales, int s)
{
    int lo = s < 8 ? scales[s] & 15 : scales[s - 8] >> 4;
    int hi = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    return lo | hi << 4;
}

/* The 6-bit scale of sub-block b (0..63) of an IQ4_XS block. */
static inline int ellm_iq4_xs_scale(const block_iq4_xs *x, int b)
{
    return ((x->scales_l[b / 2] >> (4 * (b % 2))) & 15) | ((x->scales_h >> (2 * b)) & 3) << 4;
}

#endif
