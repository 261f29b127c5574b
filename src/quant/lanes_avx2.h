/* Horizontal sums shared by the AVX2 kernels (included only by *_avx2.c files, which are
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

#endif
