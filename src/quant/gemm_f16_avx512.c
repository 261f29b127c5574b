/* AVX-512 tiles of F16 weight rows × F32 tokens, bit-identical to the set's single-row F16 kernel
 * (ellm_vec_dot_f16_avx2, which both x86 sets use for decode).
 *
 * That kernel keeps two 8-lane accumulators over each 16 values, elements 16k + 0..7 in one and
 * 16k + 8..15 in the other, with one fused multiply-add per element in k order, then adds the two
 * and reduces them with hsum256 before adding the tail of n % 16 products one by one. A 16-lane
 * vector holds exactly those two accumulators side by side, so one fused multiply-add per 16
 * values and (row, token) repeats its float work lane for lane; the reduction is the same
 * hsum256 (lanes_avx2.h: this file is compiled for AVX2 as well), and the tail the same
 * expression (the build does not contract a * b + c, so it is rounded twice in both files).
 *
 * The register tile is 4 rows × 6 tokens: 24 accumulators, 4 converted weight vectors and one
 * token vector of the 32 registers; each 16 halves of a row are converted once for 6 tokens. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>

#include "quant/lanes_avx2.h"

enum { TILE_ROWS = 4, TILE_TOKENS = 6 };

static inline __attribute__((always_inline)) void f16_tile(int64_t n, const uint8_t *w,
                                                           size_t w_stride, int rows,
                                                           const uint8_t *x, size_t x_stride,
                                                           int tokens, float *y, int64_t y_stride)
{
    __m512 acc[TILE_ROWS][TILE_TOKENS];
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < tokens; t++)
            acc[r][t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 wv[TILE_ROWS];
        for (int r = 0; r < rows; r++)
            wv[r] = _mm512_cvtph_ps(
                _mm256_loadu_si256((const __m256i *)(w + r * w_stride + 2 * i)));
        for (int t = 0; t < tokens; t++) {
            __m512 xv = _mm512_loadu_ps((const float *)(x + t * x_stride) + i);
            for (int r = 0; r < rows; r++)
                acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < tokens; t++) {
            __m256 lo = _mm512_castps512_ps256(acc[r][t]);
            __m256 hi = _mm512_extractf32x8_ps(acc[r][t], 1);
            float sum = hsum256(_mm256_add_ps(lo, hi));
            y[t * y_stride + r] = f16_dot_tail(sum, w + r * w_stride,
                                               (const float *)(x + t * x_stride), i, n);
        }
}

#include "quant/gemm_f16.inc"

void ellm_gemm_f16_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                          const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                          int64_t y_stride)
{
    f16_gemm(n, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride);
}
#endif
