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
 * The transposition is paid once per block of 16 rows and reused by every token of the tile
 * (prefill). Decode, one token, streams the matrix through the single-row kernels at the end,
 * which give the same bytes. */
#include "quant/kernels.h"

#if defined(ELLM_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/lanes_avx2.h"
#include "quant/lanes_avx512.h"
#include "quant/prefetch.h"
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
        rb->q[g] = _mm512_and_si512(z[g], low);                           /* values 4g.. */
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

/* Block b (decoded into rb) of the 16 rows against nt tokens of extended activation rows; the
 * weights' unsigned bytes exceed the true values by offset, which comes off with the block sum. */
static inline void row_block_tokens(const row_block *rb, int64_t b, const uint8_t *x,
                                    size_t x_stride, int nt, __m512 *sum,
                                    const ellm_q8_0_ext_layout *L, int32_t offset)
{
    for (int t = 0; t < nt; t++) {
        const uint8_t *xa = x + (size_t)t * x_stride;
        float da;
        int32_t asum;
        memcpy(&da, xa + L->scales_offset + (size_t)b * sizeof(float), sizeof da);
        memcpy(&asum, xa + L->block_sums_offset + (size_t)b * 4, sizeof asum);
        sum[t] = row_block_step(rb, (const int8_t *)xa + b * QK8_0, da, asum * offset, sum[t]);
    }
}

/* The tile driver's block functions (ctx: the extended layout of the activation rows). */
static inline void q4_0_block(const row_group *G, int64_t b, const uint8_t *x, size_t x_stride,
                              int nt, __m512 *sum, const void *ctx)
{
    row_block rb;
    q4_0_row_block(G, b, &rb);
    row_block_tokens(&rb, b, x, x_stride, nt, sum, ctx, 8);
}

static inline void q8_0_block(const row_group *G, int64_t b, const uint8_t *x, size_t x_stride,
                              int nt, __m512 *sum, const void *ctx)
{
    row_block rb;
    q8_0_row_block(G, b, &rb);
    row_block_tokens(&rb, b, x, x_stride, nt, sum, ctx, 128);
}

void ellm_gemm_q4_0_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    gemm_rows_in_lanes(n / QK4_0, sizeof(block_q4_0), w, w_stride, n_rows, x, x_stride, n_tok, y,
                       y_stride, q4_0_block, &L);
}

void ellm_gemm_q8_0_avx512(int64_t n, const uint8_t *w, size_t w_stride, int64_t n_rows,
                           const uint8_t *x, size_t x_stride, int64_t n_tok, float *y,
                           int64_t y_stride)
{
    ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    gemm_rows_in_lanes(n / QK8_0, sizeof(block_q8_0), w, w_stride, n_rows, x, x_stride, n_tok, y,
                       y_stride, q8_0_block, &L);
}

/* Single rows against plain Q8_0 blocks: the vec_dot contract for direct callers and the tests.
 * The library's own paths do not take them (decode uses the extended-row kernels below, batches
 * the tiles), so they stay one block at a time: the exact block sum from 256-bit dpbusd, then the
 * scalar kernel's float steps, bit-identical to it. */
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

/* Single rows against extended activation rows: the decode path with the tiles' activations.
 *
 * Eight blocks per step: exact block sums from dpbusd and one short reduction, the eight terms
 * (dw * da) * (float)isum in vector lanes, and only the additions into the running sum left
 * scalar, one per block in block order, so the result is bit-identical to the scalar kernel.
 * The extended layout removes most of the activation-side work: two blocks of values are one
 * 64-byte load, the activation scales are floats already, and the offset that the unsigned
 * weight bytes add to dpbusd comes off as a multiple of the block sum. A step keeps
 * block k of its eight in dword k, where the scales and block sums load as they are stored.
 *
 * The eight products go through a small array to the additions: scalar loads run on the load
 * ports, whereas extracting lanes would add shuffles to the port the permutes already load. A step of
 * eight blocks adds its eight terms before the next step's loads (longer chunks of terms were
 * slower once the steps are inlined). The activation row is read with unaligned loads, which cost
 * nothing on an aligned row and do not fault on another. Each step asks for the weights
 * ellm_prefetch_ahead's 2 KB ahead into L1: without it the hardware prefetchers left one core's
 * Q8_0 row at 0.73-0.75 of a streaming read from 2 MiB pages, with it 0.89-1.01 (session 10). */
enum {
    ROW_STEP = 8, /* blocks per step */
};

/* An extended activation row as a step reads it. */
typedef struct ext_row {
    const int8_t *a;
    const float *da;
    const int32_t *asum; /* plain block sums */
    int64_t nb;
} ext_row;

static inline ext_row ext_row_of(int64_t n, const void *x)
{
    const ellm_q8_0_ext_layout L = ellm_q8_0_ext_layout_for(n);
    ext_row r = {x, (const float *)((const uint8_t *)x + L.scales_offset),
                 (const int32_t *)((const uint8_t *)x + L.block_sums_offset), n / QK8_0};
    return r;
}

