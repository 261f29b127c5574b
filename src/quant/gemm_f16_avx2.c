/* AVX2 tiles of F16 weight rows × F32 tokens, bit-identical to ellm_vec_dot_f16_avx2.
 *
 * That kernel keeps two 8-lane accumulators over each 16 values (elements 16k + 0..7 and
 * 16k + 8..15, one fused multiply-add per element in k order), adds them, reduces with hsum256
 * and adds the tail of n % 16 products one by one. The tile keeps the same two accumulators for
 * each (row, token) and does the same operations on them, so only the interleaving of
 * independent (row, token) chains differs. The tail is the same expression (the build does not
 * contract a * b + c, so it is rounded twice in both files).
 *
 * The register tile is 2 rows × 3 tokens: 12 accumulators, 2 converted weight vectors and one
 * token vector of the 16 registers; each 8 halves of a row are converted once for 3 tokens. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>

#include "quant/lanes_avx2.h"

enum { TILE_ROWS = 2, TILE_TOKENS = 3 };

static inline __attribute__((always_inline)) void f16_tile(int64_t n, const uint8_t *w,
                                                           size_t w_stride, int rows,
                                                           const uint8_t *x, size_t x_stride,
                                                           int tokens, float *y, int64_t y_stride)
{
    /* acc[half][row][token]: half 0 takes elements 16k + 0..7, half 1 takes 16k + 8..15. */
    __m256 acc[2][TILE_ROWS][TILE_TOKENS];
    for (int h = 0; h < 2; h++)
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < tokens; t++)
                acc[h][r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int h = 0; h < 2; h++) {
            __m256 wv[TILE_ROWS];
            for (int r = 0; r < rows; r++)
                wv[r] = _mm256_cvtph_ps(
                    _mm_loadu_si128((const __m128i *)(w + r * w_stride + 2 * (i + 8 * h))));
            for (int t = 0; t < tokens; t++) {
                __m256 xv = _mm256_loadu_ps((const float *)(x + t * x_stride) + i + 8 * h);
                for (int r = 0; r < rows; r++)
                    acc[h][r][t] = _mm256_fmadd_ps(wv[r], xv, acc[h][r][t]);
            }
        }
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < tokens; t++) {
            float sum = hsum256(_mm256_add_ps(acc[0][r][t], acc[1][r][t]));
            y[t * y_stride + r] = f16_dot_tail(sum, w + r * w_stride,
                                               (const float *)(x + t * x_stride), i, n);
        }
}

#include "quant/gemm_f16.inc"

void ellm_gemm_f16_avx2(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                        const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                        int64_t y_stride)
{
    f16_gemm(n, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride);
}
#endif
