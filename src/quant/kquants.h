/* K-quant formats (Q4_K, Q5_K, Q6_K): reference (de)quantizers, shared between reference.c, the
 * kernels and the tests. Block layouts are in blocks.h. */
#ifndef EDGELLM_QUANT_KQUANTS_H
#define EDGELLM_QUANT_KQUANTS_H

#include <stdint.h>

/* Sub-block j's (0..7) 6-bit scale and min from the 12 packed bytes of a Q4_K/Q5_K block. */
static inline void ellm_kq_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 15) | (s[j - 4] >> 6) << 4);
        *m = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
    }
}

/* Packs 8 scales and 8 mins (each 0..63) into the 12-byte form ellm_kq_scale_min reads. */
void ellm_kq_pack_scale_min(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]);

void ellm_dequantize_q4_K(const void *src, float *dst, int64_t n);
void ellm_dequantize_q5_K(const void *src, float *dst, int64_t n);
void ellm_dequantize_q6_K(const void *src, float *dst, int64_t n);
void ellm_quantize_q4_K(const float *src, void *dst, int64_t n);
void ellm_quantize_q5_K(const float *src, void *dst, int64_t n);
void ellm_quantize_q6_K(const float *src, void *dst, int64_t n);
/* The same with every value's error weighted by w (n values, its column's importance): the
 * sub-block scales (and mins) minimise the weighted error (quant/weighted.c dispatches). */
void ellm_quantize_q4_K_weighted(const float *src, void *dst, int64_t n, const float *w);
void ellm_quantize_q5_K_weighted(const float *src, void *dst, int64_t n, const float *w);
void ellm_quantize_q6_K_weighted(const float *src, void *dst, int64_t n, const float *w);

#endif