/* Two vectors of four blocks, block j (first) or 4 + j (second) in 128-bit lane j as four
 * partial int32 sums, to the eight block sums in dwords 0..7. */
static inline __m256i ext_eight_block_sums(__m512i first, __m512i second)
{
    const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    /* lane j: first's dwords 0 + 2, second's 0 + 2, first's 1 + 3, second's 1 + 3 */
    __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi32(first, second),
                                 _mm512_unpackhi_epi32(first, second));
    /* lane j: block j, block 4 + j, twice */
    s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(pick, s));
}

/* Four consecutive Q4_0 blocks against their activations (block j in lane j, as above). The
 * quant bytes start 2 bytes past a dword boundary in even blocks and on one in odd blocks, so one
 * dword permute (pick) of loads at p + even_at and p + odd_at brings each block's 16 bytes into
 * its lane. The low nibbles are values 0-15 and the high ones 16-31, so the activations, two
 * blocks to a load, are regrouped by halves to match. */
static inline __m512i q4_0_ext_four_blocks(const uint8_t *p, int even_at, int odd_at, __m512i pick,
                                           const int8_t *a)
{
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512i packed = _mm512_permutex2var_epi32(_mm512_loadu_si512(p + even_at), pick,
                                               _mm512_loadu_si512(p + odd_at));
    __m512i lo = _mm512_and_si512(packed, low);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low);
    __m512i near = _mm512_loadu_si512(a), far = _mm512_loadu_si512(a + 64);
    __m512i act_lo = _mm512_shuffle_i64x2(near, far, _MM_SHUFFLE(2, 0, 2, 0));
    __m512i act_hi = _mm512_shuffle_i64x2(near, far, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, act_lo), hi, act_hi);
}

/* Four consecutive Q8_0 blocks against their activations, biased by 128 into unsigned bytes:
 * each pair of blocks meets its activations as loaded, and the products are regrouped. */
static inline __m512i q8_0_ext_four_blocks(const uint8_t *p, const int8_t *a)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512i s[2];
    for (int h = 0; h < 2; h++) {
        const uint8_t *b = p + (size_t)(2 * h) * sizeof(block_q8_0) + offsetof(block_q8_0, qs);
        __m512i wq = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b)),
            _mm256_loadu_si256((const __m256i *)(b + sizeof(block_q8_0))), 1);
        s[h] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(wq, bias),
                                   _mm512_loadu_si512(a + 64 * h));
    }
    /* s[h]: block 2h's values 0-15 and 16-31, then block 2h + 1's */
    return _mm512_add_epi32(_mm512_shuffle_i64x2(s[0], s[1], _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i64x2(s[0], s[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The fp16 scales of eight blocks as floats, in block order, by word permutes of loads that stay
 * inside the eight blocks: block k's scale is word 9k of the loads at 0 and 64 for Q4_0; for
 * Q8_0, word 17k of the loads at 0 and 64 for k < 4 and word 17(k - 4) + 4 of those at 128 and
 * 192 for the others. */
static inline __m256 q4_0_ext_scales(const uint8_t *p)
{
    static const uint16_t pick[32] = {0, 9, 18, 27, 36, 45, 54, 63};
    __m512i h = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), _mm512_loadu_si512(pick),
                                          _mm512_loadu_si512(p + 64));
    return _mm256_cvtph_ps(_mm512_castsi512_si128(h));
}

static inline __m256 q8_0_ext_scales(const uint8_t *p)
{
    static const uint16_t pick[32] = {0, 17, 34, 51, 4, 21, 38, 55};
    const __m512i at = _mm512_loadu_si512(pick);
    __m512i first = _mm512_maskz_permutex2var_epi16(0x0F, _mm512_loadu_si512(p), at,
                                                    _mm512_loadu_si512(p + 64));
    __m512i second = _mm512_maskz_permutex2var_epi16(0xF0, _mm512_loadu_si512(p + 128), at,
                                                     _mm512_loadu_si512(p + 192));
    return _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_or_si512(first, second)));
}

/* (dw * da) * (float)(isum - offset) of eight blocks: the scalar kernel's two multiplications. */
static inline __m256 ext_terms(__m256 dw, const float *da, __m256i isums, __m256i offsets)
{
    __m256 scales = _mm256_mul_ps(dw, _mm256_loadu_ps(da));
    __m256i exact = _mm256_sub_epi32(isums, offsets);
    return _mm256_mul_ps(scales, _mm256_cvtepi32_ps(exact));
}

/* sum + the eight terms, one addition at a time in block order. */
static inline float add_step_terms(float sum, __m256 terms)
{
    float t[ROW_STEP];
    _mm256_storeu_ps(t, terms);
    for (int k = 0; k < ROW_STEP; k++)
        sum += t[k];
    return sum;
}

