/* ellm_silu_mul_scalar eight values at a time (built with -mavx2; the caller checks the CPU):
 * the same operations in the same order, the exponentials in two vectors of four doubles, the
 * division an IEEE division, so the same bits. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>

#include "core/exp.h"

/* ellm_exp_rounded of four floats already limited to its range. */
static inline __m128 exp_rounded_lanes(__m128 limited)
{
    __m256d x = _mm256_cvtps_pd(limited), shifter = _mm256_set1_pd(ELLM_EXP_ROUNDED_SHIFTER);
    __m256d shifted = _mm256_add_pd(_mm256_mul_pd(x, _mm256_set1_pd(ELLM_EXP_ROUNDED_LOG2E)),
                                    shifter);
    __m256d n = _mm256_sub_pd(shifted, shifter);
    __m256d r = _mm256_sub_pd(x, _mm256_mul_pd(n, _mm256_set1_pd(ELLM_EXP_ROUNDED_LN2)));
    __m256d p = _mm256_set1_pd(ellm_exp_rounded_taylor[0]);
    for (int k = 1; k <= ELLM_EXP_ROUNDED_DEGREE; k++)
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(ellm_exp_rounded_taylor[k]));
    __m256i two_n = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_castpd_si256(shifted), _mm256_set1_epi64x(1023)), 52);
    return _mm256_cvtpd_ps(_mm256_mul_pd(p, _mm256_castsi256_pd(two_n)));
}

void ellm_silu_mul_avx2(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        /* max/min return their second operand when either is NaN: a NaN stays. */
        __m256 x = _mm256_min_ps(_mm256_set1_ps(ELLM_EXP_ROUNDED_HIGH),
                                 _mm256_max_ps(_mm256_set1_ps(ELLM_EXP_ROUNDED_LOW),
                                               _mm256_xor_ps(g, _mm256_set1_ps(-0.0f))));
        __m256 e = _mm256_set_m128(exp_rounded_lanes(_mm256_extractf128_ps(x, 1)),
                                   exp_rounded_lanes(_mm256_castps256_ps128(x)));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    ellm_silu_mul_scalar(gate + i, up + i, n - i);
}
#endif
