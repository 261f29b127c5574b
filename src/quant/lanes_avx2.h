/* Horizontal sums and the 8x8 transpose shared by the AVX2 kernels (included only by *_avx2.c files, which are
 * compiled for AVX2). Every kernel that must match another bit for bit reduces in this one
 * order: the two 128-bit halves, then the upper pair onto the lower, then the two last lanes. */
#ifndef EDGELLM_QUANT_LANES_AVX2_H
#define EDGELLM_QUANT_LANES_AVX2_H

#include <immintrin.h>
#include <stdint.h>

static inline float hsum128(__m128 v)
{
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

static inline float hsum256(__m256 v)
{
    return hsum128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

static inline int32_t hsum256_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* Eight rows of eight dwords, transposed: out[g] lane l = dword g of r[l]. */
static inline void transpose_8x8(const __m256i r[8], __m256i out[8])
{
    __m256i t[8], u[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    /* u[4h + g] holds dword g (low half) and g + 4 (high half) of rows 4h..4h+3 */
    for (int h = 0; h < 2; h++) {
        u[4 * h] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    for (int g = 0; g < 4; g++) {
        out[g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);
        out[4 + g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);
    }
}

#endif