/* The terms of blocks i .. i + 7 (all inside the row) of a Q4_0 row. */
KERNEL_STEP __m256 q4_0_ext_terms(const ext_row *x, const uint8_t *w, int64_t i)
{
    /* Blocks 0 and 2 are at dwords 0 and 9 of the load at 2, blocks 1 and 3 of the one at 20. For
     * blocks 4-7 the odd blocks' load is at 80 rather than 92, to end inside the eight: blocks 4
     * and 6 at dwords 0 and 9 of the load at 74, 5 and 7 at 3 and 12 of that at 80. */
    const __m512i pick_first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 9, 10, 11, 12, 25, 26,
                                                 27, 28);
    const __m512i pick_second = _mm512_setr_epi32(0, 1, 2, 3, 19, 20, 21, 22, 9, 10, 11, 12, 28, 29,
                                                  30, 31);
    const uint8_t *p = w + (size_t)i * sizeof(block_q4_0);
    __m256i isums = ext_eight_block_sums(
        q4_0_ext_four_blocks(p, 2, 20, pick_first, x->a + i * QK8_0),
        q4_0_ext_four_blocks(p, 74, 80, pick_second, x->a + (i + 4) * QK8_0));
    /* the nibbles' offset 8 */
    __m256i offsets = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)&x->asum[i]), 3);
    return ext_terms(q4_0_ext_scales(p), &x->da[i], isums, offsets);
}

/* Blocks i .. i + 7 of a Q4_0 row added to sum, or, at the end of a row shorter than that, the
 * blocks left one at a time. */
KERNEL_STEP float q4_0_ext_step(const ext_row *x, const uint8_t *w, int64_t i, float sum)
{
    if (i + ROW_STEP <= x->nb)
        return add_step_terms(sum, q4_0_ext_terms(x, w, i));
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (; i < x->nb; i++) {
        const block_q4_0 *b = (const block_q4_0 *)(w + (size_t)i * sizeof(block_q4_0));
        __m128i packed = _mm_loadu_si128((const __m128i *)b->qs);
        __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low);
        __m256i act = _mm256_loadu_si256((const __m256i *)(x->a + i * QK8_0));
        int32_t isum = hsum_epi32_256(_mm256_dpbusd_epi32(_mm256_setzero_si256(), nib, act)) -
                       x->asum[i] * 8;
        sum += _cvtsh_ss(b->d) * x->da[i] * (float)isum;
    }
    return sum;
}

/* The same for Q8_0. */
KERNEL_STEP __m256 q8_0_ext_terms(const ext_row *x, const uint8_t *w, int64_t i)
{
    const uint8_t *p = w + (size_t)i * sizeof(block_q8_0);
    __m256i isums = ext_eight_block_sums(
        q8_0_ext_four_blocks(p, x->a + i * QK8_0),
        q8_0_ext_four_blocks(p + 4 * sizeof(block_q8_0), x->a + (i + 4) * QK8_0));
    /* the weights' bias 128 */
    __m256i offsets = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)&x->asum[i]), 7);
    return ext_terms(q8_0_ext_scales(p), &x->da[i], isums, offsets);
}

KERNEL_STEP float q8_0_ext_step(const ext_row *x, const uint8_t *w, int64_t i, float sum)
{
    if (i + ROW_STEP <= x->nb)
        return add_step_terms(sum, q8_0_ext_terms(x, w, i));
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (; i < x->nb; i++) {
        const block_q8_0 *b = (const block_q8_0 *)(w + (size_t)i * sizeof(block_q8_0));
        __m256i wq = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b->qs), bias);
        __m256i act = _mm256_loadu_si256((const __m256i *)(x->a + i * QK8_0));
        int32_t isum = hsum_epi32_256(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, act)) -
                       x->asum[i] * 128;
        sum += _cvtsh_ss(b->d) * x->da[i] * (float)isum;
    }
    return sum;
}

/* The single-row kernel of a type from its step. */
#define EXT_ROW_KERNEL(type)                                                                       \
    void ellm_vec_dot_##type##_ext_avx512(int64_t n, float *out, const void *row, const void *x)   \
    {                                                                                              \
        const ext_row act = ext_row_of(n, x);                                                      \
        float sum = 0;                                                                             \
        for (int64_t i = 0; i < act.nb; i += ROW_STEP) {                                           \
            ellm_prefetch_ahead((const uint8_t *)row + (size_t)i * sizeof(block_##type),           \
                                ROW_STEP * (int)sizeof(block_##type));                             \
            sum = type##_ext_step(&act, row, i, sum);                                              \
        }                                                                                          \
        *out = sum;                                                                                \
    }

EXT_ROW_KERNEL(q4_0)
EXT_ROW_KERNEL(q8_0)

#endif