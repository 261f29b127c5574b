/* AVX-512 + VNNI kernels for Q4_0 and Q8_0 weights against Q8_0 activations.
 *
 * The tiles put 16 weight rows in the 16 lanes of a vector: one block of the 16 rows is
 * transposed so that lane l of vector g holds values 4g..4g+3 of row l, and each token's
 * activations 4g..4g+3 are broadcast to every lane, so one dpbusd per 4 values forms the exact
 * integer block sum of all 16 rows at once, with no horizontal reduction. The float work then
 * follows the scalar kernel operation for operation (scale product, times the block sum, added to
 * a running sum in block order; no fused multiply-add), so every result is bit-identical to the
 * scalar kernel: whatever the thread count, the batch, or whether it is decode or prefill.
 *
 * The transposition is paid once per block of 16 rows and reused by every token of the tile;
 * with one token (decode) it is still cheaper than reducing per-row partial sums. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx512.h"
#include "quant/quant.h"

/* One block of 16 weight rows, ready for dpbusd: unsigned bytes whose products with the
 * activations exceed the true ones by offset × (activation sum), and the rows' scales. */
typedef struct row_block {
    __m512i q[8];
    __m512 d;
} row_block;

/* Q4_0: nibbles stay unsigned (0..15); the offset of 8 comes off with the activation sum. */
static inline void q4_0_row_block(const row_group *G, int64_t b, row_block *rb)
{
    const __m512i low = _mm512_set1_epi8(0x0F);
    size_t at = (size_t)b * sizeof(block_q4_0);
    __m512i z[4];
    transpose_16x16(G->p, at + offsetof(block_q4_0, qs), z);
    for (int g = 0; g < 4; g++) {
        rb->q[g] = _mm512_and_si512(z[g], low);                         /* values 4g.. */
        rb->q[4 + g] = _mm512_and_si512(_mm512_srli_epi16(z[g], 4), low); /* values 16 + 4g.. */
    }
    rb->d = gather_halves(G, at);
}

/* Q8_0: signed values biased by 128 into unsigned bytes; the bias comes off the same way. */
static inline void q8_0_row_block(const row_group *G, int64_t b, row_block *rb)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    size_t at = (size_t)b * sizeof(block_q8_0);
    __m512i z[4];
    transpose_16x16(G->p, at + offsetof(block_q8_0, qs), z);
    for (int g = 0; g < 4; g++)
        rb->q[g] = _mm512_xor_si512(z[g], bias);
    transpose_16x16(G->p, at + offsetof(block_q8_0, qs) + 16, z);
    for (int g = 0; g < 4; g++)
        rb->q[4 + g] = _mm512_xor_si512(z[g], bias);
    rb->d = gather_halves(G, at);
}

/* sum += (dw × da) × block_sum for the 16 rows against one token's block b, exactly as the
 * scalar kernel orders it. */
static inline __m512 row_block_step(const row_block *rb, const int8_t *act, float da,
                                    int32_t offset_sum, __m512 sum)
{
    __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), rb->q[0], broadcast4(act));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), rb->q[4], broadcast4(act + 16));
    for (int g = 1; g < 4; g++) {
        s0 = _mm512_dpbusd_epi32(s0, rb->q[g], broadcast4(act + 4 * g));
        s1 = _mm512_dpbusd_epi32(s1, rb->q[4 + g], broadcast4(act + 16 + 4 * g));
    }
    __m512i isum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(offset_sum));
    __m512 scale = _mm512_mul_ps(rb->d, _mm512_set1_ps(da));
    return _mm512_add_ps(sum, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(isum)));
}

typedef void (*row_block_fn)(const row_group *G, int64_t b, row_block *rb);

/* Row groups of 16, tokens in steps whose sums stay in L1, blocks in order inside. */
static inline void gemm_rows_in_lanes(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                                      const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                                      int64_t y_stride, row_block_fn decode, int64_t block_bytes,
                                      int offset_shift)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    int64_t nb = n / QK8_0;
    __m512 sum[TOKEN_STEP];
    for (int64_t r0 = 0; r0 < n_rows; r0 += ROW_GROUP) {
        row_group G = row_group_at(w, w_stride, r0, n_rows);
        for (int64_t t0 = 0; t0 < n_tok; t0 += TOKEN_STEP) {
            int nt = n_tok - t0 < TOKEN_STEP ? (int)(n_tok - t0) : TOKEN_STEP;
            for (int t = 0; t < nt; t++)
                sum[t] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                row_block rb;
                prefetch_next_group(&G, b, block_bytes);
                decode(&G, b, &rb);
                for (int t = 0; t < nt; t++) {
                    const uint8_t *xa = x + (size_t)(t0 + t) * x_stride;
                    float da;
                    int32_t asum;
                    memcpy(&da, xa + L.scales_offset + (size_t)b * sizeof(float), sizeof da);
                    memcpy(&asum, xa + L.block_sums_offset + (size_t)b * 4, sizeof asum);
                    sum[t] = row_block_step(&rb, (const int8_t *)xa + b * QK8_0, da,
                                            asum * (1 << offset_shift), sum[t]);
                }
            }
            for (int t = 0; t < nt; t++)
                _mm512_mask_storeu_ps(y + (t0 + t) * y_stride + r0, G.live, sum[t]);
        }
    }
}

void ellm_gemm_q4_0_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride)
{
    gemm_rows_in_lanes(n, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q4_0_row_block,
                       sizeof(block_q4_0), 3);
}

void ellm_gemm_q8_0_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride)
{
    gemm_rows_in_lanes(n, w, w_stride, n_rows, x, x_stride, n_tok, y, y_stride, q8_0_row_block,
                       sizeof(block_q8_0), 7);
}

/* Single rows against plain Q8_0 blocks (callers outside matmul, and the tests' reference for
 * the tiles): the exact block sum from 256-bit dpbusd, then the scalar kernel's float steps. */
static inline int32_t hsum_epi32_256(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

void ellm_vec_dot_q4_0_avx512(int64_t n, float *out, const void *row, const void *x)
{
    const block_q4_0 *w = row;
    const block_q8_0 *a = x;
    const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        __m128i packed = _mm_loadu_si128((const __m128i *)w[i].qs);
        __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low);
        __m256i act = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i prod = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nib, act);
        __m256i offset = _mm256_dpbusd_epi32(_mm256_setzero_si256(), eight, act);
        int32_t isum = hsum_epi32_256(_mm256_sub_epi32(prod, offset));
        sum += _cvtsh_ss(w[i].d) * _cvtsh_ss(a[i].d) * (float)isum;
    }
    *out = sum;
}

void ellm_vec_dot_q8_0_avx512(int64_t n, float *out, const void *row, const void *x)
{
    const block_q8_0 *w = row, *a = x;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        __m256i wq = _mm256_loadu_si256((const __m256i *)w[i].qs);
        __m256i act = _mm256_loadu_si256((const __m256i *)a[i].qs);
        /* (w + 128) · a - 128 · sum(a) */
        __m256i prod = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(wq, bias), act);
        __m256i offset = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, act);
        int32_t isum = hsum_epi32_256(_mm256_sub_epi32(prod, offset));
        sum += _cvtsh_ss(w[i].d) * _cvtsh_ss(a[i].d) * (float)isum;
    }
    *out = sum;
}
#endif
